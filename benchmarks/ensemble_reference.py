"""Slow-but-plain references that benchmarks/ensemble.py times our kernels against.

Two references for the box merge (same semantics as engine.ensemble, continuous IoU):
- `numpy_ensemble`: vectorised NumPy, a Python loop over classes and, inside NMS, over
  kept boxes (the classic "py_cpu_nms" shape); voting is one masked matrix product;
- `detectron_loop_ensemble`: the same NMS with a Python loop per kept box for voting, the
  way Detectron's `box_voting` is written.
`numpy_pose_ensemble` is `numpy_ensemble` with a one-stage pose detector's keypoints voted
along (engine.ensemble.keypoint_voting's rule) by masked matrix products.
And one for keypoint heatmaps, `opencv_average_argmax`: NumPy flips and channel swaps,
`cv2.warpAffine` (bilinear, zero border) for the scaled transforms, NumPy argmax with the
quarter-pixel refinement.
"""

from __future__ import annotations

import cv2
import numpy as np


def _iou_one(box, boxes, areas_of_boxes):
    iw = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    ih = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area = max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)
    union = area + areas_of_boxes - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _areas(boxes):
    return np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)


def _iou_matrix(a, b):
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    union = _areas(a)[:, None] + _areas(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _nms(boxes, scores, threshold):
    areas = _areas(boxes)
    remaining = np.argsort(-scores, kind="stable")
    keep = []
    while remaining.size:
        i = remaining[0]
        keep.append(i)
        rest = remaining[1:]
        remaining = rest[_iou_one(boxes[i], boxes[rest], areas[rest]) <= threshold]
    return np.array(keep, dtype=np.int64)


def _limit(parts, max_detections):
    if not parts:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
    boxes, scores, labels = (np.concatenate(p) for p in zip(*parts))
    order = np.argsort(-scores, kind="stable")[:max_detections]
    return boxes[order], scores[order], labels[order]


def numpy_ensemble(boxes, scores, labels, nms_threshold=0.5, vote_threshold=0.8,
                   score_floor=0.05, max_detections=100):
    """Per-class NMS + box voting (`id` scoring), vectorised NumPy."""
    boxes, scores = boxes.astype(np.float64), scores.astype(np.float64)
    above = scores > score_floor
    parts = []
    for c in np.unique(labels[above]):
        rows = np.flatnonzero(above & (labels == c))
        class_boxes, class_scores = boxes[rows], scores[rows]
        keep = _nms(class_boxes, class_scores, nms_threshold)
        votes = (_iou_matrix(class_boxes[keep], class_boxes) >= vote_threshold) * class_scores
        voted = votes @ class_boxes / votes.sum(axis=1, keepdims=True)
        parts.append((voted, class_scores[keep], np.full(keep.size, c)))
    return _limit(parts, max_detections)


def numpy_pose_ensemble(boxes, scores, labels, keypoints, nms_threshold=0.5,
                        vote_threshold=0.8, score_floor=0.05, max_detections=100):
    """`numpy_ensemble` plus `(K, J, 3)` keypoints: per joint, x and y weighted by score x
    confidence, confidence the score-weighted mean; a joint without weight is the kept
    box's own."""
    boxes, scores = boxes.astype(np.float64), scores.astype(np.float64)
    keypoints = keypoints.astype(np.float64)
    above = scores > score_floor
    parts = []
    for c in np.unique(labels[above]):
        rows = np.flatnonzero(above & (labels == c))
        class_boxes, class_scores, class_keypoints = boxes[rows], scores[rows], keypoints[rows]
        keep = _nms(class_boxes, class_scores, nms_threshold)
        votes = (_iou_matrix(class_boxes[keep], class_boxes) >= vote_threshold) * class_scores
        voted = votes @ class_boxes / votes.sum(axis=1, keepdims=True)
        weights = votes[:, :, None] * class_keypoints[None, :, :, 2]  # (K, M, J)
        weight = weights.sum(axis=1)
        safe = np.where(weight > 0, weight, 1.0)
        xy = np.einsum("kmj,mjc->kjc", weights, class_keypoints[:, :, :2]) / safe[..., None]
        confidence = weight / votes.sum(axis=1, keepdims=True)
        pose = np.concatenate([xy, confidence[..., None]], axis=2)
        pose = np.where((weight > 0)[..., None], pose, class_keypoints[keep])
        parts.append((voted, class_scores[keep], np.full(keep.size, c), pose))
    if not parts:
        return (np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64),
                np.zeros((0,) + keypoints.shape[1:]))
    voted, kept_scores, kept_labels, pose = (np.concatenate(p) for p in zip(*parts))
    order = np.argsort(-kept_scores, kind="stable")[:max_detections]
    return voted[order], kept_scores[order], kept_labels[order], pose[order]


