"""The per-chunk labeling contract: decoded images in, records out, in five stages.

`Labeler` holds the active teachers and the settings. Its stage methods, in the order an
image goes through them (views, detect, merge, estimate_keypoints, record), are the whole
of what turns arrays into records: the single-box pipeline (engine.label.pipeline) runs
them overlapped in threads, a scale-out actor (engine.scale.actor) runs that pipeline per
shard, and the benchmark (benchmarks/throughput.py) times the same views and models. A
record depends only on its image, the teachers and the settings, never on how the stages
were scheduled (tests/engine/label/test_labeler.py chains them by hand and compares).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from engine.backends.base import ActiveModel
from engine.label.detect import Candidates, detect_passes, detect_views
from engine.label.escalation import Escalation
from engine.label.keypoints import Keypoints, estimate_keypoints, one_stage_keypoints
from engine.label.merge import Detections, MergeSettings, merge_candidates
from engine.label.records import make_record
from engine.label.views import Padding, TransformPlan, View, make_views


@dataclass(frozen=True)
class LabelSettings:
    """What decides a record (and so belongs in the manifest): the transform plan, the
    merge, keypoint flipping; for a staged plan, its `escalation` (engine.label.escalation:
    the first stage's passes, a subset of `plan.passes`, and the rule; None: every image
    gets every pass)."""

    plan: TransformPlan = field(default_factory=TransformPlan)
    merge: MergeSettings = field(default_factory=MergeSettings)
    keypoint_flip: bool = True
    escalation: Escalation | None = None

    def __post_init__(self) -> None:
        if self.escalation is not None and not set(self.escalation.first) < set(self.plan.passes):
            raise ValueError(f"the first stage's passes {list(self.escalation.first)} must be some, not all, "
                             f"of the plan's {list(self.plan.passes)}")

    @property
    def second_stage(self) -> tuple:
        """The passes only escalated images get (empty for a plan without stages)."""
        if self.escalation is None:
            return ()
        return tuple(p for p in self.plan.passes if p not in self.escalation.first)

    def to_dict(self) -> dict:
        data = {"plan": self.plan.to_dict(), "merge": self.merge.to_dict(), "keypoint_flip": self.keypoint_flip}
        if self.escalation is not None:  # only then: a fixed plan's settings read as they always did
            data["escalation"] = self.escalation.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "LabelSettings":
        """The inverse of `to_dict` (KeyError, TypeError or ValueError on a malformed dict)."""
        escalation = Escalation.from_dict(data["escalation"]) if data.get("escalation") is not None else None
        return cls(TransformPlan.from_dict(data["plan"]), MergeSettings(**data["merge"]), bool(data["keypoint_flip"]),
                   escalation)


class TakingTurns:
    """An `ActiveModel` that waits for `lock` around each `infer` of `backend`: models
    sharing one device take turns instead of splitting it (see
    engine.label.run.inference_policy). The caller owns `backend`'s lifecycle."""

    def __init__(self, backend: ActiveModel, lock: threading.Lock) -> None:
        self.backend = backend
        self.card = backend.card
        self.lock = lock

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self.lock:
            return self.backend.infer(feed)


class Labeler:
    """Active models (the caller owns their lifecycle) plus settings.

    detector: a `detect` model; keypoints: a `keypoints` model or None; person_label:
    the detector's label index of the keypoint model's person category; batch_size: views
    (or crops) per model call, which changes no record.
    """

    def __init__(self, detector: ActiveModel, keypoints: ActiveModel | None, person_label: int | None,
                 settings: LabelSettings, batch_size: int) -> None:
        self.detector = detector
        self.keypoints = keypoints
        self.person_label = person_label
        self.settings = settings
        self.batch_size = batch_size
        self.padding = Padding.of(detector.card)
        self._stage_plans: dict[tuple, TransformPlan] = {}  # a staged plan's stages, by their passes

    def views(self, image: np.ndarray, passes: tuple | None = None) -> list[View]:
        """1. Every view of one `(H, W, 3)` uint8 RGB image, in plan order; `passes`: only
        those passes of the plan (a stage of a staged plan)."""
        if passes is None:
            return make_views(image, self.settings.plan, self.padding)
        plan = self._stage_plans.get(passes)
        if plan is None:  # built once per stage, not once per image
            plan = self._stage_plans[passes] = TransformPlan(passes, self.settings.plan.max_size)
        return make_views(image, plan, self.padding)

    def detect(self, views_per_image: list[list[View]]) -> list[Candidates]:
        """2. The detector over the views of a chunk of images, batched together; one
        `Candidates` per image, in original-image pixels."""
        return detect_views(views_per_image, self.detector, self.batch_size,
                            self.settings.merge.score_floor)

    def detect_passes(self, views_per_image: list[list[View]]) -> list[list[Candidates]]:
        """2, pass by pass: as `detect`, but one `Candidates` per view (in the order of
        each image's views), for a pipeline that keeps or stages them."""
        return detect_passes(views_per_image, self.detector, self.batch_size, self.settings.merge.score_floor)

    def merge(self, candidates: Candidates) -> Detections:
        """3. One image's candidates ensembled (NMS + box voting)."""
        return merge_candidates(candidates, self.settings.merge)

    def estimate_keypoints(self, images: list[np.ndarray], detections: list[Detections]) -> list[Keypoints | None]:
        """4. Keypoints of the person detections of a chunk of images: the keypoint
        model's; without one, a one-stage pose detector's own (engine.label.merge), else
        None each."""
        if self.keypoints is None:
            return [one_stage_keypoints(d, self.person_label) for d in detections]
        return estimate_keypoints(images, detections, self.keypoints, self.person_label,
                                  self.settings.keypoint_flip, self.batch_size)

    def record(self, name: str, image: np.ndarray, detections: Detections, keypoints: Keypoints | None,
               escalated: bool | None = None) -> dict:
        """5. The shard record of one image; `escalated`: whether a staged plan gave it the
        second stage (None: the plan has no stages)."""
        height, width = image.shape[:2]
        return make_record(name, height, width, detections, keypoints, self.detector.card, escalated)
