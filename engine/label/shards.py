"""The run folder: shards made visible by atomic renames, a manifest of finished shards,
a failures file, and resume (DESIGN.md, Predictions).

    OUT/shards/shard-000000.jsonl   records of discovery indices [0, S), one JSON per line
    OUT/manifest.json               RunManifest (engine.label.manifest): settings, finished shards, ...
    OUT/failures.jsonl              {"file_name", "reason", "shard"} per unreadable image
    OUT/.lock                       the PID of the process writing OUT, while it runs

Shard k holds the images of discovery indices [k*S, (k+1)*S) (S = shard size), so its
content and name depend only on the input and the settings. A shard is written to a
hidden temporary file and renamed into place when complete; its failures are appended to
failures.jsonl just before, and the manifest is replaced just after. A run killed
anywhere therefore resumes by redoing only unfinished shards: failures of unfinished
shards are dropped from failures.jsonl on resume, and a shard renamed but not yet in the
manifest is simply written again under the same name. No image is ever written twice.
A resume also checks each finished shard against its manifest entry (its file's lines,
its failures' lines) and writes again one that was deleted, truncated or extended since;
a manifest that is not whole JSON is refused (it alone says how the shards were made).
One process at a time writes OUT: it holds OUT/.lock (engine.label.lock).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from engine.atomic import write_text_atomically
from engine.errors import UserError
from engine.label.lock import RunLock
from engine.label.manifest import RunManifest, RunSummary, ShardEntry, manifest_path


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.jsonl"


def record_line(record: dict[str, Any]) -> str:
    """A record as its line in a shard file (compact JSON, UTF-8 kept, newline)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


class RunExists(UserError):
    """The run folder already holds a run and resuming was not asked for."""