def detectron_loop_ensemble(boxes, scores, labels, nms_threshold=0.5, vote_threshold=0.8,
                            score_floor=0.05, max_detections=100):
    """The same merge with Detectron's loop shape: one Python iteration per kept box."""
    boxes, scores = boxes.astype(np.float64), scores.astype(np.float64)
    parts = []
    for c in range(int(labels.max()) + 1 if labels.size else 0):
        rows = np.where((labels == c) & (scores > score_floor))[0]
        if rows.size == 0:
            continue
        class_boxes, class_scores = boxes[rows], scores[rows]
        keep = _nms(class_boxes, class_scores, nms_threshold)
        overlaps = _iou_matrix(class_boxes[keep], class_boxes)
        voted = class_boxes[keep].copy()
        for k in range(keep.size):
            voters = np.where(overlaps[k] >= vote_threshold)[0]
            if voters.size:  # a zero-area box overlaps nothing, not even itself: it stays as it is
                voted[k] = np.average(class_boxes[voters], axis=0, weights=class_scores[voters])
        parts.append((voted, class_scores[keep], np.full(keep.size, c)))
    return _limit(parts, max_detections)


def _warp_matrix(scale, mirror, h, w):
    """dst -> src affine map in OpenCV's pixel-index coordinates (centre of pixel q is q)."""
    # Continuous: u_t = (u - w/2)/s + w/2, mirrored u_t -> w - u_t; index = coordinate - 0.5.
    ax, bx = 1.0 / scale, (0.5 - w / 2) / scale + w / 2 - 0.5
    if mirror:
        ax, bx = -ax, w - 1.0 - bx
    ay, by = 1.0 / scale, (0.5 - h / 2) / scale + h / 2 - 0.5
    return np.array([[ax, 0.0, bx], [0.0, ay, by]])


def opencv_average_argmax(heatmaps, flips, scales, flip_pairs):
    """`(T, R, J, h, w)` maps -> `(R, J, 3)` x, y, value with the quarter refinement."""
    t_count, r_count, j_count, h, w = heatmaps.shape
    perm = np.arange(j_count)
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    total = np.zeros((r_count, j_count, h, w), dtype=np.float32)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for t in range(t_count):
        maps = heatmaps[t][:, perm] if flips[t] else heatmaps[t]
        if scales[t] == 1.0:
            total += maps[..., ::-1] if flips[t] else maps
            continue
        matrix = _warp_matrix(scales[t], bool(flips[t]), h, w)
        for r in range(r_count):
            for j in range(j_count):
                total[r, j] += cv2.warpAffine(maps[r, j], matrix, (w, h), flags=flags,
                                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    total /= t_count
    flat = total.reshape(r_count, j_count, h * w)
    idx = flat.argmax(-1)
    py, px = np.divmod(idx, w)
    value = np.take_along_axis(flat, idx[..., None], -1)[..., 0]
    rr, jj = np.arange(r_count)[:, None], np.arange(j_count)[None, :]

    def at(dy, dx):
        return total[rr, jj, np.clip(py + dy, 0, h - 1), np.clip(px + dx, 0, w - 1)]

    x = px + 0.5 + np.where((px > 0) & (px < w - 1), 0.25 * np.sign(at(0, 1) - at(0, -1)), 0)
    y = py + 0.5 + np.where((py > 0) & (py < h - 1), 0.25 * np.sign(at(1, 0) - at(-1, 0)), 0)
    return np.stack([x, y, value], axis=-1)
