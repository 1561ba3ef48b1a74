"""Reading a COCO dataset JSON that a user names on the command line.

One reader for every command that takes one (`select --labeled`, `plan-transforms
--json`, `gallery --labels/--gt`, `convert --labels`), so they refuse the same mistakes
with the same one-line errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.errors import UserError


def read_coco_dataset(path: Path, flag: str) -> dict[str, Any]:
    """The COCO dataset dict in `path`: a JSON object with `images` and `annotations`
    lists and a non-empty `categories` list; otherwise a one-line UserError naming
    `flag`. Entries are not checked here: each command checks the fields it uses."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder, not a COCO JSON file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{flag} {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read {flag} {path}: {error}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations")):
        raise UserError(f"{flag} {path} is not a COCO dataset (no 'images' and 'annotations' lists)")
    if not isinstance(data.get("categories"), list) or not data["categories"]:
        raise UserError(f"{flag} {path} has no 'categories' list")
    return data
