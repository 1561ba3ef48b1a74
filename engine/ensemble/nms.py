"""Greedy NMS and soft-NMS over continuous xyxy boxes, compiled with Numba.

Order is deterministic: boxes are visited by descending score, ties broken by the lower
input index (a stable radix sort, sorting.py). A box is suppressed when its IoU with an
already kept box is strictly greater than the threshold, the convention of DESIGN.md.
Soft-NMS is O(n^2) per class (each step rescans the survivors); it is the slow option.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.ensemble._checks import (
    check_boxes, check_positive, check_scores, check_threshold, f64, method_code, out_dtype,
)
from engine.ensemble.boxes import (
    box_areas,
    layout_iou,
    pair_iou,
    suppression_window,
    x_bucket_layout,
)
from engine.ensemble.sorting import descending_order

SOFT_NMS_METHODS = {"linear": 1, "gaussian": 2}


@njit(cache=True, nogil=True, error_model="numpy")
def nms_layout(position_of, x1, y1, x2, y2, area, bucket_start, x_min, inv_cell,
               iou_threshold: float) -> np.ndarray:
    """Greedy NMS over a layout (boxes.x_bucket_layout) of the boxes in visiting order.

    `position_of[k]` is the layout position of the k-th box to visit. Returns the
    visiting ranks k of the kept boxes (ascending). Each kept box marks the boxes of its
    x1 window whose IoU exceeds the threshold. Marking a box visited earlier is harmless
    (a kept one cannot exceed the threshold with a later survivor, a suppressed one is
    marked already), so the marking loop needs no rank test. (Writing IoUs to a scratch
    array first lets LLVM vectorise, but windows average a few dozen boxes and the
    vector set-up made it slower.)
    """
    n = position_of.shape[0]
    suppressed = np.zeros(n, dtype=np.uint8)
    keep = np.empty(n, dtype=np.int64)
    kept = 0
    for k in range(n):
        p = position_of[k]
        if suppressed[p]:
            continue
        keep[kept] = k
        kept += 1
        lo, hi = suppression_window(bucket_start, x_min, inv_cell, x1[p], x2[p], area[p],
                                    iou_threshold)
        ax1, ay1, ax2, ay2, a_area = x1[p], y1[p], x2[p], y2[p], area[p]
        for j in range(hi - lo):
            q = np.uint64(lo + j)  # unsigned: no negative-index wraparound code (boxes.py)
            iou = layout_iou(ax1, ay1, ax2, ay2, a_area, x1, y1, x2, y2, area, q)
            suppressed[q] |= np.uint8(iou > iou_threshold)
    return keep[:kept]


@njit(cache=True, nogil=True)
def soft_nms_rows(
    boxes: np.ndarray,
    areas: np.ndarray,
    scores: np.ndarray,
    rows: np.ndarray,
    iou_threshold: float,
    sigma: float,
    method: int,
    score_threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft-NMS over `rows` (int64, ascending); returns (kept rows, their decayed scores).

    Each step selects the highest current score (lowest row on ties), then decays every
    remaining box by its IoU with the selected one; a box whose score falls below
    `score_threshold` is dropped and never selected. Scores only decay, so the kept
    scores come out non-increasing.
    """
    n = rows.shape[0]
    current = np.empty(n, dtype=np.float64)
    alive = np.empty(n, dtype=np.bool_)
    for a in range(n):
        current[a] = scores[rows[a]]
        alive[a] = current[a] >= score_threshold
    keep = np.empty(n, dtype=np.int64)
    kept_scores = np.empty(n, dtype=np.float64)
    kept = 0
    for _ in range(n):
        best = -1
        best_score = 0.0
        for a in range(n):
            if alive[a] and (best < 0 or current[a] > best_score):
                best = a
                best_score = current[a]
        if best < 0:
            break
        alive[best] = False
        i = rows[best]
        keep[kept] = i
        kept_scores[kept] = best_score
        kept += 1
        for a in range(n):
            if not alive[a]:
                continue
            j = rows[a]
            iou = pair_iou(boxes, i, areas[i], boxes, j, areas[j])
            if iou <= 0.0:
                continue  # weight 1 for both methods; skip the exp
            if method == 1:
                if iou > iou_threshold:
                    current[a] *= 1.0 - iou
            else:
                current[a] *= np.exp(-(iou * iou) / sigma)
            if current[a] < score_threshold:
                alive[a] = False
    return keep[:kept], kept_scores[:kept]


@njit(cache=True, nogil=True)
def _nms_kernel(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    order = descending_order(scores, np.arange(boxes.shape[0]))
    layout = x_bucket_layout(boxes, order)
    return order[nms_layout(*layout, iou_threshold)]


@njit(cache=True, nogil=True)
def _soft_nms_kernel(boxes, scores, iou_threshold, sigma, method, score_threshold):
    rows = np.arange(boxes.shape[0])
    return soft_nms_rows(
        boxes, box_areas(boxes), scores, rows, iou_threshold, sigma, method, score_threshold
    )


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression.

    Args:
        boxes: `(N, 4)` float32/float64 xyxy, continuous coordinates.
        scores: `(N,)` float32/float64.
        iou_threshold: a box is suppressed when its IoU with a kept box is > this.

    Returns:
        `(K,)` int64 indices of the kept boxes, by descending score (lower index first
        on ties).
    """
    boxes = check_boxes(boxes)
    scores = check_scores(scores, boxes.shape[0])
    threshold = check_threshold(iou_threshold, "iou_threshold")
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    return _nms_kernel(f64(boxes), f64(scores), threshold)


def soft_nms_method_code(method: str) -> int:
    """The kernel code of a soft-NMS method name, ValueError for unknown names."""
    return method_code(method, SOFT_NMS_METHODS, "soft-NMS method")


def soft_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    method: str = "linear",
    score_threshold: float = 0.001,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft-NMS (Bodla et al., 2017): decay overlapping scores instead of deleting boxes.

    Boxes are selected greedily by current score (lower index first on ties). After each
    selection every remaining box's score is multiplied by `1 - iou` when
    `iou > iou_threshold` (`linear`) or by `exp(-iou**2 / sigma)` (`gaussian`, which
    ignores `iou_threshold`); boxes whose score is below `score_threshold` are dropped.

    Args:
        boxes: `(N, 4)` float32/float64 xyxy. scores: `(N,)` float32/float64.

    Returns:
        keep: `(K,)` int64 input indices in selection order (non-increasing new score).
        new_scores: `(K,)` decayed scores of the kept boxes, dtype of `scores` (float32
        stays float32, anything else is float64).
    """
    boxes = check_boxes(boxes)
    scores = check_scores(scores, boxes.shape[0])
    code = soft_nms_method_code(method)
    threshold = check_threshold(iou_threshold, "iou_threshold")
    floor = check_threshold(score_threshold, "score_threshold")
    sigma = check_positive(sigma, "sigma")
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=out_dtype(scores))
    keep, new_scores = _soft_nms_kernel(f64(boxes), f64(scores), threshold, sigma, code, floor)
    return keep, new_scores.astype(out_dtype(scores), copy=False)
