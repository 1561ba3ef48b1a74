"""Non-person categories (real COCO ids whose look fits a few primitives) and distractors.

Every maker draws an object whose longer side is about `size` px, centred on `center`
(continuous xy px). Distractors are generic shapes that are never annotated: they give the
detector hard negatives and, drawn over a person, occlude joints.
"""

from __future__ import annotations

import math

import numpy as np

from engine.synth.draw import Circle, Color, Drawing, Ellipse, Polygon, Polyline, Segment, mix, shade

# COCO category ids and names of the objects we draw (person is id 1, see engine.coco.schema).
OBJECT_CATEGORIES: dict[int, tuple[str, str]] = {
    13: ("stop sign", "outdoor"),
    37: ("sports ball", "sports"),
    38: ("kite", "sports"),
    72: ("tv", "electronic"),
}


def _rotate(points: np.ndarray, angle_deg: float) -> np.ndarray:
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return points @ rot.T


def _jitter(rng: np.random.Generator, color: Color, amount: float = 15) -> Color:
    return tuple(int(np.clip(c + rng.normal(0, amount), 0, 255)) for c in color)  # type: ignore


def sports_ball(center, size: float, rng: np.random.Generator) -> Drawing:
    c = np.asarray(center, dtype=np.float64)
    r = size / 2
    kind = int(rng.integers(3))
    if kind == 0:  # football: white with dark patches
        d = Drawing([Circle(tuple(c), r, _jitter(rng, (235, 235, 235), 8))])
        d.add(Circle(tuple(c), 0.28 * r, (30, 30, 30)))
        for k in range(5):
            a = 2 * math.pi * k / 5 + rng.uniform(0, 1)
            d.add(Circle(tuple(c + 0.75 * r * np.array([math.cos(a), math.sin(a)])), 0.2 * r, (30, 30, 30)))
    elif kind == 1:  # basketball: orange with dark seams
        d = Drawing([Circle(tuple(c), r, _jitter(rng, (40, 110, 220), 10))])
        t = max(r * 0.08, 1)
        d.add(Segment(tuple(c - [r * 0.95, 0]), tuple(c + [r * 0.95, 0]), t, (30, 40, 60)))
        d.add(Segment(tuple(c - [0, r * 0.95]), tuple(c + [0, r * 0.95]), t, (30, 40, 60)))
    else:  # tennis ball: yellow-green with a white curve
        d = Drawing([Circle(tuple(c), r, _jitter(rng, (60, 230, 200), 10))])
        s = np.linspace(-1, 1, 12)
        curve = c + r * np.stack([0.8 * s, 0.35 * np.cos(s * math.pi)], axis=1)
        d.add(Polyline(curve, max(r * 0.1, 1), (240, 245, 245)))
    # A highlight so that the ball reads as a sphere.
    d.add(Circle(tuple(c + [-0.35 * r, -0.35 * r]), 0.18 * r, (250, 250, 250)))
    return d


def stop_sign(center, size: float, rng: np.random.Generator) -> Drawing:
    c = np.asarray(center, dtype=np.float64)
    r = size / 2
    angles = np.pi / 8 + np.arange(8) * np.pi / 4
    octagon = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    # A slight horizontal squeeze stands for a sign seen at an angle.
    squeeze = np.array([rng.uniform(0.75, 1.0), 1.0])
    tilt = rng.uniform(-10, 10)
    outer = c + _rotate(octagon * squeeze * r, tilt)
    inner = c + _rotate(octagon * squeeze * r * 0.86, tilt)
    red = _jitter(rng, (30, 30, 200), 10)
    bar = c + _rotate(np.array([[-0.6, -0.14], [0.6, -0.14], [0.6, 0.14], [-0.6, 0.14]])
                      * squeeze * r, tilt)
    return Drawing([Polygon(outer, (240, 240, 240)), Polygon(inner, red),
                    Polygon(bar, (245, 245, 245))])


