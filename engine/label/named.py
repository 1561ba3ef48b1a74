"""One image of a run read back by its record's `file_name`, for the tools that show or
export a run's images (distill gallery, distill convert): the name is resolved under the
root the run's names are relative to, as discovery named it, and read by the labeler's
own readers, so a reviewer sees the pixels the teacher saw.

    a/b.jpg                  ROOT/a/b.jpg, a file
    00042.tar/key.jpg        member key.jpg of the tar shard ROOT/00042.tar (engine.label.tar)
    match.mp4#t=12.480       the frame at 12.480 s of the video ROOT/match.mp4 (engine.label.video)
    (ROOT s3://bucket/pre)   the object s3://bucket/pre/a/b.jpg (engine.label.storage)

`image_bytes` gives what was read (the encoded image; a video frame has none), and
`read_image` the decoded (H, W, 3) uint8 RGB image; both raise DecodeError with a
one-line reason, as the labeler records a failure.
"""

from __future__ import annotations

import tarfile
from functools import lru_cache
from pathlib import Path, PurePosixPath

import numpy as np

from engine.label.decode import DecodeError, decode_bytes, read_file
from engine.label.storage import is_url
from engine.label.tar import is_tar_name, member_name
from engine.label.video import split_frame_name


def exists(root: Path | str, name: str) -> bool:
    """Whether `name` names something under `root` (a file, a tar shard holding a member
    of that name, a video; for object storage, assumed: checking costs a request)."""
    if is_url(str(root)):
        return True
    frame = split_frame_name(name)
    if frame is not None:
        return (Path(root) / frame[0]).is_file()
    archive = _archive_of(Path(root), name)
    if archive is not None:
        return archive[1] in _members(archive[0])
    return (Path(root) / name).is_file()


def image_bytes(root: Path | str, name: str) -> bytes:
    """The encoded bytes of image `name` under `root`; DecodeError for a video frame
    (decoded only) or what cannot be read."""
    if is_url(str(root)):
        return _object_bytes(str(root), name)
    if split_frame_name(name) is not None:
        raise DecodeError("a video frame has no file of its own")
    archive = _archive_of(Path(root), name)
    if archive is not None:
        return _member_bytes(*archive)
    return read_file(Path(root) / name)


def read_image(root: Path | str, name: str) -> np.ndarray:
    """Image `name` under `root`, decoded: (H, W, 3) uint8 RGB; DecodeError with the
    reason when it cannot be read or decoded."""
    frame = split_frame_name(name)
    if frame is not None and not is_url(str(root)):
        from engine.label.video import read_frame

        try:
            return read_frame(Path(root) / frame[0], frame[1])
        except ValueError as error:
            raise DecodeError(str(error)) from None
    return decode_bytes(image_bytes(root, name))


def _archive_of(root: Path, name: str) -> tuple[Path, str] | None:
    """(tar shard, member name) when a leading part of `name` is a tar shard under `root`."""
    parts = PurePosixPath(name).parts
    for i in range(len(parts) - 1):
        if is_tar_name(parts[i]):
            archive = root.joinpath(*parts[:i + 1])
            if archive.is_file():
                return archive, "/".join(parts[i + 1:])
    return None


@lru_cache(maxsize=8)
def _members(archive: Path) -> dict[str, tarfile.TarInfo]:
    """The image members of a shard by their record name (headers only, read once; a
    gallery draws many images of the same few shards)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            return {inner: member for member in tar if (inner := member_name(member)) is not None}
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DecodeError(f"not a readable tar archive: {error}") from None


def _member_bytes(archive: Path, inner: str) -> bytes:
    member = _members(archive).get(inner)
    if member is None:
        raise DecodeError(f"no member {inner} in {archive.name}")
    try:
        with tarfile.open(archive, "r:*") as tar:
            return tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, AttributeError) as error:
        raise DecodeError(f"truncated tar member: {error}") from None


def _object_bytes(root: str, name: str) -> bytes:
    from engine.label.storage import read_object

    fs, path = _storage(root)
    return read_object(fs, f"{path}/{name}")


@lru_cache(maxsize=4)
def _storage(root: str):
    from engine.label.storage import open_storage

    return open_storage(root)
