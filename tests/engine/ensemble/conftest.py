"""Plain NumPy references shared by the ensemble kernels' tests: box IoU, NMS and
soft-NMS, written for clarity, not speed."""

from __future__ import annotations

import numpy as np


def ref_areas(boxes):
    return np.maximum(boxes[:, 2] - boxes[:, 0], 0.0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0.0)


def ref_iou(box, boxes):
    """IoU of one float64 box (4,) with float64 boxes (M, 4); 0 where the union is 0."""
    iw = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    ih = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    union = ref_areas(box[None])[0] + ref_areas(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def ref_nms(boxes, scores, threshold):
    boxes, scores = boxes.astype(np.float64), scores.astype(np.float64)
    remaining = np.argsort(-scores, kind="stable")
    keep = []
    while remaining.size:
        i = remaining[0]
        keep.append(i)
        rest = remaining[1:]
        remaining = rest[ref_iou(boxes[i], boxes[rest]) <= threshold]
    return np.array(keep, dtype=np.int64)


def ref_soft_nms(boxes, scores, threshold, sigma, method, score_threshold):
    boxes = boxes.astype(np.float64)
    current = scores.astype(np.float64).copy()
    alive = current >= score_threshold
    keep, kept_scores = [], []
    while alive.any():
        candidates = np.flatnonzero(alive)
        best = candidates[np.argmax(current[candidates])]  # first maximum: lowest index
        keep.append(best)
        kept_scores.append(current[best])
        alive[best] = False
        rest = np.flatnonzero(alive)
        ious = ref_iou(boxes[best], boxes[rest])
        if method == "linear":
            weights = np.where(ious > threshold, 1.0 - ious, 1.0)
        else:
            weights = np.exp(-(ious * ious) / sigma)
        current[rest] *= weights
        alive[rest] = current[rest] >= score_threshold
    return np.array(keep, dtype=np.int64), np.array(kept_scores)