def kite(center, size: float, rng: np.random.Generator) -> Drawing:
    c = np.asarray(center, dtype=np.float64)
    h = size * 0.75  # the tail takes the rest of the longer side
    w = h * rng.uniform(0.55, 0.8)
    angle = rng.uniform(-30, 30)
    top, right, bottom, left = (np.array(p) for p in
                                ([0, -0.5 * h], [0.5 * w, -0.15 * h], [0, 0.5 * h], [-0.5 * w, -0.15 * h]))
    shift = np.array([0, -0.12 * size])
    pts = {k: c + _rotate((v + shift)[None], angle)[0]
           for k, v in dict(top=top, right=right, bottom=bottom, left=left).items()}
    col_a, col_b = (_jitter(rng, tuple(int(v) for v in rng.uniform(30, 250, 3)), 0) for _ in range(2))
    d = Drawing([Polygon(np.array([pts["top"], pts["right"], pts["bottom"]]), col_a),
                 Polygon(np.array([pts["top"], pts["left"], pts["bottom"]]), col_b)])
    spar = max(size * 0.02, 1)
    d.add(Segment(tuple(pts["top"]), tuple(pts["bottom"]), spar, shade(col_a, 0.5)))
    d.add(Segment(tuple(pts["left"]), tuple(pts["right"]), spar, shade(col_b, 0.5)))
    s = np.linspace(0, 1, 10)
    tail = np.stack([0.06 * size * np.sin(s * 3 * math.pi + rng.uniform(0, 6)), s * 0.3 * size], axis=1)
    tail = pts["bottom"] + _rotate(tail, angle)
    d.add(Polyline(tail, max(size * 0.015, 1), (40, 40, 40)))
    for k in (3, 6, 9):
        d.add(Circle(tuple(tail[k]), max(size * 0.025, 0.8), col_a))
    return d


def tv(center, size: float, rng: np.random.Generator) -> Drawing:
    c = np.asarray(center, dtype=np.float64)
    w = size
    h = w * (9 / 16 if rng.random() < 0.6 else 3 / 4)
    frame = _jitter(rng, (35, 35, 35), 10)

    def rect(x0, y0, x1, y1):
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64) + c

    d = Drawing([Polygon(rect(-0.15 * w, 0.38 * h, 0.15 * w, 0.56 * h), shade(frame, 0.8)),
                 Polygon(rect(-0.5 * w, -0.5 * h, 0.5 * w, 0.45 * h), frame)])
    m = 0.06 * w
    screen_a = tuple(int(v) for v in rng.uniform(60, 255, 3))
    screen_b = tuple(int(v) for v in rng.uniform(60, 255, 3))
    bars = 4
    x0, x1 = -0.5 * w + m, 0.5 * w - m
    for k in range(bars):
        xa, xb = x0 + (x1 - x0) * k / bars, x0 + (x1 - x0) * (k + 1) / bars
        d.add(Polygon(rect(xa, -0.5 * h + m, xb, 0.45 * h - m), mix(screen_a, screen_b, k / (bars - 1))))
    return d


OBJECT_MAKERS = {13: stop_sign, 37: sports_ball, 38: kite, 72: tv}


def make_object(category_id: int, center, size: float, rng: np.random.Generator) -> Drawing:
    """Draw one annotated non-person object of COCO `category_id`."""
    return OBJECT_MAKERS[category_id](center, size, rng)


def make_distractor(center, size: float, rng: np.random.Generator,
                    palette: tuple[Color, ...]) -> Drawing:
    """A generic unannotated shape: polygon, elongated ellipse, stroke, ring or bar."""
    c = np.asarray(center, dtype=np.float64)
    color = _jitter(rng, palette[int(rng.integers(len(palette)))], 20)
    kind = int(rng.integers(5))
    r = size / 2
    if kind == 0:
        n = int(rng.integers(3, 7))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = r * rng.uniform(0.5, 1.0, n)
        return Drawing([Polygon(c + np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1), color)])
    if kind == 1:
        return Drawing([Ellipse(tuple(c), (r, r * rng.uniform(0.2, 0.6)), rng.uniform(0, 180), color)])
    if kind == 2:
        a = rng.uniform(0, math.pi)
        off = r * np.array([math.cos(a), math.sin(a)])
        return Drawing([Segment(tuple(c - off), tuple(c + off), max(r * rng.uniform(0.08, 0.3), 1), color)])
    if kind == 3:
        t = np.linspace(0, 2 * math.pi, 24)
        ring = c + r * np.stack([np.cos(t), np.sin(t) * rng.uniform(0.5, 1.0)], 1)
        return Drawing([Polyline(ring, max(r * 0.15, 1), color)])
    w, h = r, r * rng.uniform(0.3, 1.0)
    box = _rotate(np.array([[-w, -h], [w, -h], [w, h], [-w, h]]), rng.uniform(0, 180)) + c
    return Drawing([Polygon(box, color)])
