"""Drawing primitives shared by figures, shapes and distractors, and their renderer.

A `Drawing` is a list of primitives in continuous image coordinates (pixel (row i,
col j) has centre (j + 0.5, i + 0.5)). Rendering the same list twice, once in colour
into the image and once in a single value into a mask, gives each object an exact
silhouette for its box, its visible area and the occlusion test of its keypoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

# cv2 draws with `SHIFT` fractional bits, so sub-pixel positions survive on tiny objects.
SHIFT = 4
_SCALE = float(1 << SHIFT)

Color = tuple[int, int, int]


def _fixed(points: np.ndarray) -> np.ndarray:
    """(..., 2) float continuous xy -> int32 cv2 fixed point (cv2 puts pixel centres on
    integers, our convention puts them on half-integers)."""
    return np.round((np.asarray(points, dtype=np.float64) - 0.5) * _SCALE).astype(np.int32)


@dataclass
class Circle:
    center: tuple[float, float]
    radius: float
    color: Color


@dataclass
class Segment:
    """A thick line with round caps, `thickness` in pixels (at least 1)."""

    p0: tuple[float, float]
    p1: tuple[float, float]
    thickness: float
    color: Color


@dataclass
class Polygon:
    """A filled polygon, `points` (N, 2) float xy."""

    points: np.ndarray
    color: Color


@dataclass
class Ellipse:
    center: tuple[float, float]
    axes: tuple[float, float]  # half-lengths in pixels
    angle_deg: float
    color: Color


@dataclass
class Polyline:
    """An open polyline of `thickness` pixels, `points` (N, 2) float xy."""

    points: np.ndarray
    thickness: float
    color: Color


Primitive = Circle | Segment | Polygon | Ellipse | Polyline


@dataclass
class Drawing:
    """One object's primitives, painted in order (later ones on top)."""

    items: list[Primitive] = field(default_factory=list)

    def add(self, primitive: Primitive) -> None:
        self.items.append(primitive)

    def extend(self, other: "Drawing") -> None:
        self.items.extend(other.items)


def _paint(canvas: np.ndarray, item: Primitive, color, line_type: int) -> None:
    if isinstance(item, Circle):
        center = tuple(int(v) for v in _fixed(item.center))
        radius = max(int(round(item.radius * _SCALE)), 1)
        cv2.circle(canvas, center, radius, color, -1, line_type, SHIFT)
    elif isinstance(item, Segment):
        p0 = tuple(int(v) for v in _fixed(item.p0))
        p1 = tuple(int(v) for v in _fixed(item.p1))
        thickness = max(int(round(item.thickness)), 1)
        cv2.line(canvas, p0, p1, color, thickness, line_type, SHIFT)
    elif isinstance(item, Polygon):
        cv2.fillPoly(canvas, [_fixed(item.points).reshape(-1, 1, 2)], color, line_type, SHIFT)
    elif isinstance(item, Ellipse):
        center = tuple(int(v) for v in _fixed(item.center))
        axes = tuple(max(int(round(a * _SCALE)), 1) for a in item.axes)
        cv2.ellipse(canvas, center, axes, float(item.angle_deg), 0.0, 360.0, color, -1,
                    line_type, SHIFT)
    elif isinstance(item, Polyline):
        thickness = max(int(round(item.thickness)), 1)
        cv2.polylines(canvas, [_fixed(item.points).reshape(-1, 1, 2)], False, color,
                      thickness, line_type, SHIFT)
    else:  # pragma: no cover - the union above is closed
        raise TypeError(f"unknown primitive {type(item).__name__}")


def render(drawing: Drawing, image: np.ndarray, mask: np.ndarray | None = None,
           antialias: bool = True) -> None:
    """Paint `drawing` into `image` (H, W, 3) uint8 BGR, and 255 into `mask` (H, W) uint8.

    The mask is drawn without anti-aliasing so that it is a crisp silhouette.
    """
    line_type = cv2.LINE_AA if antialias else cv2.LINE_8
    for item in drawing.items:
        color = tuple(int(c) for c in item.color)
        _paint(image, item, color, line_type)
        if mask is not None:
            _paint(mask, item, 255, cv2.LINE_8)


def shade(color: Color, factor: float) -> Color:
    """`color` scaled by `factor` (>1 brightens), clipped to uint8."""
    return tuple(int(np.clip(c * factor, 0, 255)) for c in color)  # type: ignore[return-value]


def mix(color_a: Color, color_b: Color, t: float) -> Color:
    """Linear blend: t=0 gives `color_a`, t=1 gives `color_b`."""
    return tuple(int(round(a + (b - a) * t)) for a, b in zip(color_a, color_b))  # type: ignore
