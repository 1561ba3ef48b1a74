"""Textured backgrounds: everyday textures and, for `--shift`, sports venues.

Each maker takes (height, width, rng) and returns an (H, W, 3) uint8 BGR image. They are
vectorised numpy / cv2 so that a 512 px background costs a few milliseconds.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

Maker = Callable[[int, int, np.random.Generator], np.ndarray]


def _color(rng: np.random.Generator, low: int = 20, high: int = 235) -> np.ndarray:
    return rng.uniform(low, high, size=3)


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (H, W) float32 x and y."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return xs + 0.5, ys + 0.5


def _blend(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-pixel mix of colours a, b (3,) by t (H, W) in [0, 1] -> (H, W, 3) float32."""
    t = t[..., None].astype(np.float32)
    return (a[None, None, :] * (1 - t) + b[None, None, :] * t).astype(np.float32)


def _finish(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0, 255).astype(np.uint8)


def gradient(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    xs, ys = _grid(height, width)
    angle = rng.uniform(0, 2 * np.pi)
    proj = xs * np.cos(angle) + ys * np.sin(angle)
    t = (proj - proj.min()) / (np.ptp(proj) + 1e-6)
    return _finish(_blend(_color(rng), _color(rng), t))


def value_noise(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random colour field: a coarse random grid upsampled bicubically, plus grain."""
    cells = int(rng.integers(3, 14))
    coarse = rng.uniform(30, 225, size=(cells, cells, 3)).astype(np.float32)
    # Pull the colours towards a common tint so the field reads as one surface.
    tint = _color(rng, 40, 215).astype(np.float32)
    coarse = 0.5 * coarse + 0.5 * tint
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0, rng.uniform(2, 10), size=(height, width, 1)).astype(np.float32)
    return _finish(image)


def stripes(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    xs, ys = _grid(height, width)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(8, 70)
    phase = (xs * np.cos(angle) + ys * np.sin(angle)) / period
    wave = np.sin(2 * np.pi * phase)
    t = (wave > 0).astype(np.float32) if rng.random() < 0.5 else 0.5 + 0.5 * wave
    return _finish(_blend(_color(rng), _color(rng), t))


def blobs(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    image = np.empty((height, width, 3), np.float32)
    image[:] = _color(rng)
    for _ in range(int(rng.integers(6, 25))):
        center = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        axes = (int(rng.uniform(5, width / 3)), int(rng.uniform(5, height / 3)))
        cv2.ellipse(image, center, axes, float(rng.uniform(0, 180)), 0, 360,
                    tuple(float(c) for c in _color(rng)), -1)
    sigma = rng.uniform(2, 12)
    return _finish(cv2.GaussianBlur(image, (0, 0), sigma))


def tiles(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    xs, ys = _grid(height, width)
    size = rng.uniform(12, 60)
    t = ((np.floor(xs / size) + np.floor(ys / size)) % 2).astype(np.float32)
    base = _blend(_color(rng), _color(rng), t * rng.uniform(0.3, 1.0))
    grout = ((xs % size) < 1.5) | ((ys % size) < 1.5)
    base[grout] = _color(rng, 40, 200)
    return _finish(base)


# --- sports venues (the shifted distribution) -------------------------------------------

def _lines(image: np.ndarray, rng: np.random.Generator, color, count: int) -> None:
    height, width = image.shape[:2]
    thickness = max(1, int(rng.integers(1, 4)))
    for _ in range(count):
        if rng.random() < 0.5:
            x = int(rng.uniform(0, width))
            cv2.line(image, (x, 0), (x + int(rng.normal(0, width / 6)), height), color, thickness)
        else:
            y = int(rng.uniform(0, height))
            cv2.line(image, (0, y), (width, y + int(rng.normal(0, height / 6))), color, thickness)


def pitch(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Mowed grass: alternating green bands, white lines and a centre circle arc."""
    xs, ys = _grid(height, width)
    band = rng.uniform(25, 80)
    angle = rng.uniform(-0.4, 0.4)
    t = (np.floor((xs * np.cos(angle) + ys * np.sin(angle)) / band) % 2).astype(np.float32)
    green = np.array([40, rng.uniform(120, 170), 40])
    image = _blend(green, green * rng.uniform(0.75, 0.9), t)
    image += rng.normal(0, 6, size=(height, width, 1)).astype(np.float32)
    _lines(image, rng, (235, 235, 235), int(rng.integers(1, 4)))
    if rng.random() < 0.5:
        cv2.circle(image, (int(rng.uniform(0, width)), int(rng.uniform(0, height))),
                   int(rng.uniform(40, 200)), (235, 235, 235), 2)
    return _finish(image)


def court(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Wooden floor: planks of varying tone with painted lines."""
    xs, ys = _grid(height, width)
    plank = rng.uniform(6, 18)
    wood = np.array([rng.uniform(60, 110), rng.uniform(120, 160), rng.uniform(180, 225)])
    row = np.floor(ys / plank) if rng.random() < 0.5 else np.floor(xs / plank)
    tone = 0.85 + 0.15 * np.sin(row * 12.9898) ** 2
    image = wood[None, None, :] * tone[..., None].astype(np.float32)
    _lines(image, rng, tuple(float(c) for c in rng.choice([[255, 255, 255], [40, 40, 200],
                                                            [30, 30, 30]])), int(rng.integers(1, 4)))
    return _finish(image)


def track(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Red-brown running track with white lane lines."""
    image = np.empty((height, width, 3), np.float32)
    image[:] = (rng.uniform(40, 70), rng.uniform(50, 80), rng.uniform(150, 190))
    image += rng.normal(0, 8, size=(height, width, 1)).astype(np.float32)
    lane = rng.uniform(30, 80)
    slope = rng.uniform(-0.3, 0.3)
    for k in range(-3, int(height / lane) + 4):
        y0 = k * lane
        cv2.line(image, (0, int(y0)), (width, int(y0 + slope * width)), (240, 240, 240), 2)
    return _finish(image)


def arena(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Dark hall lit by a few coloured spotlights."""
    xs, ys = _grid(height, width)
    image = np.empty((height, width, 3), np.float32)
    image[:] = rng.uniform(10, 40, size=3)
    for _ in range(int(rng.integers(2, 5))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(0.2, 0.6) * max(height, width)
        light = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * radius ** 2))
        image += light[..., None] * rng.uniform(60, 200, size=3).astype(np.float32)
    return _finish(image)


BACKGROUNDS: dict[str, Maker] = {
    "gradient": gradient, "value_noise": value_noise, "stripes": stripes, "blobs": blobs,
    "tiles": tiles, "pitch": pitch, "court": court, "track": track, "arena": arena,
}


def make_background(height: int, width: int, rng: np.random.Generator,
                    weights: dict[str, float]) -> tuple[np.ndarray, str]:
    """A background drawn from the kinds in `weights`; returns (image, kind)."""
    names = sorted(weights)
    probs = np.array([weights[n] for n in names], dtype=np.float64)
    kind = names[int(rng.choice(len(names), p=probs / probs.sum()))]
    return BACKGROUNDS[kind](height, width, rng), kind
