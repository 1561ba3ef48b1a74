"""Reading a labeling run: the records of its finished shards, streamed in order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.label.manifest import RunManifest, ShardEntry


def iter_shards(out: Path) -> Iterator[tuple[ShardEntry, Iterator[dict[str, Any]]]]:
    """(shard entry, its records) for every finished shard of the run in `out`, from the
    manifest's list (never a glob: a shard not in the manifest is not finished). Each
    shard's records are streamed; read them before asking for the next shard. A
    duplicate's pointer record ({"file_name", "duplicate_of"}, `distill label --dedupe`)
    is left out: its image was labeled once, under the first name, and is selected (and
    trained on) once."""
    for entry in RunManifest.load(out).shards:
        yield entry, _shard_records(out / "shards" / entry.file)


def iter_records(out: Path) -> Iterator[dict[str, Any]]:
    """Every record of the run in `out`, shard by shard (see `iter_shards`)."""
    for _, records in iter_shards(out):
        yield from records


def _shard_records(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    raise UserError(f"{path}:{number}: not a JSON record") from None
                if "duplicate_of" not in record:
                    yield record
    except FileNotFoundError:
        raise UserError(f"{path} is listed in the manifest but missing") from None


def run_categories(out: Path, manifest: RunManifest) -> list[dict[str, Any]]:
    """The COCO categories of the run in `out` (its `manifest`); UserError when it has none."""
    if manifest.categories is None:
        raise UserError(f"the run in {out} records no categories in its manifest; label it again")
    return manifest.categories
