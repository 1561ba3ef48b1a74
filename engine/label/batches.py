"""Batches: views of the same padded shape stacked for one backend call.

Views are grouped by padded shape in the order they arrive (an image's original and
mirrored views are adjacent, so they share a batch), then cut into batches of at most
`batch_size`. Batch-mates never change a view's pixels: padding was fixed per view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.label.views import TransformPlan, View


@dataclass
class Batch:
    """`pixels`: `(B, 3, Hp, Wp)` uint8 (a host array, or a device tensor); `owners[b]` = (image index in the chunk, view
    index in that image's views) of row b."""

    pixels: np.ndarray
    owners: list[tuple[int, int]]


def chunk_images(batch_size: int, plan: TransformPlan) -> int:
    """How many images to batch together. Different images rarely share a view's padded
    shape unless they share a size; an image's original and mirrored views always do. A
    chunk of batch_size / 2 images (with mirrors) fills batches when the dump's images
    share sizes, as photos often do."""
    return max(1, batch_size // (2 if plan.mirrored_pairs else 1))


def make_batches(views_per_image: list[list[View]], batch_size: int,
                 stack: Callable[[list], Any] = np.stack) -> list[Batch]:
    """Batches of at most `batch_size` same-shape views over a chunk of images. `stack`
    joins a batch's pixels: `np.stack` for host views, `torch.stack` for views made on the
    device (engine.label.device_views), whose batches stay there."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for i, views in enumerate(views_per_image):
        for v, view in enumerate(views):
            groups.setdefault(view.padded_shape, []).append((i, v))
    batches = []
    for owners in groups.values():
        for start in range(0, len(owners), batch_size):
            chunk = owners[start:start + batch_size]
            pixels = stack([views_per_image[i][v].pixels for i, v in chunk])
            batches.append(Batch(pixels, chunk))
    return batches
