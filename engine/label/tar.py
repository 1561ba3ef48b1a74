"""Tar shards in the WebDataset convention: `00000.tar` holding `key.jpg`, `key.json`, ...

Each shard is read with Python's own `tarfile` in streaming mode (`r|*`): one strictly
sequential pass over the bytes, never a seek, nothing extracted to disk, compression
(gzip, bz2, xz) detected by itself. That is what a dump of shards needs: a spinning disk
or a network file system reads a shard at its sequential rate, and the same reader
works on a stream that cannot seek. `tarfile` is in the standard library and maintained
with it, so shards need no new dependency and no hand-written parser (`webdataset` adds
its own sample grouping and a torch-flavoured pipeline the engine has no use for).

An image member becomes a `Source` named `<shard name>/<member name>` (`00042.tar/key.jpg`)
whose bytes were read as the member went by (streaming mode allows no going back), in
the archive's order, which is what makes the discovery order deterministic. Members
whose names are not image names (`key.json`, `key.cls`) and hidden ones (`._key.jpg`)
are skipped, as a folder walk skips them. What cannot be read is a Source with a problem,
and discovery goes on with the next shard: a file that is not a tar archive, a member
cut short, an archive that ends without its end-of-archive block (truncated between
members) or whose next header is corrupt.
"""

from __future__ import annotations

import re
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from engine.label.discover import Source, is_image_name

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")

# What a damaged archive raises while being read: tarfile's own errors, a gzip/bz2/xz
# stream cut short (EOFError) or corrupt (zlib.error and OSError subclasses), a read error.
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


def is_tar_name(name: str) -> bool:
    """Whether a file name ends in one of TAR_SUFFIXES (case-insensitive)."""
    return name.lower().endswith(TAR_SUFFIXES)


class _HeaderWatch(tarfile.TarInfo):
    """TarInfo that remembers, on the TarFile, why reading a header stopped the archive.

    `TarFile.next()` ends the iteration quietly on a truncated or corrupt header after the
    first member, exactly as it does on the end-of-archive block; only the header reader
    (`fromtarfile`, which TarFile calls through its `tarinfo` class, a documented
    parameter) sees the difference.
    """

    @classmethod
    def fromtarfile(cls, archive: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(archive)
        except tarfile.HeaderError as error:
            archive.stopped_by = error  # type: ignore[attr-defined]
            raise


def _end_problem(archive: tarfile.TarFile) -> str | None:
    """Why the archive's member list ended early, or None for a proper end."""
    error = getattr(archive, "stopped_by", None)
    if error is None or isinstance(error, tarfile.EOFHeaderError):
        return None  # the end-of-archive (zero) block
    if isinstance(error, (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError)):
        return f"truncated tar: ends without the end-of-archive block at byte {archive.offset}"
    return f"corrupt tar: invalid header at byte {archive.offset} ({error})"


def member_name(member: tarfile.TarInfo) -> str | None:
    """The member's name as records use it ("./a/key.jpg" -> "a/key.jpg"), or None for a
    member discovery skips: a directory, a hidden name, not an image name."""
    parts = [p for p in PurePosixPath(member.name).parts if p not in ("", ".", "/")]
    if member.isdir() or not parts or any(p.startswith(".") for p in parts):
        return None
    name = "/".join(parts)
    return name if is_image_name(name) else None


def tar_sources(path: Path, name: str, with_bytes: bool = True) -> Iterator[Source]:
    """The image members of the tar archive at `path`, in archive order, as Sources named
    `name + "/" + member name` (`name`: the archive's own name in the run, such as
    "00042.tar"), their bytes in `Source.read`.

    with_bytes=False lists names only (for counting): no member is read, and a plain tar
    is opened for random access so that only its headers are read.
    Never raises for a damaged archive: see the module docstring.
    """
    try:
        # Streaming mode reads each member exactly once, in order (see the module docstring).
        archive = tarfile.open(path, "r|*" if with_bytes else "r:*", tarinfo=_HeaderWatch)
    except _READ_ERRORS as error:
        yield Source(path, name, f"not a readable tar archive: {_reason(error)}")
        return
    with archive:
        while True:
            try:
                member = archive.next()
            except _READ_ERRORS as error:
                yield Source(path, name, f"corrupt tar after byte {archive.offset}: {_reason(error)}")
                return
            if member is None:
                break
            # TarFile keeps every TarInfo it met (for getmembers()); a shard of many
            # thousand members would hold them all. Nothing here looks back, so drop them.
            archive.members = []
            inner = member_name(member)
            if inner is None:
                continue
            source_name = f"{name}/{inner}"
            if not member.isreg():
                yield Source(path / inner, source_name, "not a regular file (a link or device in the tar)")
                continue
            if not with_bytes:
                yield Source(path / inner, source_name)
                continue
            try:
                data = archive.extractfile(member).read()
            except _READ_ERRORS as error:
                yield Source(path / inner, source_name, f"truncated tar member: {_reason(error)}")
                return
            yield Source(path / inner, source_name, read=_Bytes(data))
        problem = _end_problem(archive)
    if problem is not None:
        yield Source(path, name, problem)


class _Bytes:
    """`Source.read` for bytes already in memory (a tar member read as it went by)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __call__(self) -> bytes:
        return self.data


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return " ".join(str(error).split()) or type(error).__name__  # one line for failures.jsonl


_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(\d+)\.\.(\d+)$")


def has_braces(pattern: str) -> bool:
    """Whether `pattern` holds a brace group ({00000..00099} or {a,b})."""
    return _BRACE.search(pattern) is not None


def expand_braces(pattern: str) -> list[str]:
    """Every name a brace pattern stands for, in order: `{00000..00002}` a numeric range
    (both ends included, zero-padded to the width of the first end), `{a,b}` a list;
    several groups expand left to right ("s{0..1}-{a,b}" -> s0-a, s0-b, s1-a, s1-b).
    ValueError for a range that runs backwards."""
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    head, body, tail = pattern[:match.start()], match.group(1), pattern[match.end():]
    numeric = _RANGE.match(body)
    if numeric:
        first, last = numeric.groups()
        if int(last) < int(first):
            raise ValueError(f"brace range {{{body}}} runs backwards")
        choices = [str(n).zfill(len(first)) for n in range(int(first), int(last) + 1)]
    else:
        choices = body.split(",")
    return [head + choice + rest for choice in choices for rest in expand_braces(tail)]
