"""Reading a labeling run: the records of its finished shards, streamed in order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.label.manifest import RunManifest


def iter_records(out: Path) -> Iterator[dict[str, Any]]:
    """Every record of the run in `out`, shard by shard, from the manifest's list (never a
    glob: a shard not in the manifest is not finished). A duplicate's pointer record
    ({"file_name", "duplicate_of"}, `distill label --dedupe`) is left out: its image was
    labeled once, under the first name, and is selected (and trained on) once."""
    for entry in RunManifest.load(out).shards:
        path = out / "shards" / entry.file
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
