"""The whole per-image merge of multi-transform detections, in one compiled call.

The union of every transform's candidates (already mapped back to original-image
coordinates) is split by class; within each class the candidates above the score floor
go through NMS (or soft-NMS), each survivor is refined by box voting against all of that
class's candidates, and the best `max_detections` over all classes are returned.
One Numba call does the whole image: a Python loop over 80 classes would cost more than
the arithmetic itself.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.ensemble._checks import (
    check_boxes, check_positive, check_scores, check_threshold, f64, out_dtype,
)
from engine.ensemble.boxes import box_areas, x_bucket_layout
from engine.ensemble.nms import nms_layout, soft_nms_method_code, soft_nms_rows
from engine.ensemble.sorting import descending_order
from engine.ensemble.voting import (
    check_probabilities,
    layout_scores,
    scoring_code,
    vote_one,
)

# Labels up to this many classes are bucketed directly; sparser labels are renumbered
# first so that the per-class buckets never allocate more than the input's size.
_DENSE_LABEL_LIMIT = 65536


@njit(cache=True)
def _ensemble_kernel(
    boxes, scores, labels, num_classes, score_floor, nms_threshold, soft_method, soft_sigma,
    soft_score_threshold, do_vote, vote_threshold, method, beta, max_detections,
):
    n = boxes.shape[0]
    above = 0
    for i in range(n):
        if scores[i] > score_floor:
            above += 1
    candidates = np.empty(above, dtype=np.int64)
    above = 0
    for i in range(n):
        if scores[i] > score_floor:
            candidates[above] = i
            above += 1
    # One global stable radix sort by descending score, then a stable counting sort by
    # class: each class's candidates end up contiguous, in NMS visiting order (ties by
    # lower input index), for O(N) instead of a comparison sort per class.
    ranked = descending_order(scores, candidates)
    starts = np.zeros(num_classes + 1, dtype=np.int64)
    for k in range(above):
        starts[labels[ranked[k]] + 1] += 1
    for c in range(num_classes):
        starts[c + 1] += starts[c]
    fill = starts[:num_classes].copy()
    grouped = np.empty((above, 4), dtype=np.float64)
    grouped_scores = np.empty(above, dtype=np.float64)
    grouped_index = np.empty(above, dtype=np.int64)
    for k in range(above):
        i = ranked[k]
        g = fill[labels[i]]
        fill[labels[i]] += 1
        grouped[g, :] = boxes[i, :]
        grouped_scores[g] = scores[i]
        grouped_index[g] = i

    out_boxes = np.empty((above, 4), dtype=np.float64)
    out_scores = np.empty(above, dtype=np.float64)
    out_labels = np.empty(above, dtype=np.int64)
    areas = box_areas(grouped) if soft_method != 0 else np.empty(0, dtype=np.float64)
    m = 0
    for c in range(num_classes):
        order = np.arange(starts[c], starts[c + 1])  # rows of `grouped`, by rank
        if order.shape[0] == 0:
            continue
        # One bucketed layout of the class serves both NMS and voting.
        layout = x_bucket_layout(grouped, order)
        position_of, x1, y1, x2, y2, area, bucket_start, x_min, inv_cell = layout
        if soft_method == 0:
            keep = order[nms_layout(*layout, nms_threshold)]
            kept_scores = grouped_scores[keep]
        else:
            # Soft-NMS breaks ties between decayed scores by the lower input index, so it
            # scans the class in input order.
            by_index = order[np.argsort(grouped_index[order])]
            keep, kept_scores = soft_nms_rows(
                grouped, areas, grouped_scores, by_index, nms_threshold, soft_sigma,
                soft_method, soft_score_threshold,
            )
        if do_vote:
            voter_scores = layout_scores(grouped_scores, order, position_of)
        for k in range(keep.shape[0]):
            i = keep[k]
            if do_vote:
                vote_one(grouped[i], kept_scores[k], x1, y1, x2, y2, area, bucket_start,
                         x_min, inv_cell, voter_scores, vote_threshold, method, beta,
                         out_boxes, out_scores, m)
            else:
                out_boxes[m, :] = grouped[i, :]
                out_scores[m] = kept_scores[k]
            out_labels[m] = c
            m += 1
    # Stable sort: equal scores keep class order, then each class's NMS order.
    order = np.argsort(-out_scores[:m], kind="mergesort")
    if 0 <= max_detections < m:
        order = order[:max_detections]
    return out_boxes[order], out_scores[order], out_labels[order]


def _check_labels(labels, count: int) -> np.ndarray:
    array = np.asarray(labels)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"labels must be an integer array of class indices, got dtype {array.dtype}"
        )
    if array.ndim != 1 or array.shape[0] != count:
        raise ValueError(f"labels must have shape ({count},) to match the boxes, got {array.shape}")
    if array.size and array.min() < 0:
        raise ValueError("labels must be non-negative class indices")
    return array


def ensemble_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    nms_threshold: float = 0.5,
    vote_threshold: float | None = 0.8,
    scoring: str = "id",
    score_floor: float = 0.05,
    max_detections: int | None = 100,
    soft_nms: str | None = None,
    beta: float = 1.0,
    soft_nms_sigma: float = 0.5,
    soft_nms_score_threshold: float = 0.001,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge one image's candidates from every transform into final detections.

    Per distinct label: keep candidates with score > `score_floor`; NMS at
    `nms_threshold` (or soft-NMS `linear`/`gaussian` when `soft_nms` names one, with
    `soft_nms_sigma` and `soft_nms_score_threshold`); unless `vote_threshold` is None,
    box voting of each survivor against all of that class's candidates above the floor
    (`scoring`, `beta`). Then the `max_detections` highest scores over all classes
    (None: all) in descending score order; ties keep the lower label first.

    Args:
        boxes: `(N, 4)` float32/float64 xyxy in original-image pixels.
        scores: `(N,)` float32/float64. labels: `(N,)` non-negative int class indices.

    Returns:
        boxes `(K, 4)`, scores `(K,)` (float32 when the input was float32, else float64)
        and labels `(K,)` with the dtype of the input labels.
    """
    boxes = check_boxes(boxes)
    scores = check_scores(scores, boxes.shape[0])
    labels = _check_labels(labels, boxes.shape[0])
    nms_threshold = check_threshold(nms_threshold, "nms_threshold")
    score_floor = float(score_floor)  # -inf is allowed: keep every candidate
    if np.isnan(score_floor):
        raise ValueError("score_floor must not be NaN")
    do_vote = vote_threshold is not None
    vote_threshold = check_threshold(vote_threshold, "vote_threshold") if do_vote else 1.0
    method = scoring_code(scoring)
    beta = check_positive(beta, "beta")
    if do_vote and scoring == "temp_avg":
        check_probabilities(scores[scores > score_floor], scoring, "scores")
    soft_method = 0 if soft_nms is None else soft_nms_method_code(soft_nms)
    sigma = check_positive(soft_nms_sigma, "soft_nms_sigma")
    soft_floor = check_threshold(soft_nms_score_threshold, "soft_nms_score_threshold")
    if max_detections is None:
        limit = -1
    elif isinstance(max_detections, (int, np.integer)) and max_detections >= 0:
        limit = int(max_detections)
    else:
        raise ValueError(
            f"max_detections must be a non-negative int or None, got {max_detections!r}"
        )

    box_dtype, score_dtype = out_dtype(boxes), out_dtype(scores)
    if boxes.shape[0] == 0:
        return (
            np.zeros((0, 4), dtype=box_dtype),
            np.zeros(0, dtype=score_dtype),
            np.zeros(0, dtype=labels.dtype),
        )
    classes = None
    dense = labels.astype(np.int64)
    num_classes = int(dense.max()) + 1
    if num_classes > max(_DENSE_LABEL_LIMIT, 4 * dense.shape[0]):
        classes, dense = np.unique(dense, return_inverse=True)
        num_classes = classes.shape[0]
    out_boxes, out_scores, out_labels = _ensemble_kernel(
        f64(boxes), f64(scores), dense, num_classes, score_floor, nms_threshold, soft_method,
        sigma, soft_floor, do_vote, vote_threshold, method, beta, limit,
    )
    if classes is not None:
        out_labels = classes[out_labels]
    return (
        out_boxes.astype(box_dtype, copy=False),
        out_scores.astype(score_dtype, copy=False),
        out_labels.astype(labels.dtype, copy=False),
    )
