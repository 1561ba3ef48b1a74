"""One writer per run folder: `OUT/.lock`, held by the process that labels into OUT.

Two `distill label` processes on one OUT would both write the same shards and append to
one failures file, so the second is refused, naming the holder's process id. The lock is
an advisory `flock` on the file, which the kernel drops when its holder dies however it
dies: a lock file left by a killed run (its PID gone) is taken over without anyone
deleting it by hand. The file holds the holder's PID only for the message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from engine.errors import UserError

LOCK_NAME = ".lock"


class RunLocked(UserError):
    """Another live process holds the run folder."""


class RunLock:
    """The lock of run folder `out`, taken on construction (RunLocked when another process
    holds it); `release` (or leaving a `with` block) drops it and removes the file."""

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / LOCK_NAME
        self._fd: int | None = None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise RunLocked(f"{out} is being written by another labeling run (process {holder}, "
                                f"lock file {self.path})") from None
            # The previous holder may have released and removed the file between our open
            # and our flock: then we hold a lock on a file nobody else can find. Retry.
            if _same_file(fd, self.path):
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        # Removed while still locked, so that no one can take a lock on it in between.
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    # A run folder dropped without `release` (a caller that never closes it) still frees
    # its lock when collected, not at the process's exit.
    __del__ = release

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)
