"""`distill ARGS`, SIGKILLed at an exact point of its file writes, to land a kill inside a
window a random kill rarely hits (between a shard's failures and its rename, between its
rename and the manifest, inside a gallery's clearing):

    python -m tests.faults.killpoint [FUNCTION:]PATTERN before|after N ARGS...

kills the process just before (or just after) its Nth `os.replace` onto a file whose name
matches the glob PATTERN (with FUNCTION, `unlink` or `rename`: its Nth call of that `os`
function whose last argument matches). Every atomic write
(shards, manifest, failures, gallery pages) ends in `os.replace`, so these are the points
between the steps of a commit.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import sys
from pathlib import Path


def main() -> int:
    pattern, when, number, *argv = sys.argv[1:]
    assert when in ("before", "after"), when
    name, _, pattern = pattern.rpartition(":")
    name = name or "replace"
    real, seen = getattr(os, name), 0

    def call_then_maybe_die(*args, **kwargs):
        nonlocal seen
        hit = False
        if fnmatch.fnmatch(Path(args[-1]).name, pattern):  # replace(src, dst), unlink(path)
            seen += 1
            hit = seen == int(number)
        if hit and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if hit and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(os, name, call_then_maybe_die)
    from engine.cli import main as distill

    return distill(argv)


if __name__ == "__main__":
    sys.exit(main())
