"""Views: an image at every scale of the transform plan, each also mirrored, each
carrying the inverse of its transform.

A view's padded shape depends on the view alone (its resized size rounded up to a
multiple of the detector's largest stride), never on the other views of its batch, so a
record does not depend on the batch size, the worker count or where a resumed run
restarted, and the shapes fall into few buckets (one per scale and aspect) that a
TensorRT optimization profile can cover. A detector from elsewhere may want its views
padded otherwise (to another multiple, with grey, centred, or into one fixed size): its
card says so and `Padding.of` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engine.ensemble.heatmaps import pair_permutation
from engine.modelcard import ModelCard
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


@dataclass(frozen=True)
class Padding:
    """How a detector's views are padded: each side rounded up to a multiple of `multiple`
    px, or every view padded to the one `size` (H, W) the graph takes; the padding is grey
    level `value`; the resized image sits in the top-left corner, or in the middle when
    `center` (the smaller half of the padding above and left, as Ultralytics' letterbox)."""

    multiple: int = 1
    value: int = 0
    center: bool = False
    size: tuple[int, int] | None = None

    @classmethod
    def of(cls, card: ModelCard) -> "Padding":
        """The padding a detector's card asks for (our own exports: multiples of the largest
        stride, zeros, top-left)."""
        size = tuple(card.fixed_input) if card.fixed_input is not None else None
        return cls(card.view_multiple, card.pad_value, card.pad_position == "center", size)

    def padded_shape(self, h: int, w: int) -> tuple[int, int]:
        """(Hp, Wp) of a view whose resized image is (h, w) px."""
        if self.size is None:
            return round_up(h, self.multiple), round_up(w, self.multiple)
        if h > self.size[0] or w > self.size[1]:
            # engine.label.profiles refuses such plans before a run starts.
            raise ValueError(f"a {h}x{w} view does not fit the detector's fixed {self.size[0]}x{self.size[1]} input")
        return self.size

    def offset(self, h: int, w: int, padded: tuple[int, int]) -> tuple[int, int]:
        """(top, left) px of the resized image inside the padded view."""
        return ((padded[0] - h) // 2, (padded[1] - w) // 2) if self.center else (0, 0)


@dataclass
class View:
    """One transform of one image, ready for the detector.

    pixels: `(3, Hp, Wp)` uint8 RGB, the resized (and, when `flipped`, mirrored) image at
    `offset` (top, left) px, padding elsewhere (`Padding`). `size`: (h, w) of the resized
    image in px; `source_size`: (H, W) of the original.
    """

    pixels: np.ndarray
    size: tuple[int, int]
    source_size: tuple[int, int]
    scale: int
    flipped: bool
    offset: tuple[int, int] = (0, 0)

    @property
    def padded_shape(self) -> tuple[int, int]:
        return self.pixels.shape[1], self.pixels.shape[2]

    def boxes_to_source(self, boxes: np.ndarray, clip: bool = True) -> np.ndarray:
        """The inverse transform: `(N, 4)` xyxy in view pixels -> `(N, 4)` float32 xyxy in
        original-image pixels, clipped to the image unless `clip` is False. Per-axis
        ratios of the actual sizes, since the resized size was rounded (engine.scaling)."""
        h, w = self.size
        source_h, source_w = self.source_size
        out = np.asarray(boxes, dtype=np.float32).copy()
        top, left = self.offset
        if top or left:
            out[:, [0, 2]] -= left
            out[:, [1, 3]] -= top
        if self.flipped:  # mirror of width w maps x to w - x, so x1 and x2 swap roles
            out[:, [0, 2]] = w - out[:, [2, 0]]
        out[:, [0, 2]] *= source_w / w
        out[:, [1, 3]] *= source_h / h
        if clip:
            out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, source_w)
            out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, source_h)
        return out

    def keypoints_to_source(self, keypoints: np.ndarray, flip_pairs: list[list[int]], clip: bool = True) -> np.ndarray:
        """The inverse transform of a one-stage pose detector's keypoints: `(N, J, 3)` x, y
        in view pixels and a confidence -> `(N, J, 3)` float32 in original-image pixels,
        clipped to the image unless `clip` is False, confidences unchanged. A mirrored view's joints come back
        with each (left, right) pair of `flip_pairs` (0-based) swapped, so that joint j
        is the same body part in every pass."""
        h, w = self.size
        source_h, source_w = self.source_size
        out = np.asarray(keypoints, dtype=np.float32).copy()
        top, left = self.offset
        out[..., 0] -= left
        out[..., 1] -= top
        if self.flipped:
            out[..., 0] = w - out[..., 0]
            out = out[:, pair_permutation(flip_pairs, out.shape[1])]
        out[..., 0] *= source_w / w
        out[..., 1] *= source_h / h
        if clip:
            out[..., 0] = np.clip(out[..., 0], 0, source_w)
            out[..., 1] = np.clip(out[..., 1], 0, source_h)
        return out


def make_views(image: np.ndarray, plan: TransformPlan, padding: Padding) -> list[View]:
    """Every view of `image` `(H, W, 3)` uint8 RGB, in `plan.passes` order, padded as
    `padding` says (for our own detectors: to multiples of the largest stride)."""
    height, width = image.shape[:2]
    views = []
    for scale, flipped in plan.passes:
        h, w = scaled_size(height, width, scale, plan.max_size)
        if not flipped or not views or views[-1].scale != scale:
            # cv2.resize wants (w, h); the mirrored view reuses the same resized pixels.
            resized = image if (h, w) == (height, width) else cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        source = resized[:, ::-1] if flipped else resized
        padded = padding.padded_shape(h, w)
        top, left = padding.offset(h, w, padded)
        # np.zeros takes zeroed pages from the OS; only a grey padding needs a fill pass.
        pixels = (np.zeros((3, *padded), np.uint8) if padding.value == 0
                  else np.full((3, *padded), padding.value, np.uint8))
        pixels[:, top:top + h, left:left + w] = source.transpose(2, 0, 1)
        views.append(View(pixels, (h, w), (height, width), scale, flipped, (top, left)))
    return views
