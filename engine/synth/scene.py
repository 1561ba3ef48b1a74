"""One synthetic image: layout, painting in depth order, and its COCO annotations.

Every object is painted twice, in colour into the image and as a silhouette into its own
mask; an id map records which object owns each pixel after all painting. From those:
the box is the tight box of the object's full silhouette clipped to the image (amodal:
occluded parts count), `area` is the pixel count of the visible part (COCO's
segmentation area), `segmentation` is the visible part as compressed RLE, and a joint is
v=1 when something painted later covers its pixel (or it is behind the head), v=0 with
x=y=0 outside the frame, v=2 otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from engine.coco.schema import NUM_KEYPOINTS, PERSON_CATEGORY_ID
from engine.synth.backgrounds import make_background
from engine.synth.config import SynthConfig
from engine.synth.draw import Drawing, render
from engine.synth.figures import Figure, build_figure, figure_extent
from engine.synth.poses import sample_pose
from engine.synth.shapes import make_distractor, make_object
from engine.synth.styles import Style, sample_outfit, team_kits


@dataclass
class _Item:
    drawing: Drawing
    z: float
    category_id: int | None = None  # None: an unannotated distractor
    figure: Figure | None = None
    crowd: bool = False


@dataclass
class Scene:
    """`image` (H, W, 3) uint8 BGR; `annotations` COCO dicts without ids; `background` kind."""

    image: np.ndarray
    annotations: list[dict] = field(default_factory=list)
    background: str = ""


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    high = max(high, low)
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float]:
    """(IoU, intersection over the smaller area) of two xyxy boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0, 0.0
    inter = iw * ih
    area_a, area_b = (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter), inter / min(area_a, area_b)


class _Layout:
    """Places boxes in a W x H frame, keeping annotated boxes apart (`max_overlap_iou`)."""

    def __init__(self, width: int, height: int, config: SynthConfig, rng: np.random.Generator):
        self.width, self.height, self.config, self.rng = width, height, config, rng
        self.boxes: list[tuple[float, float, float, float]] = []

    def place(self, extent: tuple[float, float, float, float]) -> tuple[float, float] | None:
        """Anchor (x, y) such that `extent` (relative x1, y1, x2, y2) lands in the frame
        (or, with `truncation_prob`, straddles its border); None when no spot is free."""
        x1, y1, x2, y2 = extent
        w, h = x2 - x1, y2 - y1
        for _ in range(self.config.placement_tries):
            if self.rng.random() < self.config.truncation_prob:
                # Box centre anywhere in the frame: up to half the object may be cut off.
                cx, cy = self.rng.uniform(0, self.width), self.rng.uniform(0, self.height)
                left, top = cx - w / 2, cy - h / 2
            else:
                left = self.rng.uniform(0, max(self.width - w, 0))
                top = self.rng.uniform(0, max(self.height - h, 0))
            box = (left, top, left + w, top + h)
            if all(self._fits(box, other) for other in self.boxes):
                self.boxes.append(box)
                return left - x1, top - y1
        return None

    def _fits(self, box, other) -> bool:
        iou, cover = _overlap(box, other)
        return iou <= self.config.max_overlap_iou and cover <= self.config.max_overlap_cover


def _add_person(items: list[_Item], layout: _Layout, rng, config: SynthConfig, style: Style,
                kits, height_px: float) -> None:
    pose = sample_pose(rng, style.poses, config.max_yaw_deg, config.max_roll_deg)
    anchor = layout.place(figure_extent(pose, height_px))
    if anchor is None:
        return
    figure = build_figure(pose, sample_outfit(rng, style, kits), height_px, anchor)
    z = float(rng.uniform(0, 1))
    items.append(_Item(figure.drawing, z, PERSON_CATEGORY_ID, figure))
    if rng.random() < config.occlusion_prob:
        # An occluder centred near one body joint, drawn right on top of this person.
        joint = figure.keypoints[int(rng.integers(5, NUM_KEYPOINTS))]
        size = height_px * rng.uniform(*config.occluder_frac_range)
        center = joint + rng.normal(0, 0.1 * size, 2)
        items.append(_Item(make_distractor(center, size, rng, style.clutter), z + 1e-6))


def _add_crowd(items: list[_Item], layout: _Layout, rng, config: SynthConfig, style: Style, kits) -> None:
    count = int(rng.integers(config.crowd_size_range[0], config.crowd_size_range[1] + 1))
    height_px = rng.uniform(12, 24)
    extent = (0.0, 0.0, count * 0.45 * height_px + height_px, 1.6 * height_px)
    anchor = layout.place(extent)
    if anchor is None:
        return
    drawing = Drawing()
    for k in range(count):
        pose = sample_pose(rng, style.poses, config.max_yaw_deg, config.max_roll_deg)
        origin = (anchor[0] + 0.5 * height_px + k * 0.45 * height_px + rng.normal(0, 2),
                  anchor[1] + 0.55 * height_px + rng.uniform(0, 0.5 * height_px))
        drawing.extend(build_figure(pose, sample_outfit(rng, style, kits), height_px, origin).drawing)
    items.append(_Item(drawing, float(rng.uniform(0, 1)), PERSON_CATEGORY_ID, crowd=True))


def _sample_size(rng: np.random.Generator, config: SynthConfig) -> tuple[int, int]:
    long_side = int(rng.integers(config.long_side_range[0], config.long_side_range[1] + 1))
    aspect = _log_uniform(rng, *config.aspect_range)  # width / height
    if aspect >= 1:
        return long_side, max(int(round(long_side / aspect)), 32)
    return max(int(round(long_side * aspect)), 32), long_side