class RunFolder:
    """OUT: created with `manifest` (a new run's: settings, shard size, categories,
    runtime), or reopened for `resume` after checking that the settings match; then the
    run being resumed keeps its shard size, finished shards and start time, and takes the
    new categories and runtime. `self.manifest` is the folder's manifest as it is on disk
    after each `commit`."""

    def __init__(self, out: Path, manifest: RunManifest, resume: bool) -> None:
        self.out = out
        self.shards_dir = out / "shards"
        self.failures_path = out / "failures.jsonl"
        try:
            self.shards_dir.mkdir(parents=True, exist_ok=True)
            # Taken before the manifest is read: a second process on OUT is refused before
            # it decides anything from a manifest the first one is still writing. Creating
            # the lock file is also the check that OUT is writable.
            self.lock = RunLock(out)
        except OSError as error:
            raise UserError(f"cannot write to the run folder {out}: {error.strerror or error}") from None
        try:
            self._open(manifest, resume)
        except BaseException:
            self.lock.release()
            raise

    def _open(self, manifest: RunManifest, resume: bool) -> None:
        out = self.out
        if manifest_path(out).exists():
            if not resume:
                raise RunExists(f"{out} already holds a labeling run")
            old = RunManifest.load(out)
            difference = old.settings.difference(manifest.settings)
            if difference:
                raise UserError(f"cannot resume the run in {out}: the settings differ: {difference}")
            self.manifest = dataclasses.replace(old, categories=manifest.categories, runtime=manifest.runtime)
            self._drop_unfinished_failures()
        else:
            self.manifest = manifest
            self.failures_path.write_text("")
            self.manifest.save(out)

    @property
    def shard_size(self) -> int:
        return self.manifest.shard_size

    def finished(self) -> FinishedShards:
        """The shards already written (by the run being resumed)."""
        return FinishedShards({entry.index: entry for entry in self.manifest.shards}, self.shard_size)

    def _drop_unfinished_failures(self) -> None:
        """Before a resume: keep in the manifest only the shards whose file holds as many
        lines as it has images and whose failures are all in failures.jsonl, and in
        failures.jsonl only those shards' lines. A shard deleted, truncated or given
        other counts by hand is thereby written again, as is one killed between its
        failures and its manifest entry (its lines are dropped here)."""
        lines: list[tuple[int, str]] = []
        if self.failures_path.exists():
            for line in self.failures_path.read_text().splitlines():
                try:
                    lines.append((int(json.loads(line)["shard"]), line + "\n"))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # a line cut by the kill
        failures = collections.Counter(shard for shard, _ in lines)
        self.manifest.shards = [entry for entry in self.manifest.shards
                                if failures[entry.index] == entry.failures
                                and _line_count(self.shards_dir / entry.file) == entry.images]
        done = set(self.finished().entries)
        write_text_atomically(self.failures_path, "".join(line for shard, line in lines if shard in done))

    def commit(self, index: int, tmp: Path, first: str, images: int, failures: list[dict]) -> None:
        """Make shard `index` visible: failures appended, atomic rename, manifest updated."""
        with open(self.failures_path, "a") as f:
            for failure in failures:
                f.write(json.dumps({**failure, "shard": index}, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.shards_dir / shard_name(index))
        self.manifest.shards.append(ShardEntry(index, shard_name(index), first, images, len(failures)))
        self.manifest.shards.sort(key=lambda entry: entry.index)
        self.manifest.save(self.out)

    def temporary_path(self, index: int) -> Path:
        """Where shard `index` is written before its rename (hidden: readers skip it)."""
        return self.shards_dir / f".{shard_name(index)}.tmp"

    def write_shard(self, index: int, lines: str, first: str, images: int, failures: list[dict]) -> None:
        """Write and commit a whole shard at once (a scale-out run's shards arrive whole).
        lines: its records' `record_line`s, joined."""
        tmp = self.temporary_path(index)
        with space_checked(self.out, tmp):
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(lines)
                f.flush()
                os.fsync(f.fileno())
            self.commit(index, tmp, first, images, failures)

    def mark_complete(self, summary: RunSummary) -> None:
        self.manifest.complete = True
        self.manifest.summary = summary
        with space_checked(self.out):
            self.manifest.save(self.out)

    def close(self) -> None:
        """Let another process open OUT (the lock released)."""
        self.lock.release()


def _line_count(path: Path) -> int | None:
    """Lines in the file at `path` (a last line without its newline not counted: a cut
    one); None when there is no such file. Reads it in 1 MiB blocks."""
    try:
        with open(path, "rb") as f:
            return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
    except (FileNotFoundError, IsADirectoryError):
        return None


class FinishedShards:
    """Which discovery indices the run being resumed already wrote, by shard.

    entries: {shard index: its manifest entry}; size: images per shard.
    """

    def __init__(self, entries: dict[int, ShardEntry], size: int) -> None:
        self.entries = entries
        self.size = size

    def covers(self, index: int, name: str) -> bool:
        """Whether discovery index `index` (file `name`) lies in a finished shard. Refuses
        (UserError) an input that changed since: another first file in a finished shard,
        or more files in it than it was written with."""
        shard, offset = divmod(index, self.size)
        entry = self.entries.get(shard)
        if entry is None:
            return False
        if (offset == 0 and name != entry.first) or offset >= entry.images + entry.failures:
            raise UserError(f"cannot resume: the input changed since the run started "
                            f"(shard {shard} began with {entry.first!r}, now {name!r} at position {index})")
        return True


class ShardWriter:
    """Writes items in discovery order into shards; commits each shard when its last
    index has been seen (or at `close`). Records stream to disk: memory does not grow
    with the shard size."""

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder
        self.size = folder.shard_size
        self._shard: int | None = None
        self._file: TextIO | None = None
        self._tmp: Path | None = None
        self._first = ""
        self._images = 0
        self._failures: list[dict] = []

    def add(self, index: int, name: str, record: dict | None, reason: str | None) -> None:
        with self._space_checked():
            shard = index // self.size
            if shard != self._shard:
                self._commit()
                self._open(shard, name)
            if record is not None:
                self._file.write(record_line(record))
                self._images += 1
            else:
                self._failures.append({"file_name": name, "reason": reason})
            if index % self.size == self.size - 1:
                self._commit()

    @contextlib.contextmanager
    def _space_checked(self) -> Iterator[None]:
        """`space_checked`, the shard being written closed and removed first (its buffer
        cannot be written: close() may fail again)."""
        with space_checked(self.folder.out):
            try:
                yield
            except OSError as error:
                if error.errno in FULL and self._file is not None:
                    with contextlib.suppress(OSError):
                        self._file.close()
                    self._tmp.unlink(missing_ok=True)
                    self._file, self._shard = None, None
                raise

    def _open(self, shard: int, first: str) -> None:
        self._shard, self._first, self._images, self._failures = shard, first, 0, []
        self._tmp = self.folder.temporary_path(shard)
        self._file = open(self._tmp, "w", encoding="utf-8")

    def _commit(self) -> None:
        if self._file is None:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self.folder.commit(self._shard, self._tmp, self._first, self._images, self._failures)
        self._file, self._shard = None, None

    def close(self) -> None:
        with self._space_checked():
            self._commit()


FULL = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def space_checked(out: Path, partial: Path | None = None) -> Iterator[None]:
    """A disk (or quota) that fills while OUT is written stops the run with one line
    naming it; `partial`, the half-written temporary file, is removed to give its space
    back. Finished shards are untouched: the run resumes once there is space."""
    try:
        yield
    except OSError as error:
        if error.errno not in FULL:
            raise
        if partial is not None:
            partial.unlink(missing_ok=True)
        mount = Path(out).resolve()
        while not os.path.ismount(mount) and mount != mount.parent:
            mount = mount.parent
        raise UserError(f"the disk holding {out} (mounted at {mount}) is full: {error.strerror}; the finished "
                        f"shards are kept: free some space and resume the run") from None
