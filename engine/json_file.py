"""Reading one JSON document that a user or an earlier run wrote (manifests, plans,
model-card sidecars, COCO files, synthetic-data configs), with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`. FileNotFoundError when there is no such file, ValueError
    (one line about the content; callers name the file and what they expected there)
    when it is a folder, unreadable, not JSON, or not a JSON object."""
    path = Path(path)
    if path.is_dir():
        raise ValueError("a folder, not a JSON file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"not readable JSON ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object but a {type(data).__name__}")
    return data
