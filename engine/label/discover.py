"""Discovery: which files a labeling run reads, found lazily and in a fixed order.

Two kinds of input: a folder walked recursively (`discover_folder`) or a text file that
lists paths (`read_list`). Both are generators, so the pipeline starts decoding the first
image while the rest of a large dump is still being found, and memory does not grow with
the number of images. The order is deterministic (names sorted within each directory),
so two runs over the same tree see the images in the same order and a resumed run's
shards line up with the first run's.

Discovery never raises for one bad entry: what it already knows is unusable (a symlink
loop, a broken symlink, a directory it cannot list) comes out as a `Source` with
`problem` set, so that the pipeline records it in failures.jsonl and goes on.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError

# Matched against the lower-cased suffix, so "IMG_0001.JPG" counts. The extension only
# decides what discovery offers; the decoder sniffs the content (a PNG named .jpg is fine).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
)


@dataclass(frozen=True)
class Source:
    """One input as discovery found it.

    path: the path to open.
    name: what records call it: the POSIX path relative to the input root, or the
        absolute path for an absolute entry of a list file.
    problem: set when discovery already knows the entry is unusable (the one-line reason
        for failures.jsonl); None for an entry the decoder should try.
    """

    path: Path
    name: str
    problem: str | None = None


def is_image_name(name: str) -> bool:
    """Whether a file name has one of `IMAGE_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _dir_key(st: os.stat_result) -> tuple[int, int]:
    # (device, inode) names a directory however many symlinks lead to it.
    return (st.st_dev, st.st_ino)


def _list_dir(directory: Path) -> list[os.DirEntry[str]]:
    """The non-hidden entries of one directory, sorted by name.

    Only this one directory's listing is held in memory (sorting needs all of it); the
    tree as a whole is never listed ahead of what the caller has consumed.
    """
    with os.scandir(directory) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def _follows_to(entry: os.DirEntry[str], kind: str) -> bool:
    """entry.is_dir() / entry.is_file(), following symlinks, False where the link cannot
    be followed (DirEntry swallows ENOENT but raises ELOOP for a self-referencing link)."""
    try:
        return entry.is_dir() if kind == "dir" else entry.is_file()
    except OSError:
        return False


def _file_problem(entry: os.DirEntry[str]) -> str | None:
    """Why an image-named entry that is not a directory cannot be read, or None."""
    if _follows_to(entry, "file"):
        return None
    if entry.is_symlink():
        try:
            os.stat(entry.path)
        except OSError as e:
            return "symlink loop" if e.errno == errno.ELOOP else "broken symlink"
        return "not a regular file"  # a symlink to a FIFO, a socket or a device
    # A FIFO named x.jpg would block the reader forever; refuse it here.
    return "not a regular file"


def discover_folder(root: Path) -> Iterator[Source]:
    """Every image file under `root`, depth-first, entries of each directory sorted by
    name (directories and files interleaved in that order), hidden names skipped.

    Directory symlinks are followed, but a directory (by device and inode) is entered at
    most once: a symlink that would re-enter one comes out as a Source with a problem
    instead, which also ends symlink loops such as `sub/back -> ..`.
    """
    root = Path(root)
    visited: set[tuple[int, int]] = set()
    try:
        visited.add(_dir_key(root.stat()))
    except OSError:
        pass  # _list_dir below reports it as the root's own problem
    # A stack of (directory, its remaining entries) instead of recursion: no recursion
    # limit on deep trees, and exactly one listing per directory on the current path.
    stack: list[tuple[Path, Iterator[os.DirEntry[str]]]] = []
    yield from _enter(root, root, stack)
    while stack:
        _, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        path = Path(entry.path)
        name = path.relative_to(root).as_posix()
        if _follows_to(entry, "dir"):
            try:
                key = _dir_key(path.stat())
            except OSError as e:  # vanished or changed between scandir and stat
                yield Source(path, name, f"cannot list directory: {e.strerror or e}")
                continue
            if key in visited:
                yield Source(path, name, "symlink loop: directory already visited")
                continue
            visited.add(key)
            yield from _enter(path, root, stack)
        elif is_image_name(entry.name):
            yield Source(path, name, _file_problem(entry))


def _enter(
    directory: Path, root: Path, stack: list[tuple[Path, Iterator[os.DirEntry[str]]]]
) -> Iterator[Source]:
    """Push `directory`'s listing onto `stack`, or yield why it cannot be listed."""
    try:
        entries = _list_dir(directory)
    except OSError as e:
        reason = "permission denied" if isinstance(e, PermissionError) else e.strerror or str(e)
        name = directory.relative_to(root).as_posix()
        yield Source(directory, name, f"cannot list directory: {reason}")
        return
    stack.append((directory, iter(entries)))


def read_list(list_file: Path) -> Iterator[Source]:
    """The paths named by a text file, one per line, read line by line.

    Surrounding whitespace is stripped; blank lines and lines starting with "#" are
    skipped. A relative path is taken relative to the list file's own folder and keeps
    the line as its name; an absolute path is its own name. Entries are not filtered by
    extension: a list is an explicit request, and the decoder reports what it cannot read.
    """
    list_file = Path(list_file)
    base = list_file.parent
    with open(list_file, encoding="utf-8") as lines:
        for line in lines:
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            path = Path(entry)
            if path.is_absolute():
                yield Source(path, str(path))
            else:
                yield Source(base / path, entry)


def open_sources(images: Path | None, list_file: Path | None) -> tuple[Path, Iterator[Source]]:
    """The input root (the folder names are relative to) and the stream of sources.

    Exactly one of `images` (a folder) and `list_file` must be given. Raises `UserError`
    for a missing folder, a path that is not a folder, or a missing or unreadable list
    file; an empty folder is not an error here (the caller decides).
    """
    if (images is None) == (list_file is None):
        raise UserError("give exactly one of an image folder and a list file")
    if images is not None:
        images = Path(images)
        if not images.exists():
            raise UserError(f"image folder not found: {images}")
        if not images.is_dir():
            raise UserError(f"not a folder: {images}")
        return images, discover_folder(images)
    assert list_file is not None
    list_file = Path(list_file)
    # Open once now so that a bad list is a one-line error before any work starts;
    # read_list opens it again lazily.
    try:
        mode = list_file.stat().st_mode
        if stat.S_ISDIR(mode):
            raise UserError(f"list file is a folder: {list_file}")
        with open(list_file, "rb"):
            pass
    except FileNotFoundError:
        raise UserError(f"list file not found: {list_file}") from None
    except PermissionError:
        raise UserError(f"cannot read list file (permission denied): {list_file}") from None
    except OSError as e:
        raise UserError(f"cannot read list file ({e.strerror or e}): {list_file}") from None
    return list_file.parent, read_list(list_file)
