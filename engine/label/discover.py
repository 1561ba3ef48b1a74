"""Discovery: which files a labeling run reads, found lazily and in a fixed order.

The kinds of input: a folder walked recursively (`discover_folder`), a text file that
lists paths (`read_list`), tar shards (engine.label.tar): one archive, a brace pattern
of them (`dump/{00000..00099}.tar`), or archives met in a folder or a list, whose image
members are read in place (named `00042.tar/key.jpg`), and object storage
(engine.label.storage: `s3://bucket/prefix`, walked as a folder is), and, when the run
samples frames (`FrameSampling`), video files, whose sampled frames are read in place
(named `match.mp4#t=12.480`: engine.label.video). All are generators, so the
pipeline starts decoding the first image while the rest of a large dump is still being
found, and memory does not grow with the number of images. The order is deterministic
(names sorted within each directory, members in archive order, patterns in expansion
order, video frames in presentation order), so two runs over the same input see the
images in the same order and a resumed run's shards line up with the first run's.

Discovery never raises for one bad entry: what it already knows is unusable (a symlink
loop, a broken symlink, a directory it cannot list) comes out as a `Source` with
`problem` set, so that the pipeline records it in failures.jsonl and goes on.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.errors import UserError

if TYPE_CHECKING:
    from engine.label.video import FrameSampling

# Matched against the lower-cased suffix, so "IMG_0001.JPG" counts. The extension only
# decides what discovery offers; the decoder sniffs the content (a PNG named .jpg is fine).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
)


@dataclass(frozen=True)
class Source:
    """One input as discovery found it.

    path: the path to open (for a tar member: the archive's path joined with the
        member's name, which only names it).
    name: what records call it: the POSIX path relative to the input root, or the
        absolute path for an absolute entry of a list file.
    problem: set when discovery already knows the entry is unusable (the one-line reason
        for failures.jsonl); None for an entry the decoder should try.
    read: for an input that is not a local file of its own (a tar member, an object in
        storage), returns its bytes or raises DecodeError; for a video frame, returns the
        decoded frame ((H, W, 3) uint8 RGB); None: read the file at `path`.
    """

    path: Path
    name: str
    problem: str | None = None
    read: Callable[[], bytes | np.ndarray] | None = None


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


def discover_folder(root: Path, with_bytes: bool = True, frames: FrameSampling | None = None) -> Iterator[Source]:
    """Every image file under `root`, depth-first, entries of each directory sorted by
    name (directories and files interleaved in that order), hidden names skipped; a tar
    archive (engine.label.tar.TAR_SUFFIXES) is replaced by its image members, in place,
    and with `frames`, a video (engine.label.video.VIDEO_EXTENSIONS) by its sampled frames
    (without, videos are skipped as any other file is). with_bytes=False: tar members are
    listed without being read, video frames estimated without decoding (for counting).

    Directory symlinks are followed, but a directory (by device and inode) is entered at
    most once: a symlink that would re-enter one comes out as a Source with a problem
    instead, which also ends symlink loops such as `sub/back -> ..`.
    """
    from engine.label.tar import is_tar_name, tar_sources
    from engine.label.video import is_video_name, video_sources

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
        elif is_tar_name(entry.name):
            problem = _file_problem(entry)
            if problem is None:
                yield from tar_sources(path, name, with_bytes)
            else:
                yield Source(path, name, problem)
        elif frames is not None and is_video_name(entry.name):
            problem = _file_problem(entry)
            if problem is None:
                yield from video_sources(path, name, frames, with_bytes)
            else:
                yield Source(path, name, problem)


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


def read_list(list_file: Path, with_bytes: bool = True, frames: FrameSampling | None = None) -> Iterator[Source]:
    """The paths named by a text file, one per line, read line by line.

    Surrounding whitespace is stripped; blank lines and lines starting with "#" are
    skipped. A relative path is taken relative to the list file's own folder and keeps
    the line as its name; an absolute path is its own name. Entries are not filtered by
    extension: a list is an explicit request, and the decoder reports what it cannot read;
    a tar archive's entry stands for its image members, and with `frames`, a video's for
    its sampled frames (with_bytes: see discover_folder).
    """
    from engine.label.tar import is_tar_name, tar_sources
    from engine.label.video import is_video_name, video_sources

    list_file = Path(list_file)
    base = list_file.parent
    with open(list_file, encoding="utf-8") as lines:
        for line in lines:
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            path = Path(entry)
            name = str(path) if path.is_absolute() else entry
            path = path if path.is_absolute() else base / path
            if is_tar_name(entry):
                yield from tar_sources(path, name, with_bytes)
            elif frames is not None and is_video_name(entry):
                yield from video_sources(path, name, frames, with_bytes)
            else:
                yield Source(path, name)


def _pattern_sources(pattern: str, with_bytes: bool) -> tuple[Path, Iterator[Source]]:
    """A brace pattern of tar shards (`dump/{00000..00099}.tar`): the folder above its
    first brace is the root, each shard is named relative to it; a shard the pattern names
    but that does not exist is a Source with a problem."""
    from engine.label.tar import expand_braces, is_tar_name, tar_sources

    try:
        paths = expand_braces(pattern)
    except ValueError as error:
        raise UserError(f"{error}: {pattern}") from None
    not_tar = next((p for p in paths if not is_tar_name(p)), None)
    if not_tar is not None:
        raise UserError(f"a brace pattern names tar shards (.tar, .tar.gz, ...), not {not_tar}: {pattern}")
    root = os.path.dirname(pattern[:pattern.index("{")])

    def sources() -> Iterator[Source]:
        for path in paths:
            name = Path(path).relative_to(root).as_posix() if root else path
            if Path(path).is_file():
                yield from tar_sources(Path(path), name, with_bytes)
            else:
                yield Source(Path(path), name, "file not found" if not Path(path).exists() else "not a regular file")

    return Path(root or "."), sources()


def open_sources(images: Path | str | None, list_file: Path | None,
                 with_bytes: bool = True, frames: FrameSampling | None = None) -> tuple[Path | str, Iterator[Source]]:
    """The input root (the folder names are relative to; for a URL, the URL as a str) and
    the stream of sources.

    Exactly one of `images` (a folder, a tar archive, a brace pattern of them, a video
    file, or an object-storage URL: engine.label.storage) and `list_file` must be given.
    frames: how videos are sampled (None: videos are not read). with_bytes=False: list tar
    members without reading them, estimate video frames without decoding (for counting).
    Raises `UserError` for a missing input, a file that is neither a folder nor a tar
    archive nor a video (a video without `frames`), or a missing or unreadable list file;
    an empty folder is not an error here (the caller decides).
    """
    from engine.label.storage import is_url
    from engine.label.tar import has_braces, is_tar_name, tar_sources
    from engine.label.video import is_video_name, video_sources

    if (images is None) == (list_file is None):
        raise UserError("give exactly one of an image folder and a list file")
    if images is not None and is_url(str(images)):
        from engine.label.storage import open_storage, storage_sources

        fs, path = open_storage(str(images))
        return str(images).rstrip("/"), storage_sources(fs, path, with_bytes)
    if images is not None:
        if not Path(images).exists() and has_braces(str(images)):
            return _pattern_sources(str(images), with_bytes)
        images = Path(images)
        if not images.exists():
            raise UserError(f"image folder not found: {images}")
        if images.is_file() and is_tar_name(images.name):
            return images.parent, tar_sources(images, images.name, with_bytes)
        if images.is_file() and is_video_name(images.name):
            if frames is None:
                raise UserError(f"a video needs a frame sampling (frames per second or every k-th frame): {images}")
            return images.parent, video_sources(images, images.name, frames, with_bytes)
        if not images.is_dir():
            raise UserError(f"not a folder, a tar archive or a video: {images}")
        return images, discover_folder(images, with_bytes, frames)
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
    return list_file.parent, read_list(list_file, with_bytes, frames)
