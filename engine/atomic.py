"""Files replaced in one step: written to a hidden temporary beside the target, flushed
to disk, then renamed over it, so a reader (or a resumed run after a kill) sees the old
file or the new one, never half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_text_atomically(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk: give its space back, leave no hidden file
        raise
    os.replace(tmp, path)


def write_json_atomically(path: Path, data: Any, **dumps_options: Any) -> None:
    """`json.dumps(data, **dumps_options)` into `path`, atomically."""
    write_text_atomically(path, json.dumps(data, **dumps_options))
