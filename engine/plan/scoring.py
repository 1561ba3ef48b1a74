"""Any subset of the cached passes, ensembled and scored against the validation labels.

A subset's labels are made exactly as `distill label` makes them for a plan of those
passes: the passes' candidates concatenated in plan order, merged (NMS + box voting),
the keypoint stage on the merged people, records rounded as in the shards; then scored
as generated labels are (`engine.coco.evaluate.score_labels`: COCO box AP, keypoint AP).
Only the keypoint model runs again, on the crops of each subset's own person boxes, and
only when keypoint AP is asked for; a one-stage pose detector's keypoints (used where
there is no keypoint model, as in labeling) come out of the merge and cost nothing more.

Partial ground truth (only some objects labeled, as in a set where people without
keypoints were left out): a prediction whose box overlaps no labeled object of its
category by IoU >= `PARTIAL_IOU` is left out of the scoring rather than counted false,
since it may be an unlabeled object. Duplicates of a labeled object still overlap it and
still count false; a labeled object nobody found still counts missed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from engine.backends.base import Backend
from engine.coco.evaluate import score_labels
from engine.label.detect import Candidates, concatenate_candidates
from engine.label.keypoints import estimate_keypoints, one_stage_keypoints
from engine.label.merge import Detections, MergeSettings, merge_candidates
from engine.label.records import make_record
from engine.modelcard import ModelCard
from engine.plan.passes import PassCache
from engine.select.coco import select_labels

Subset = tuple[int, ...]
"""Indices into the cache's `plan.passes`, increasing."""

PARTIAL_IOU = 0.5
"""With partial ground truth, the box IoU with a labeled object a prediction needs to be
scored (COCO's own box-matching threshold)."""


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
    images); merges run in `workers` threads (the kernels release the GIL).

    keypoints: the top-down keypoint stage, or None; one_stage_person: without one, the
    label index whose detections carry a one-stage pose detector's keypoints (None: the
    detector has none); partial: `gt` labels only some objects (module docstring)."""

    def __init__(self, cache: PassCache, gt, detector_card: ModelCard, merge: MergeSettings,
                 keypoints: KeypointStage | None, workers: int, one_stage_person: int | None = None,
                 partial: bool = False) -> None:
        self.cache = cache
        self.gt = gt
        self.card = detector_card
        self.merge = merge
        self.keypoints = keypoints
        self.one_stage_person = one_stage_person
        self.partial = partial
        self.workers = max(1, workers)
        self.categories = [{"id": int(c["id"]), "name": c["name"]} for c in detector_card.categories]

    @property
    def has_keypoints(self) -> bool:
        """Whether the labels carry keypoints (a keypoint model, or a one-stage pose detector)."""
        return self.keypoints is not None or self.one_stage_person is not None

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
        elif with_keypoints:  # a one-stage pose detector's own (or none): as labeling does
            keypoints = [one_stage_keypoints(d, self.one_stage_person) for d in detections]
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
        with_keypoints = with_keypoints and self.has_keypoints
        return self.score_records(self.records(detections, with_keypoints), with_keypoints)

    def score_records(self, records: list[dict], with_keypoints: bool) -> Score:
        """Box AP (and keypoint AP when `with_keypoints`) of records as a labeling run writes them."""
        # Every prediction above the floor, as a labeling run's shards hold them: AP ranks
        # by score, so no threshold is applied here.
        labels = select_labels(records, self.categories, {c["id"]: 0.0 for c in self.categories}, 0.0, {})
        if self.partial:
            labels = near_labeled_objects(labels, self.gt)
        metrics = score_labels(self.gt, labels)
        return Score(metrics["box_AP"], metrics["keypoint_AP"] if with_keypoints else None)


def near_labeled_objects(labels: dict, gt) -> dict:
    """`labels` (a COCO dict matched to `gt` by file name) without the annotations whose
    box overlaps no object of their category labeled in `gt` by IoU >= PARTIAL_IOU."""
    from pycocotools import mask

    ids = {image["file_name"]: image["id"] for image in gt.dataset["images"]}
    names = {image["id"]: image["file_name"] for image in labels["images"]}
    kept = []
    for annotation in labels["annotations"]:
        image_id = ids.get(names[annotation["image_id"]])
        labeled = [] if image_id is None else gt.loadAnns(
            gt.getAnnIds(imgIds=[image_id], catIds=[annotation["category_id"]]))
        if labeled:
            boxes = np.asarray([a["bbox"] for a in labeled], np.float64)
            overlap = mask.iou(np.asarray([annotation["bbox"]], np.float64), boxes, [0] * len(labeled))
            if np.max(overlap) >= PARTIAL_IOU:
                kept.append(annotation)
    return {**labels, "annotations": kept}
