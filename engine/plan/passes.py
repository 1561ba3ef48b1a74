"""Every pass of the full plan, run once over the validation images and kept.

For each image: the candidates of every detector pass of the plan (above the score
floor, in original-image pixels: exactly what labeling would concatenate and merge), and
of one extra pass at the image's own size, unmirrored (the identity transform, the
baseline that test-time augmentation must beat). For each pass: its cost, the padded
pixels the detector processes for it, summed over the images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from engine.backends.base import Backend
from engine.label.batches import chunk_images
from engine.label.decode import DecodeError, decode_file
from engine.label.detect import Candidates, detect_passes
from engine.label.views import Padding, TransformPlan, View, make_views


@dataclass
class PassCache:
    """The full plan's raw outputs on the validation images.

    names: file names (relative to the image folder) of the decoded images; images: their
    `(H, W, 3)` uint8 RGB pixels (the keypoint stage crops them); candidates[i][p]: image
    i's candidates from `plan.passes[p]`; identity[i]: from its native-size pass; pixels:
    `(P,)` int64 padded pixels per pass over all images; identity_pixels: the same for
    the identity pass; failures: (name, reason) of images that could not be decoded.
    """

    plan: TransformPlan
    names: list[str]
    images: list[np.ndarray]
    candidates: list[list[Candidates]]
    identity: list[Candidates]
    pixels: np.ndarray
    identity_pixels: int
    failures: list[tuple[str, str]]


def identity_view(image: np.ndarray, max_size: int, padding: Padding) -> View:
    """The image at its own size (shorter side = its own, capped by `max_size`), unmirrored."""
    height, width = image.shape[:2]
    return make_views(image, TransformPlan(((min(height, width), False),), max_size), padding)[0]


def run_passes(files: list[tuple[str, Path]], detector: Backend, plan: TransformPlan, batch_size: int,
               score_floor: float, max_pixels: int, progress: bool = True) -> PassCache:
    """Decode `files` ((name, path) pairs) and run every pass of `plan` plus the identity
    through the active `detector`; unreadable images are left out and listed."""
    names, images, failures = [], [], []
    for name, path in files:
        try:
            images.append(decode_file(path, max_pixels))
            names.append(name)
        except DecodeError as error:
            failures.append((name, str(error)))
    padding = Padding.of(detector.card)
    count = len(plan.passes)
    candidates: list[list[Candidates]] = []
    identity: list[Candidates] = []
    pixels = np.zeros(count, np.int64)
    identity_pixels = 0
    chunk = chunk_images(batch_size, plan)
    with tqdm(total=len(images), desc="passes", unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(images), chunk):
            views = []
            for image in images[start:start + chunk]:
                image_views = make_views(image, plan, padding) + [identity_view(image, plan.max_size, padding)]
                pixels += [v.padded_shape[0] * v.padded_shape[1] for v in image_views[:count]]
                identity_pixels += int(np.prod(image_views[-1].padded_shape))
                views.append(image_views)
            for parts in detect_passes(views, detector, batch_size, score_floor):
                candidates.append(parts[:count])
                identity.append(parts[count])
            bar.update(len(views))
    return PassCache(plan, names, images, candidates, identity, pixels, identity_pixels, failures)
