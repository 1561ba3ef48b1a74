"""Views: an image at every scale of the transform plan, each also mirrored, each
carrying the inverse of its transform.

A view's padded shape depends on the view alone (its resized size rounded up to a
multiple of the detector's largest stride), never on the other views of its batch, so a
record does not depend on the batch size, the worker count or where a resumed run
restarted, and the shapes fall into few buckets (one per scale and aspect) that a
TensorRT optimization profile can cover.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engine.scaling import round_up, scaled_size

# The paper's plan: shorter side 400..1200 px in steps of 100, each also flipped.
DEFAULT_SCALES: tuple[int, ...] = tuple(range(400, 1201, 100))
DEFAULT_MAX_SIZE = 2000


Pass = tuple[int, bool]
"""One detector pass: (shorter side in px, mirrored)."""


@dataclass(frozen=True)
class TransformPlan:
    """Which views every image gets: `passes` (shorter side in px, mirrored), any subset of
    a grid of scales x {original, mirror} (`distill plan-transforms` chooses such subsets);
    `max_size` caps the longer side (DESIGN.md, Conventions).

    Passes are kept in one canonical order, by scale with the original before its mirror,
    so that a record does not depend on how a plan was written down and an image's
    original and mirrored views land in the same batch.
    """

    passes: tuple[Pass, ...] = tuple((s, f) for s in DEFAULT_SCALES for f in (False, True))
    max_size: int = DEFAULT_MAX_SIZE

    def __post_init__(self) -> None:
        passes = tuple(sorted((int(s), bool(f)) for s, f in self.passes))
        if not passes:
            raise ValueError("a transform plan needs at least one pass")
        if len(set(passes)) != len(passes):
            raise ValueError(f"a pass is repeated in {list(passes)}")
        if any(s <= 0 for s, _ in passes) or self.max_size <= 0:
            raise ValueError(f"sizes must be positive: passes {list(passes)}, max_size {self.max_size}")
        object.__setattr__(self, "passes", passes)

    @classmethod
    def grid(cls, scales: tuple[int, ...], flip: bool = True, max_size: int = DEFAULT_MAX_SIZE) -> "TransformPlan":
        """Every scale, each also mirrored when `flip` (the paper's plan is the default)."""
        return cls(tuple((s, f) for s in scales for f in ((False, True) if flip else (False,))), max_size)

    @property
    def scales(self) -> tuple[int, ...]:
        return tuple(sorted({s for s, _ in self.passes}))

    @property
    def mirrored_pairs(self) -> bool:
        """Whether some scale has both its original and its mirrored pass."""
        return len(self.scales) < len(self.passes)

    def is_grid(self) -> tuple[bool, bool]:
        """(whether the plan is a full grid, whether that grid is mirrored)."""
        for flip in (False, True):
            if self.passes == TransformPlan.grid(self.scales, flip, self.max_size).passes:
                return True, flip
        return False, False

    def to_dict(self) -> dict:
        """A grid as {"scales", "flip", "max_size"} (the form manifests have always had),
        any other subset as {"passes": [[scale, mirrored], ...], "max_size"}."""
        grid, flip = self.is_grid()
        if grid:
            return {"scales": list(self.scales), "flip": flip, "max_size": self.max_size}
        return {"passes": [[s, f] for s, f in self.passes], "max_size": self.max_size}

    @classmethod
    def from_dict(cls, data: dict) -> "TransformPlan":
        """The inverse of `to_dict` (ValueError, KeyError or TypeError on a malformed dict)."""
        max_size = int(data.get("max_size", DEFAULT_MAX_SIZE))
        if "passes" in data:
            passes = []
            for item in data["passes"]:
                scale, mirrored = item
                if not isinstance(mirrored, bool) or isinstance(scale, bool) or int(scale) != scale:
                    raise ValueError(f"a pass is [shorter side, mirrored], got {item!r}")
                passes.append((int(scale), mirrored))
            return cls(tuple(passes), max_size)
        return cls.grid(tuple(int(s) for s in data["scales"]), bool(data["flip"]), max_size)


def parse_scales(text: str) -> tuple[int, ...]:
    """`"400,500,600"` or `"400:1200:100"` (FIRST:LAST:STEP, LAST included) -> sizes in px;
    ValueError for anything else."""
    try:
        if ":" in text:
            start, stop, step = (int(v) for v in text.split(":"))
            if step <= 0:
                raise ValueError
            scales = tuple(range(start, stop + 1, step))
        else:
            scales = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{text!r}: expected a list like 400,500,600 or a range like 400:1200:100") from None
    if not scales or any(s <= 0 for s in scales):
        raise ValueError(f"{text!r}: needs at least one positive size")
    if len(set(scales)) != len(scales):
        raise ValueError(f"{text!r}: a size is repeated")
    return scales


def format_scales(scales: tuple[int, ...]) -> str:
    """The text `parse_scales` reads back: FIRST:LAST:STEP for an evenly spaced run of three
    or more sizes, else a comma list."""
    steps = {b - a for a, b in zip(scales, scales[1:])}
    if len(scales) >= 3 and len(steps) == 1 and steps.pop() > 0:
        return f"{scales[0]}:{scales[-1]}:{scales[1] - scales[0]}"
    return ",".join(str(s) for s in scales)


@dataclass
class View:
    """One transform of one image, ready for the detector.

    pixels: `(3, Hp, Wp)` uint8 RGB, the resized (and, when `flipped`, mirrored) image in
    the top-left corner, zeros elsewhere. `size`: (h, w) of the resized image in px;
    `source_size`: (H, W) of the original.
    """

    pixels: np.ndarray
    size: tuple[int, int]
    source_size: tuple[int, int]
    scale: int
    flipped: bool

    @property
    def padded_shape(self) -> tuple[int, int]:
        return self.pixels.shape[1], self.pixels.shape[2]

    def boxes_to_source(self, boxes: np.ndarray) -> np.ndarray:
        """The inverse transform: `(N, 4)` xyxy in view pixels -> `(N, 4)` float32 xyxy in
        original-image pixels, clipped to the image. Per-axis ratios of the actual sizes,
        since the resized size was rounded (engine.scaling)."""
        h, w = self.size
        source_h, source_w = self.source_size
        out = np.asarray(boxes, dtype=np.float32).copy()
        if self.flipped:  # mirror of width w maps x to w - x, so x1 and x2 swap roles
            out[:, [0, 2]] = w - out[:, [2, 0]]
        out[:, [0, 2]] *= source_w / w
        out[:, [1, 3]] *= source_h / h
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, source_w)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, source_h)
        return out


def make_views(image: np.ndarray, plan: TransformPlan, stride: int) -> list[View]:
    """Every view of `image` `(H, W, 3)` uint8 RGB, in `plan.passes` order; padded sizes
    are multiples of `stride` (the detector's largest)."""
    height, width = image.shape[:2]
    views = []
    for scale, flipped in plan.passes:
        h, w = scaled_size(height, width, scale, plan.max_size)
        if not flipped or not views or views[-1].scale != scale:
            # cv2.resize wants (w, h); the mirrored view reuses the same resized pixels.
            resized = image if (h, w) == (height, width) else cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        source = resized[:, ::-1] if flipped else resized
        pixels = np.zeros((3, round_up(h, stride), round_up(w, stride)), dtype=np.uint8)
        pixels[:, :h, :w] = source.transpose(2, 0, 1)
        views.append(View(pixels, (h, w), (height, width), scale, flipped))
    return views
