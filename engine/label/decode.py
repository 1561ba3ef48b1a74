"""The guarded decoder: file bytes -> (H, W, 3) uint8 RGB, or a one-line reason.

Decoding is OpenCV's (`cv2.imdecode` releases the GIL, so a pool of worker threads
decodes in parallel, and it applies EXIF orientation). Before OpenCV sees the data, the
image size is read from the header alone with Pillow, so that a file whose header claims
an enormous image (a decompression bomb) is refused before anything is allocated.

Everything here is a pure function of its arguments: no module state is written after
import, so any number of threads may call it at once.

For some damaged JPEGs libjpeg prints "Corrupt JPEG data: ..." itself, straight to file
descriptor 2; OpenCV's log level does not reach it, and redirecting fd 2 would be
process-wide and race the other threads, so the message is left alone.
"""

from __future__ import annotations

import errno
import hashlib
import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from engine.label.discover import Source

# Pillow's own bound (Image.MAX_IMAGE_PIXELS: a 24-bit image of this size takes about
# 0.5 GiB, and Pillow warns above it). Reusing it gives a limit that users of other tools
# already know; callers that truly have larger images pass their own max_pixels.
DEFAULT_MAX_PIXELS = 178_956_970

# Register every Pillow format plugin now, once, in the importing thread: the header
# reader below only reads the registry, so worker threads never mutate it.
Image.init()


class DecodeError(Exception):
    """An image that cannot be labeled; str(error) is the one-line reason that goes to
    failures.jsonl ("empty file", "image too large: ...", ...)."""


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) in stored pixels from the header, or None if no format matches.

    This does what `Image.open` does up to, but not including, its decompression-bomb
    check: that check reads the global `Image.MAX_IMAGE_PIXELS` and warns through the
    (global, not thread-safe) warnings machinery, and we want our own limit to decide.
    A plugin opener only parses the header; pixel data is read by `load()`, never here.
    """
    prefix = data[:16]
    for format_id in Image.ID:
        factory, accept = Image.OPEN[format_id]
        # accept() returns a bool, or a string explaining why a known format is unusable.
        verdict = accept(prefix) if accept is not None else True
        if not verdict or isinstance(verdict, str):
            continue
        try:
            image = factory(io.BytesIO(data), "")
        except Image.DecompressionBombError:
            raise  # a few plugins (WebP, GIF) run Pillow's check inside their opener
        except Exception:  # not this format after all; Image.open swallows these too
            continue
        return image.size
    return None


def decode_bytes(data: bytes | np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, BMP, WebP, TIFF, ...; the content decides,
    not the file name). An array is an image its source decoded already (a video frame,
    engine.label.video: (H, W, 3) uint8 RGB): only the pixel limit applies to it.

    max_pixels: refuse images whose header claims more than this many pixels (w * h).
    Returns (H, W, 3) uint8 RGB, C-contiguous, in displayed orientation (EXIF applied,
    so H and W are the displayed height and width). Grayscale, alpha, 16-bit and CMYK
    inputs come out as 8-bit RGB (alpha dropped, 16-bit scaled by 1/256).
    Raises DecodeError with a one-line reason.
    """
    if isinstance(data, np.ndarray):
        height, width = data.shape[:2]
        if width * height > max_pixels:
            raise DecodeError(f"image too large: {width}x{height} pixels exceeds the {max_pixels}-pixel limit")
        return data
    if len(data) == 0:
        raise DecodeError("empty file")
    try:
        size = _header_size(data)
    except Image.DecompressionBombError:
        # Only reachable for formats whose opener checks by itself, and only above twice
        # Pillow's bound; the header size is not available to quote.
        raise DecodeError("image too large: header exceeds Pillow's pixel limit") from None
    if size is None:
        raise DecodeError("not an image (unrecognized format)")
    width, height = size
    if width * height > max_pixels:
        raise DecodeError(
            f"image too large: {width}x{height} pixels exceeds the {max_pixels}-pixel limit"
        )
    try:
        # IMREAD_COLOR: always 8-bit, 3 channels, and EXIF orientation applied.
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        bgr = None
    if bgr is None:
        raise DecodeError("corrupt or truncated image data")
    if bgr.size == 0:
        raise DecodeError("image has zero size")
    # cvtColor writes a new C-contiguous array, which the views' resize wants anyway.
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_file(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read and decode one image file; see `decode_bytes` for the result.

    The whole file is read first (one read, then the decode is pure CPU that releases
    the GIL). Raises DecodeError with a one-line reason for unreadable files too.
    """
    return decode_bytes(read_file(path), max_pixels)


def decode_source(source: Source, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode what discovery found: a file, or bytes from elsewhere (a tar member, an
    object); the same guards either way. See `decode_bytes` for the result; DecodeError
    with a one-line reason."""
    return decode_bytes(read_source(source), max_pixels)


def read_source(source: Source) -> bytes | np.ndarray:
    """The bytes of what discovery found (a file, a tar member, an object), or the pixels
    of a video frame, decoded already ((H, W, 3) uint8 RGB: `content_digest` and
    `decode_bytes` take either); DecodeError with a one-line reason when they cannot be read."""
    return source.read() if source.read is not None else read_file(source.path)


def content_digest(data: bytes | np.ndarray) -> bytes:
    """A 128-bit digest of `data` that tells exact duplicates apart: BLAKE2b from the
    standard library (no new dependency; about 0.9 GB/s a core here, far above JPEG
    decoding), 16 bytes, so that accidental collisions stay out of reach at 10^9 files."""
    return hashlib.blake2b(data, digest_size=16).digest()


def read_file(path: Path) -> bytes:
    """A file's bytes; DecodeError with a one-line reason when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except PermissionError:
        raise DecodeError("permission denied") from None
    except FileNotFoundError:
        raise DecodeError("file not found") from None
    except IsADirectoryError:
        raise DecodeError("is a directory") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DecodeError("symlink loop") from None
        raise DecodeError(f"cannot read file: {e.strerror or e}") from None
