"""Files replaced in one step: written to a hidden temporary beside the target, flushed
to disk, then renamed over it, so a reader (or a resumed run after a kill) sees the old
file or the new one, never half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from collections.abc import Callable
from typing import IO, Any


def write_atomically(path: Path, write: Callable[[IO], Any], binary: bool = True) -> None:
    """`write(f)` into a hidden temporary beside `path` (opened binary, else UTF-8 text),
    flushed to disk, then renamed over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") if binary else open(tmp, "w", encoding="utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk: give its space back, leave no hidden file
        raise
    os.replace(tmp, path)


def write_text_atomically(path: Path, text: str) -> None:
    write_atomically(path, lambda f: f.write(text), binary=False)


def write_json_atomically(path: Path, data: Any, **dumps_options: Any) -> None:
    """`json.dumps(data, **dumps_options)` into `path`, atomically."""
    write_text_atomically(path, json.dumps(data, **dumps_options))
