"""Detector inference over a chunk of images: batches through the backend, each view's
candidates mapped back through its inverse into original-image pixels.

The backend returns the graph's pre-NMS top-K per view (DESIGN.md, Detector graph); we
keep those above the score floor, so the merge sees only original-image coordinates,
clipped to the image (unless the card clips after the merge, as Ultralytics does). A
one-stage pose detector's keypoints come back the same way (mirrored joints swapped by
the card's flip pairs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.backends.base import ActiveModel
from engine.label.batches import make_batches
from engine.label.views import View


@dataclass
class Candidates:
    """One image's candidates from all its views: boxes `(N, 4)` float32 xyxy in
    original-image pixels, scores `(N,)` float32, labels `(N,)` int64 class indices; from
    a detector whose card declares keypoints, `keypoints` `(N, J, 3)` float32 x, y in
    original-image pixels and the joint's confidence (None otherwise)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    keypoints: np.ndarray | None = None


def detect_passes(views_per_image: list[list[View]], backend: ActiveModel, batch_size: int,
                  score_floor: float) -> list[list[Candidates]]:
    """Run every view of a chunk of images; per image, one `Candidates` per view (plan
    order), each above `score_floor` and in original-image pixels. `distill plan-transforms`
    keeps these per pass; labeling concatenates them (`detect_views`)."""
    parts: list[list[Candidates | None]] = [[None] * len(views) for views in views_per_image]
    card = backend.card
    clip = not card.clip_after_merge
    for batch in make_batches(views_per_image, batch_size if card.fixed_batch is None else card.fixed_batch):
        out = backend.infer({card.input_name: batch.pixels})
        boxes, scores, labels = out["boxes"], out["scores"], out["labels"]
        keypoints = out.get("keypoints") if card.has_keypoints else None
        for row, (i, v) in enumerate(batch.owners):
            keep = scores[row] > score_floor
            view = views_per_image[i][v]
            parts[i][v] = Candidates(view.boxes_to_source(boxes[row][keep], clip),
                                     scores[row][keep].astype(np.float32), labels[row][keep].astype(np.int64),
                                     None if keypoints is None else
                                     view.keypoints_to_source(keypoints[row][keep], card.flip_pairs, clip))
    return parts  # type: ignore[return-value]  (every slot is filled: each view is in one batch)


def concatenate_candidates(parts: list[Candidates]) -> Candidates:
    """One image's candidates of several passes, in the given order (at least one part)."""
    keypoints = None if parts[0].keypoints is None else np.concatenate([c.keypoints for c in parts])
    return Candidates(*(np.concatenate(column) for column in zip(*((c.boxes, c.scores, c.labels) for c in parts))),
                      keypoints)


def detect_views(views_per_image: list[list[View]], backend: ActiveModel, batch_size: int,
                 score_floor: float) -> list[Candidates]:
    """Run every view of a chunk of images; one `Candidates` per image, views concatenated
    in plan order (so the result does not depend on how views were batched)."""
    # Every image has at least one view (a plan has at least one pass).
    return [concatenate_candidates(parts)
            for parts in detect_passes(views_per_image, backend, batch_size, score_floor)]
