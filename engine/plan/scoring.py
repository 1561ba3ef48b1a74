"""Any subset of the cached passes, ensembled and scored against the validation labels.

A subset's labels are made exactly as `distill label` makes them for a plan of those
passes: the passes' candidates concatenated in plan order, merged (NMS + box voting),
the keypoint stage on the merged people, records rounded as in the shards; then scored
as generated labels are (`engine.coco.evaluate.score_labels`: COCO box AP, keypoint AP).
Only the keypoint model runs again, on the crops of each subset's own person boxes, and
only when keypoint AP is asked for.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from engine.backends.base import Backend
from engine.coco.evaluate import score_labels
from engine.label.detect import Candidates, concatenate_candidates
from engine.label.keypoints import estimate_keypoints
from engine.label.merge import Detections, MergeSettings, merge_candidates
from engine.label.records import make_record
from engine.modelcard import ModelCard
from engine.plan.passes import PassCache
from engine.select.coco import select_labels

Subset = tuple[int, ...]
"""Indices into the cache's `plan.passes`, increasing."""


@dataclass(frozen=True)
class Score:
    box_AP: float
    keypoint_AP: float | None  # None: not measured (no keypoint model, or not asked)


@dataclass
class KeypointStage:
    """The active keypoint backend and how labeling runs it."""

    backend: Backend
    person_label: int
    flip: bool
    batch_size: int


class SubsetScorer:
    """Scores subsets of `cache`'s passes against `gt` (a pycocotools COCO of the same
    images); merges run in `workers` threads (the kernels release the GIL)."""

    def __init__(self, cache: PassCache, gt, detector_card: ModelCard, merge: MergeSettings,
                 keypoints: KeypointStage | None, workers: int) -> None:
        self.cache = cache
        self.gt = gt
        self.card = detector_card
        self.merge = merge
        self.keypoints = keypoints
        self.workers = max(1, workers)
        self.categories = [{"id": int(c["id"]), "name": c["name"]} for c in detector_card.categories]

    def cost(self, subset: Subset) -> float:
        """Pixels the detector processes for `subset`, relative to the full plan."""
        return float(self.cache.pixels[list(subset)].sum() / self.cache.pixels.sum())

    @property
    def identity_cost(self) -> float:
        return self.cache.identity_pixels / float(self.cache.pixels.sum())

    def detections(self, subset: Subset) -> list[Detections]:
        """Each image's merged detections from the passes in `subset`."""
        parts = [[image[p] for p in sorted(subset)] for image in self.cache.candidates]
        return self._merge([concatenate_candidates(p) for p in parts])

    def records(self, detections: list[Detections], with_keypoints: bool) -> list[dict]:
        """The shard records labeling would write for these detections."""
        cache = self.cache
        keypoints = [None] * len(detections)
        if with_keypoints and self.keypoints is not None:
            stage = self.keypoints
            keypoints = estimate_keypoints(cache.images, detections, stage.backend, stage.person_label,
                                           stage.flip, stage.batch_size)
        return [make_record(name, image.shape[0], image.shape[1], dets, kps, self.card)
                for name, image, dets, kps in zip(cache.names, cache.images, detections, keypoints)]

    def score(self, subset: Subset, with_keypoints: bool = False) -> Score:
        return self._score(self.detections(subset), with_keypoints)

    def score_identity(self, with_keypoints: bool = False) -> Score:
        return self._score(self._merge(self.cache.identity), with_keypoints)

    def _merge(self, candidates: list[Candidates]) -> list[Detections]:
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(lambda c: merge_candidates(c, self.merge), candidates))

    def _score(self, detections: list[Detections], with_keypoints: bool) -> Score:
        with_keypoints = with_keypoints and self.keypoints is not None
        records = self.records(detections, with_keypoints)
        # Every prediction above the floor, as a labeling run's shards hold them: AP ranks
        # by score, so no threshold is applied here.
        labels = select_labels(records, self.categories, {c["id"]: 0.0 for c in self.categories}, 0.0, {})
        metrics = score_labels(self.gt, labels)
        return Score(metrics["box_AP"], metrics["keypoint_AP"] if with_keypoints else None)
