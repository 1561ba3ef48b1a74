"""A folder of awkward inputs that the labeling path must survive, for any test to reuse.

`build_gauntlet(root)` writes it and returns {name relative to root: expected failure},
where the expected failure is a substring of the reason the run must record for that
entry (discovery's `problem` when discovery already flags it, else the decoder's
reason), or None for a good image that must be labeled. The keys are exactly what
`discover_folder(root)` yields: hidden files and non-image extensions are written too,
but are not in the dict because discovery must not offer them.

Every picture is small (64..160 px a side), seeded noise with a few bright rectangles
and a pure red square at `RED_BOX`, so a test can tell RGB from BGR. Fixtures are written
with Pillow (no EXIF unless asked for) or, for 16-bit colour, OpenCV.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

EXIF_NAME = "exif_rotated.jpg"
# (x1, y1, x2, y2) in stored pixels of every colour picture: pure red (255, 0, 0).
RED_BOX = (4, 4, 28, 28)
# Stored (height, width) of the EXIF picture: displayed as (width, height).
EXIF_STORED_HW = (96, 144)
BOMB_SIDE = 100_000
# Files with content the tests check in detail.
GRAY_NAME = "gray.jpg"
RGBA_NAME = "rgba.png"
DEEP_NAME = "deep16.png"
CMYK_NAME = "cmyk.jpg"
PNG_AS_JPG_NAME = "png_named.jpg"
ONE_PIXEL_NAME = "one_pixel.png"
NO_READ_NAME = "no_read.jpg"


def picture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(height, width, 3) uint8 RGB: dark noise, three bright rectangles, red RED_BOX."""
    image = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
    for _ in range(3):
        x1, y1 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        x2 = x1 + int(rng.integers(8, width // 2))
        y2 = y1 + int(rng.integers(8, height // 2))
        image[y1:y2, x1:x2] = rng.integers(150, 256, size=3, dtype=np.uint8)
    x1, y1, x2, y2 = RED_BOX
    image[y1:y2, x1:x2] = (255, 0, 0)
    return image


def _jpeg_bytes(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=95)
    return out.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A valid-looking PNG whose IHDR claims side x side RGB pixels, with almost no data."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    idat = zlib.compress(b"\x00" * 64)  # a sliver of the first row: never enough
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def build_gauntlet(root: Path, seed: int = 0) -> dict[str, str | None]:
    """Write the gauntlet under `root` (created if needed); see the module docstring."""
    root = Path(root)
    (root / "sub").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    expected: dict[str, str | None] = {}

    def save(name: str, image: np.ndarray | Image.Image, fmt: str, **kw) -> None:
        pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
        pil.save(root / name, format=fmt, **kw)
        expected[name] = None

    # Unusable files.
    (root / "empty.jpg").write_bytes(b"")
    expected["empty.jpg"] = "empty file"
    whole = _jpeg_bytes(picture(rng, 120, 160))
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    expected["truncated.jpg"] = "corrupt or truncated"
    (root / "notes.jpg").write_text("These are notes, not a picture.\n" * 4)
    expected["notes.jpg"] = "not an image"
    (root / "bomb.png").write_bytes(bomb_png())
    expected["bomb.png"] = "image too large"
    os.symlink("loop.jpg", root / "loop.jpg")  # points at itself: ELOOP on open
    expected["loop.jpg"] = "symlink loop"
    os.symlink("does_not_exist.jpg", root / "broken_link.jpg")
    expected["broken_link.jpg"] = "broken symlink"
    os.symlink("..", root / "sub" / "back")  # a directory loop: discovery must end
    expected["sub/back"] = "symlink loop"

    # Good images, in every awkward encoding the decoder must normalize to 8-bit RGB.
    save(PNG_AS_JPG_NAME, picture(rng, 100, 130), "PNG")  # content decides, not the name
    save(GRAY_NAME, Image.fromarray(picture(rng, 90, 110)).convert("L"), "JPEG", quality=95)
    rgba = np.dstack([picture(rng, 80, 120), rng.integers(0, 256, (80, 120), dtype=np.uint8)])
    save(RGBA_NAME, rgba, "PNG")
    deep = picture(rng, 70, 100).astype(np.uint16) * 257  # 8-bit value v -> 16-bit v*257
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(deep[..., ::-1]))  # RGB -> BGR
    assert ok
    (root / DEEP_NAME).write_bytes(encoded.tobytes())
    expected[DEEP_NAME] = None
    save(CMYK_NAME, Image.fromarray(picture(rng, 100, 100)).convert("CMYK"), "JPEG", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    save(EXIF_NAME, picture(rng, *EXIF_STORED_HW), "JPEG", quality=95, exif=exif)
    save(ONE_PIXEL_NAME, np.full((1, 1, 3), 200, dtype=np.uint8), "PNG")
    save("UPPER.JPG", picture(rng, 64, 64), "JPEG", quality=95)
    save("sub/with space.jpg", picture(rng, 72, 96), "JPEG", quality=95)
    save("sub/ünïcødé 图.png", picture(rng, 96, 72), "PNG")

    # Unreadable to anyone but root. Root reads it regardless of the mode (CAP_DAC_OVERRIDE),
    # so as root it is a good image, otherwise a permission failure.
    save(NO_READ_NAME, picture(rng, 64, 80), "JPEG", quality=95)
    os.chmod(root / NO_READ_NAME, 0)
    expected[NO_READ_NAME] = None if running_as_root() else "permission denied"

    # Written but never discovered: not in the dict.
    (root / "readme.txt").write_text("not an image extension\n")
    save(".hidden.jpg", picture(rng, 64, 64), "JPEG")
    del expected[".hidden.jpg"]
    return expected
