"""Reading a labeling run: the records of its finished shards, streamed in order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.label.shards import read_manifest


def iter_records(out: Path) -> Iterator[dict[str, Any]]:
    """Every record of the run in `out`, shard by shard, from the manifest's list (never a
    glob: a shard not in the manifest is not finished)."""
    manifest = read_manifest(out)
    for entry in manifest["shards"]:
        path = out / "shards" / entry["file"]
        try:
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        raise UserError(f"{path}:{number}: not a JSON record") from None
        except FileNotFoundError:
            raise UserError(f"{path} is listed in the manifest but missing") from None


def run_categories(out: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    categories = manifest.get("categories")
    if not isinstance(categories, list):
        raise UserError(f"the run in {out} records no categories in its manifest; label it again")
    return categories
