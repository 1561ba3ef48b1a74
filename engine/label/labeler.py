"""The per-chunk labeling function: decoded images in, records out.

`Labeler` holds the active teachers and the settings; its stage methods are what the
pipeline overlaps in threads (views, detect, merge, keypoints, record), and `label`
chains them for a chunk of images, so the single-box pipeline, the benchmark and a
scale-out worker all run the same code on the same arrays.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from engine.backends.base import Backend
from engine.label.detect import Candidates, detect_views
from engine.label.keypoints import Keypoints, estimate_keypoints
from engine.label.merge import Detections, MergeSettings, merge_candidates
from engine.label.records import make_record
from engine.label.views import TransformPlan, View, make_views


@dataclass(frozen=True)
class LabelSettings:
    """What decides a record (and so belongs in the manifest): the transform plan, the
    merge, keypoint flipping. `batch_size` does not change records."""

    plan: TransformPlan = field(default_factory=TransformPlan)
    merge: MergeSettings = field(default_factory=MergeSettings)
    keypoint_flip: bool = True
    batch_size: int = 8

    def to_dict(self) -> dict:
        return {"plan": self.plan.to_dict(), "merge": self.merge.to_dict(), "keypoint_flip": self.keypoint_flip}


class TakingTurns:
    """A backend that waits for `lock` around each `infer`: models sharing one device take
    turns instead of splitting it (see engine.label.run.inference_policy)."""

    def __init__(self, backend: Backend, lock: threading.Lock) -> None:
        self.backend = backend
        self.card = backend.card
        self.lock = lock

    def infer(self, feed):
        with self.lock:
            return self.backend.infer(feed)


class Labeler:
    """Active backends (the caller owns their lifecycle) plus settings.

    detector: a `detect` backend; keypoints: a `keypoints` backend or None; person_label:
    the detector's label index of the keypoint model's person category.
    """

    def __init__(self, detector: Backend, keypoints: Backend | None, person_label: int | None,
                 settings: LabelSettings) -> None:
        self.detector = detector
        self.keypoints = keypoints
        self.person_label = person_label
        self.settings = settings
        self.stride = detector.card.max_stride

    def views(self, image: np.ndarray) -> list[View]:
        return make_views(image, self.settings.plan, self.stride)

    def detect(self, views_per_image: list[list[View]]) -> list[Candidates]:
        return detect_views(views_per_image, self.detector, self.settings.batch_size,
                            self.settings.merge.score_floor)

    def merge(self, candidates: Candidates) -> Detections:
        return merge_candidates(candidates, self.settings.merge)

    def estimate_keypoints(self, images: list[np.ndarray], detections: list[Detections]) -> list[Keypoints | None]:
        if self.keypoints is None:
            return [None] * len(images)
        return estimate_keypoints(images, detections, self.keypoints, self.person_label,
                                  self.settings.keypoint_flip, self.settings.batch_size)

    def record(self, name: str, image: np.ndarray, detections: Detections, keypoints: Keypoints | None) -> dict:
        height, width = image.shape[:2]
        return make_record(name, height, width, detections, keypoints, self.detector.card)

    def label(self, names: list[str], images: list[np.ndarray]) -> list[dict]:
        """Records of a chunk of `(H, W, 3)` uint8 RGB images, in order."""
        candidates = self.detect([self.views(image) for image in images])
        detections = [self.merge(c) for c in candidates]
        keypoints = self.estimate_keypoints(images, detections)
        return [self.record(n, i, d, k) for n, i, d, k in zip(names, images, detections, keypoints)]
