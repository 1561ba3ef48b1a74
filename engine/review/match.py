"""Generated labels against ground truth: which labels are right (IoU >= 0.5 with a GT
box of their category), which are false, which GT boxes were missed, and per category
precision and recall.

Matching is greedy by score, per image and category, as COCO's evaluation matches at a
single IoU threshold: labels in decreasing score (stable for equal scores) each take
the unmatched non-crowd GT box of highest IoU, if that IoU is >= 0.5. A label left
unmatched that lies in a crowd region (its intersection with the region covers >= 0.5
of the label's area) is ignored, neither right nor false, and crowd regions are never
missed: COCO treats them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.coco.geometry import box_area, box_intersection, box_iou, xywh_to_xyxy

IOU = 0.5
TRUE, FALSE, IGNORED = 1, 0, -1


def _coverage(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`(N, M)` share of each xyxy box of `a` covered by each box of `b`."""
    inter = box_intersection(a, b)
    area_a = box_area(a)[:, None]
    return np.divide(inter, area_a, out=np.zeros_like(inter), where=area_a > 0)


def match_boxes(boxes: np.ndarray, scores: np.ndarray, gt: np.ndarray, crowd: np.ndarray,
                iou: float = IOU) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of one image and category (see the module docstring).

    boxes: `(N, 4)` xywh labels; scores: `(N,)` their scores; gt: `(M, 4)` xywh GT boxes;
    crowd: `(M,)` bool, True for crowd regions.
    Returns (`(N,)` int8 state per label: TRUE, FALSE or IGNORED; `(M,)` bool, True for
    a non-crowd GT box that a label matched). The inputs are not modified.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    gt = np.asarray(gt, np.float64).reshape(-1, 4)
    crowd = np.asarray(crowd, bool).reshape(-1)
    state = np.full(len(boxes), FALSE, np.int8)
    matched = np.zeros(len(gt), bool)
    if len(boxes) == 0 or len(gt) == 0:
        return state, matched
    corners, gt_corners = xywh_to_xyxy(boxes), xywh_to_xyxy(gt)
    overlaps = box_iou(corners, gt_corners)
    covered = _coverage(corners, gt_corners)
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        candidates = np.where(~crowd & ~matched, overlaps[i], -1.0)
        best = int(np.argmax(candidates))
        if candidates[best] >= iou:
            state[i], matched[best] = TRUE, True
        elif np.any(crowd & (covered[i] >= iou)):
            state[i] = IGNORED
    return state, matched


@dataclass
class Counts:
    """Per category: labels right (`true`), labels false, non-crowd GT boxes (`gt`)."""

    true: int = 0
    false: int = 0
    gt: int = 0

    @property
    def precision(self) -> float | None:
        """Right labels / labels counted (ignored ones are not), None without labels."""
        return self.true / (self.true + self.false) if self.true + self.false else None

    @property
    def recall(self) -> float | None:
        """Right labels / non-crowd GT boxes, None without GT boxes."""
        return self.true / self.gt if self.gt else None


@dataclass
class ImageMatch:
    """One image: the state of each of its labels (same order) and its missed GT boxes."""

    states: list[int]
    missed: list[dict[str, Any]]


def match_labels(labels: dict[int, list[dict[str, Any]]], gt: dict[int, list[dict[str, Any]]],
                 categories: list[int]) -> tuple[dict[int, Counts], dict[int, ImageMatch]]:
    """Match every image that has ground truth (`gt`: {image id: GT annotations}) with its
    `labels` ({image id: label annotations}), category by category.

    Returns ({category id: Counts} for every id in `categories`, {image id: ImageMatch}).
    A label without a score counts as score 1 (file order decides among them).
    """
    counts = {cid: Counts() for cid in categories}
    images: dict[int, ImageMatch] = {}
    for image_id, truth in gt.items():
        mine = labels.get(image_id, [])
        states = [FALSE] * len(mine)
        missed: list[dict[str, Any]] = []
        for cid in {a["category_id"] for a in mine} | {a["category_id"] for a in truth}:
            rows = [i for i, a in enumerate(mine) if a["category_id"] == cid]
            targets = [a for a in truth if a["category_id"] == cid]
            crowd = [bool(a.get("iscrowd", 0)) for a in targets]
            state, hit = match_boxes(np.array([mine[i]["bbox"] for i in rows]),
                                     np.array([mine[i].get("score", 1.0) for i in rows]),
                                     np.array([a["bbox"] for a in targets]), np.array(crowd))
            for i, s in zip(rows, state.tolist()):
                states[i] = s
            missed += [a for a, h, c in zip(targets, hit.tolist(), crowd) if not h and not c]
            tally = counts.setdefault(cid, Counts())
            tally.true += int(np.sum(state == TRUE))
            tally.false += int(np.sum(state == FALSE))
            tally.gt += crowd.count(False)
        images[image_id] = ImageMatch(states, missed)
    return counts, images