def compose_scene(rng: np.random.Generator, config: SynthConfig, style: Style) -> Scene:
    """Draw one image and annotate it; all randomness comes from `rng`."""
    width, height = _sample_size(rng, config)
    image, background = make_background(height, width, rng, style.backgrounds)
    layout = _Layout(width, height, config, rng)
    kits = team_kits(rng, style) if style.team_kits else None
    items: list[_Item] = []

    n_persons = 0 if rng.random() < config.no_person_prob else int(
        rng.integers(max(config.persons_range[0], 1), config.persons_range[1] + 1))
    for _ in range(n_persons):
        top = max(config.max_person_frac * height, config.min_person_px)
        _add_person(items, layout, rng, config, style, kits, _log_uniform(rng, config.min_person_px, top))
    if rng.random() < config.crowd_prob:
        _add_crowd(items, layout, rng, config, style, kits)

    cats = sorted(style.categories)
    probs = np.array([style.categories[c] for c in cats], dtype=np.float64)
    short = min(width, height)
    for _ in range(int(rng.integers(config.objects_range[0], config.objects_range[1] + 1))):
        cat = cats[int(rng.choice(len(cats), p=probs / probs.sum()))]
        size = _log_uniform(rng, config.min_object_px, config.max_object_frac * short)
        anchor = layout.place((-size / 2, -size / 2, size / 2, size / 2))
        if anchor is not None:
            items.append(_Item(make_object(cat, anchor, size, rng), float(rng.uniform(0, 1)), cat))

    for _ in range(int(rng.integers(config.distractors_range[0], config.distractors_range[1] + 1))):
        size = short * rng.uniform(*config.distractor_frac_range)
        center = (rng.uniform(0, width), rng.uniform(0, height))
        # Most clutter lies beneath the objects, like things on the ground or a wall.
        z = float(rng.uniform(-1, 0) if rng.random() < 0.75 else rng.uniform(0, 1))
        items.append(_Item(make_distractor(center, size, rng, style.clutter), z))

    scene = Scene(image=image, background=background)
    scene.annotations = _paint_and_annotate(image, items, config.min_visible_frac)
    _photometric(image, rng, config)
    return scene


def _paint_and_annotate(image: np.ndarray, items: list[_Item], min_visible_frac: float = 0.0) -> list[dict]:
    """Paint `items` into `image` (H, W, 3) uint8 in z order; COCO dicts of the annotated."""
    height, width = image.shape[:2]
    order = sorted(range(len(items)), key=lambda i: items[i].z)
    owner = np.zeros((height, width), np.uint16)  # 1 + paint rank of the top object
    masks: dict[int, np.ndarray] = {}
    for rank, index in enumerate(order, start=1):
        mask = np.zeros((height, width), np.uint8)
        render(items[index].drawing, image, mask)
        owner[mask > 0] = rank
        if items[index].category_id is not None:
            masks[rank] = mask
    annotations = []
    for rank, index in enumerate(order, start=1):
        if rank in masks:
            ann = _annotate(items[index], masks[rank], owner, rank, min_visible_frac)
            if ann is not None:
                annotations.append(ann)
    return annotations


def _annotate(item: _Item, full: np.ndarray, owner: np.ndarray, rank: int,
              min_visible_frac: float) -> dict | None:
    height, width = owner.shape
    rows, cols = np.any(full, axis=1), np.any(full, axis=0)
    visible = owner == rank
    area = int(visible.sum())
    if not rows.any() or area == 0 or area < min_visible_frac * np.count_nonzero(full):
        return None  # outside the frame, or (almost) entirely covered: nothing to label
    y1, y2 = np.flatnonzero(rows)[[0, -1]]
    x1, x2 = np.flatnonzero(cols)[[0, -1]]
    rle = mask_utils.encode(np.asfortranarray(visible.astype(np.uint8)))
    ann = {
        "category_id": int(item.category_id),
        "bbox": [float(x1), float(y1), float(x2 + 1 - x1), float(y2 + 1 - y1)],
        "area": float(area),
        "iscrowd": int(item.crowd),
        "segmentation": {"size": [int(height), int(width)], "counts": rle["counts"].decode("ascii")},
    }
    if item.category_id == PERSON_CATEGORY_ID:
        keypoints = [0.0] * (3 * NUM_KEYPOINTS)
        if item.figure is not None:
            for j, (x, y) in enumerate(item.figure.keypoints):
                x, y = round(float(x), 2), round(float(y), 2)
                if not (0 <= x < width and 0 <= y < height):
                    continue  # out of frame: COCO writes 0, 0, 0
                covered = owner[int(y), int(x)] > rank or item.figure.hidden[j]
                keypoints[3 * j:3 * j + 3] = [x, y, 1 if covered else 2]
        ann["keypoints"] = keypoints
        ann["num_keypoints"] = sum(1 for v in keypoints[2::3] if v > 0)
    return ann


def _photometric(image: np.ndarray, rng: np.random.Generator, config: SynthConfig) -> None:
    """In place: contrast/brightness jitter, Gaussian noise, optional blur."""
    work = image.astype(np.float32) * rng.uniform(0.85, 1.15) + rng.uniform(-15, 15)
    std = rng.uniform(*config.noise_std_range)
    if std > 0:
        work += rng.normal(0, std, size=work.shape).astype(np.float32)
    if rng.random() < config.blur_prob:
        work = cv2.GaussianBlur(work, (0, 0), rng.uniform(*config.blur_sigma_range))
    image[:] = np.clip(work, 0, 255).astype(np.uint8)
