"""Thumbnails with the labels burnt in: JPEGs of at most THUMB_SIZE px a side, written
by a pool of threads (decoding, resizing, drawing and encoding are OpenCV calls that
release the GIL, so threads scale without the pickling of a process pool).

What is drawn (colours are RGB; the pages print the same legend):
- a label: a solid box in its category's colour, its score above it; for a category with
  keypoints, the skeleton of its visible keypoints: joints and limbs of the person's
  left in orange, of the right in blue, the rest (nose, limbs across the body) in green;
- with ground truth: a false label solid red ("false"), a missed GT box dashed yellow
  ("missed");
- an almost-label (a prediction just under its threshold): dashed, category colour,
  "score<threshold".
An image that cannot be read becomes a grey placeholder that states the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from engine.coco.schema import keypoint_side
from engine.label.decode import DecodeError, decode_file

Color = tuple[int, int, int]  # RGB

THUMB_SIZE = 320  # longer side of a thumbnail, px
MAX_UPSCALE = 2.0  # small images are enlarged, up to this factor, so the drawing stays legible
JPEG_QUALITY = 85
LEFT, RIGHT, CENTRE = (255, 140, 0), (30, 144, 255), (50, 205, 50)
FALSE_COLOR, MISSED_COLOR = (230, 25, 25), (255, 230, 0)
# Box colours of the categories, in the order the labels list them; none of them is
# one of the five colours above.
PALETTE: tuple[Color, ...] = ((230, 60, 230), (0, 215, 215), (245, 245, 245), (160, 120, 255),
                              (255, 130, 190), (40, 175, 150), (205, 205, 100), (140, 205, 255))
KINDS = ("label", "false", "missed", "almost")


@dataclass(frozen=True)
class Mark:
    """One thing to draw. bbox: xywh in the labels' pixels; kind: one of KINDS; text:
    drawn above the box; keypoints: COCO triplets (x, y, v), those with v > 0 drawn."""

    kind: str
    bbox: tuple[float, float, float, float]
    category_id: int
    text: str = ""
    keypoints: tuple[float, ...] | None = None


@dataclass
class Job:
    """One thumbnail: `source` image, `target` JPEG, the labels' `width` x `height` of
    the image (the frame of the marks' coordinates) and its marks. `read`: returns the
    image, (H, W, 3) uint8 RGB, for a source that is no file of its own (a tar member, a
    video frame, an object: engine.label.named; `source` then only names it); None: decode
    the file `source`."""

    source: Path | str
    target: Path
    width: int
    height: int
    marks: list[Mark]
    read: Callable[[], np.ndarray] | None = None


SIDE_COLORS = {"left": LEFT, "right": RIGHT, None: CENTRE}  # by keypoint_side of a joint's name


@dataclass
class Style:
    """Box colour per category id and, for categories with keypoints, the colour of each
    joint and the limbs as (0-based joint a, joint b, colour)."""

    colors: dict[int, Color]
    joints: dict[int, list[Color]]
    limbs: dict[int, list[tuple[int, int, Color]]]


def make_style(categories: Iterable[dict[str, Any]]) -> Style:
    """Colours of COCO `categories` (a limb is left or right when both its joints are)."""
    colors, joints, limbs = {}, {}, {}
    for index, category in enumerate(categories):
        cid = int(category["id"])
        colors[cid] = PALETTE[index % len(PALETTE)]
        names = category.get("keypoints") or []
        if names:
            sides = [keypoint_side(n) for n in names]
            joints[cid] = [SIDE_COLORS[s] for s in sides]
            limbs[cid] = [(a - 1, b - 1, SIDE_COLORS[sides[a - 1] if sides[a - 1] == sides[b - 1] else None])
                          for a, b in category.get("skeleton") or []
                          if 0 < a <= len(names) and 0 < b <= len(names)]
    return Style(colors, joints, limbs)


def thumbnail_shape(width: int, height: int) -> tuple[int, int]:
    """(width, height) of the thumbnail of a `width` x `height` image."""
    scale = min(THUMB_SIZE / max(width, height, 1), MAX_UPSCALE)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _dashed_rectangle(image: np.ndarray, p: tuple[int, int], q: tuple[int, int], color: Color,
                      thickness: int, dash: int = 6, gap: int = 4) -> None:
    (x1, y1), (x2, y2) = p, q
    for a, b in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = max(abs(b[0] - a[0]), abs(b[1] - a[1]))
        for start in range(0, max(length, 1), dash + gap):
            end = min(start + dash, length)
            f0, f1 = start / max(length, 1), end / max(length, 1)
            cv2.line(image, (round(a[0] + (b[0] - a[0]) * f0), round(a[1] + (b[1] - a[1]) * f0)),
                     (round(a[0] + (b[0] - a[0]) * f1), round(a[1] + (b[1] - a[1]) * f1)), color, thickness)


def _text(image: np.ndarray, text: str, x: int, y: int, color: Color) -> None:
    """`text` on a dark band with its lower-left corner at (x, y), kept inside the image."""
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.38
    (w, h), base = cv2.getTextSize(text, font, scale, 1)
    x = min(max(0, x), max(0, image.shape[1] - w - 2))
    y = min(max(h + 2, y), image.shape[0] - base)
    cv2.rectangle(image, (x, y - h - 2), (x + w + 2, y + base), (0, 0, 0), -1)
    cv2.putText(image, text, (x + 1, y - 1), font, scale, color, 1, cv2.LINE_AA)


def _color(mark: Mark, style: Style) -> Color:
    return {"false": FALSE_COLOR, "missed": MISSED_COLOR}.get(mark.kind, style.colors.get(mark.category_id, PALETTE[0]))


def draw_marks(image: np.ndarray, marks: list[Mark], style: Style, sx: float, sy: float) -> None:
    """Draw `marks` on the RGB `image` (H, W, 3) uint8 in place; mark coordinates are
    multiplied by (`sx`, `sy`) into the image's pixels."""
    for mark in marks:  # boxes first, skeletons over them, texts last (always legible)
        x, y, w, h = mark.bbox
        p, q = (round(x * sx), round(y * sy)), (round((x + w) * sx), round((y + h) * sy))
        color = _color(mark, style)
        if mark.kind in ("missed", "almost"):
            _dashed_rectangle(image, p, q, color, 2)
        else:
            cv2.rectangle(image, p, q, color, 2)
        if mark.keypoints and mark.category_id in style.joints:
            _skeleton(image, mark.keypoints, mark.category_id, style, sx, sy)
    for mark in marks:
        if mark.text:
            x, y, _, _ = mark.bbox
            _text(image, mark.text, round(x * sx), round(y * sy) - 2, _color(mark, style))


def _skeleton(image: np.ndarray, keypoints: tuple[float, ...], cid: int, style: Style, sx: float, sy: float) -> None:
    colors = style.joints[cid]
    points = np.asarray(keypoints, np.float64).reshape(-1, 3)[:len(colors)]
    visible = points[:, 2] > 0
    xy = [(round(px * sx), round(py * sy)) for px, py, _ in points]
    for a, b, color in style.limbs[cid]:
        if a < len(points) and b < len(points) and visible[a] and visible[b]:
            cv2.line(image, xy[a], xy[b], color, 2, cv2.LINE_AA)
    for j in np.flatnonzero(visible).tolist():
        cv2.circle(image, xy[j], 3, colors[j], -1, cv2.LINE_AA)
        cv2.circle(image, xy[j], 3, (0, 0, 0), 1, cv2.LINE_AA)


def placeholder(width: int, height: int, reason: str) -> np.ndarray:
    """A grey RGB thumbnail of a `width` x `height` image that states why it is missing."""
    tw, th = thumbnail_shape(width, height)
    image = np.full((th, tw, 3), 128, np.uint8)
    cv2.line(image, (0, 0), (tw - 1, th - 1), (160, 160, 160), 1)
    cv2.line(image, (0, th - 1), (tw - 1, 0), (160, 160, 160), 1)
    words, lines = reason.split(), ["unreadable:"]
    for word in words:  # wrap at about 40 characters
        if len(lines[-1]) + len(word) > 40:
            lines.append(word)
        else:
            lines[-1] += " " + word
    for i, line in enumerate(lines):
        _text(image, line, 4, 18 + 16 * i, (255, 255, 255))
    return image


def render(job: Job, style: Style) -> tuple[np.ndarray, str | None]:
    """(RGB thumbnail of `job`, None) or (placeholder, the reason it is unreadable)."""
    try:
        rgb = job.read() if job.read is not None else decode_file(job.source)
    except DecodeError as error:
        return placeholder(job.width, job.height, str(error)), str(error)
    height, width = rgb.shape[:2]
    tw, th = thumbnail_shape(width, height)
    # INTER_AREA averages when shrinking (no aliasing); enlarging wants INTER_LINEAR.
    interpolation = cv2.INTER_AREA if tw < width else cv2.INTER_LINEAR
    thumb = np.ascontiguousarray(cv2.resize(rgb, (tw, th), interpolation=interpolation))
    # The marks are in the labels' frame, which is the decoded image's unless the file
    # changed since labeling: scaling by the labels' size keeps them in place either way.
    draw_marks(thumb, job.marks, style, tw / max(job.width, 1), th / max(job.height, 1))
    return thumb, None


def write_thumbnail(job: Job, style: Style) -> str | None:
    """Render `job` into its target JPEG; the reason when the source was unreadable."""
    thumb, reason = render(job, style)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(thumb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # cannot happen for an (H, W, 3) uint8 array; a bug if it does
        raise RuntimeError(f"JPEG encoding failed for {job.target}")
    job.target.write_bytes(encoded.tobytes())
    return reason


def write_thumbnails(jobs: list[Job], style: Style, workers: int, progress: bool = True) -> dict[Path | str, str]:
    """Write every job's thumbnail with `workers` threads, a progress bar on stderr when
    `progress`; returns {source: reason} of the unreadable images."""
    failures: dict[Path | str, str] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda job: write_thumbnail(job, style), jobs)
        for job, reason in tqdm(zip(jobs, results), total=len(jobs), desc="thumbnails", unit="img",
                                disable=not progress, dynamic_ncols=True, leave=False):
            if reason is not None:
                failures[job.source] = reason
    return failures
