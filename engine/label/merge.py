"""Merge: one image's candidates from every view into its detections (NMS + box voting,
engine.ensemble.ensemble_detections). Runs in worker threads: the kernels release the GIL.

A one-stage pose detector's candidates carry keypoints: each kept detection's joints are
the votes of the candidates that voted for its box (weighted by box score x joint
confidence; engine.ensemble.ensemble_pose_detections); without voting, the kept
candidate's own keypoints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from engine.ensemble import SCORING_METHODS, ensemble_detections, ensemble_pose_detections
from engine.label.detect import Candidates


@dataclass(frozen=True)
class MergeSettings:
    """Ensembling parameters (DESIGN.md, Conventions). `vote_threshold` None: plain NMS.
    Detectron's test-time augmentation uses NMS 0.5, voting at 0.8 with `id` scoring."""

    nms_threshold: float = 0.5
    vote_threshold: float | None = 0.8
    scoring: str = "id"
    score_floor: float = 0.05
    max_detections: int = 100

    def __post_init__(self) -> None:
        if self.scoring not in SCORING_METHODS:
            raise ValueError(f"unknown scoring {self.scoring!r}: choose from {', '.join(SCORING_METHODS)}")
        for name, value in (("nms_threshold", self.nms_threshold), ("vote_threshold", self.vote_threshold)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not 0.0 <= self.score_floor < 1.0:
            raise ValueError(f"score_floor must be in [0, 1), got {self.score_floor}")
        if self.max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {self.max_detections}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Detections:
    """boxes `(K, 4)` float32 xyxy in original-image pixels, scores `(K,)` float32,
    labels `(K,)` int64 class indices of the detector's card, best first; keypoints
    `(K, J, 3)` float32 (x, y in original-image pixels, confidence in [0, 1]) of a
    one-stage pose detector, voted across the passes, or None."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    keypoints: np.ndarray | None = None


def merge_candidates(candidates: Candidates, settings: MergeSettings) -> Detections:
    options = dict(nms_threshold=settings.nms_threshold, vote_threshold=settings.vote_threshold,
                   scoring=settings.scoring, score_floor=settings.score_floor,
                   max_detections=settings.max_detections)
    if candidates.keypoints is None:
        boxes, scores, labels = ensemble_detections(candidates.boxes, candidates.scores, candidates.labels, **options)
        return Detections(boxes, scores, labels.astype(np.int64, copy=False))
    # A one-stage pose detector: the keypoints ride along, voted by the same voters as
    # their box (engine/ensemble/keypoint_voting.py); boxes are those of
    # ensemble_detections, bit for bit.
    boxes, scores, labels, keypoints = ensemble_pose_detections(
        candidates.boxes, candidates.scores, candidates.labels, candidates.keypoints, **options)
    return Detections(boxes, scores, labels.astype(np.int64, copy=False), keypoints.astype(np.float32, copy=False))
