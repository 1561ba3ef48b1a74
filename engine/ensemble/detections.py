"""The whole per-image merge of multi-transform detections, in one compiled call.

The union of every transform's candidates (already mapped back to original-image
coordinates) is split by class; within each class the candidates above the score floor
go through NMS (or soft-NMS), each survivor is refined by box voting against all of that
class's candidates, and the best `max_detections` over all classes are returned.
One Numba call does the whole image: a Python loop over 80 classes would cost more than
the arithmetic itself.

On a Detectron-like load most of the ~3000 boxes kept per image are isolated low-score
clutter, so the cost is per kept box and per class rather than IoU arithmetic. Hence one
radix sort and one set of layout arrays for all classes (boxes.class_layouts), and, with
hard NMS and vote_threshold >= nms_threshold (the defaults), voting inside the NMS scan
(voting.nms_vote_layout); soft-NMS and lower vote thresholds vote in a scan of their own.

Candidates of a one-stage pose detector carry keypoints: `ensemble_pose_detections` runs
the same merge and then votes the keypoints of each of the (at most `max_detections`)
kept boxes over the same class layout and voters as its box (keypoint_voting.py).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from engine.ensemble._checks import (
    check_boxes, check_positive, check_scores, check_threshold, f64, out_dtype,
)
from engine.ensemble.boxes import box_areas, class_layout, class_layouts
from engine.ensemble.keypoint_voting import check_keypoints, check_voter_scores, vote_keypoints
from engine.ensemble.nms import nms_layout, soft_nms_method_code, soft_nms_rows
from engine.ensemble.sorting import descending_order, stable_argsort_descending
from engine.ensemble.voting import (
    can_fuse,
    check_probabilities,
    nms_vote_layout,
    scoring_code,
    vote_one,
)

# Labels up to this many classes are bucketed directly; sparser labels are renumbered
# first so that the per-class buckets never allocate more than the input's size.
_DENSE_LABEL_LIMIT = 65536


@njit(cache=True, nogil=True)
def _above_floor(scores: np.ndarray, score_floor: float) -> np.ndarray:
    """Ascending indices of the scores > `score_floor`."""
    rows = np.empty(scores.shape[0], dtype=np.int64)
    count = 0
    for i in range(scores.shape[0]):
        # Branch-free: which scores pass the floor is unpredictable (~40% do on the
        # benchmark load), and a mispredicted branch per candidate cost more.
        rows[count] = i
        count += scores[i] > score_floor
    return rows[:count]


@njit(cache=True, nogil=True)
def _fused_classes(layouts, voter_scores, nms_threshold, vote_threshold, method, beta,
                   out_boxes, out_scores, out_rows) -> int:
    """Hard NMS and voting of every class in one scan per kept box
    (voting.nms_vote_layout, valid when voting.can_fuse); returns the rows written.
    `out_rows` receives each kept box's input row."""
    suppressed = np.zeros(voter_scores.shape[0], dtype=np.uint8)
    m = 0
    for c in range(layouts.starts.shape[0] - 1):
        start, end = layouts.starts[c], layouts.starts[c + 1]
        if start == end:
            continue  # sparse labels can leave most classes empty
        m = nms_vote_layout(*class_layout(layouts, c), voter_scores[start:end],
                            suppressed[start:end], nms_threshold, vote_threshold, method, beta,
                            layouts.source[start:end], out_boxes, out_scores, out_rows, m)
    return m


@njit(cache=True, nogil=True)
def _class_survivors(boxes, scores, areas, layouts, c, nms_threshold, soft_method, soft_sigma,
                     soft_score_threshold):
    """Class `c`'s NMS (or soft-NMS) survivors: `(K,)` input rows and their scores."""
    start, end = layouts.starts[c], layouts.starts[c + 1]
    if soft_method == 0:
        layout = class_layout(layouts, c)
        rows = layouts.source[start:end][layout[0][nms_layout(*layout, nms_threshold)]]
        return rows, scores[rows]
    # Soft-NMS breaks ties between decayed scores by the lower input index, so it scans
    # the class in input order.
    by_index = np.sort(layouts.source[start:end])
    return soft_nms_rows(boxes, areas, scores, by_index, nms_threshold, soft_sigma, soft_method,
                         soft_score_threshold)


@njit(cache=True, nogil=True)
def _separate_classes(boxes, scores, layouts, voter_scores, nms_threshold, soft_method,
                      soft_sigma, soft_score_threshold, do_vote, vote_threshold, method, beta,
                      out_boxes, out_scores, out_rows) -> int:
    """NMS or soft-NMS of every class, then (when `do_vote`) voting of each survivor
    in a scan of its own; returns the rows written. `out_rows` receives each kept box's
    input row."""
    areas = box_areas(boxes) if soft_method != 0 else np.empty(0, dtype=np.float64)
    m = 0
    for c in range(layouts.starts.shape[0] - 1):
        start, end = layouts.starts[c], layouts.starts[c + 1]
        if start == end:
            continue
        rows, kept_scores = _class_survivors(boxes, scores, areas, layouts, c, nms_threshold,
                                             soft_method, soft_sigma, soft_score_threshold)
        _, x1, y1, x2, y2, area, bucket_start, x_min, inv_cell = class_layout(layouts, c)
        for k in range(rows.shape[0]):
            i = rows[k]
            if do_vote:
                vote_one(boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3], kept_scores[k],
                         x1, y1, x2, y2, area, bucket_start, x_min, inv_cell,
                         voter_scores[start:end], vote_threshold, method, beta, out_boxes,
                         out_scores, m)
            else:
                out_boxes[m, :] = boxes[i, :]
                out_scores[m] = kept_scores[k]
            out_rows[m] = i
            m += 1
    return m


@njit(cache=True, nogil=True)
def _merge(
    boxes, scores, labels, num_classes, score_floor, nms_threshold, soft_method, soft_sigma,
    soft_score_threshold, do_vote, vote_threshold, method, beta, max_detections,
):
    """The merge of `ensemble_detections`: `(K, 4)` boxes, `(K,)` scores and `(K,)` input
    rows of the kept candidates, best first, with the class layouts and the voters'
    scores in layout order (empty when not voting) that keypoint voting reuses."""
    # One global stable radix sort by descending score, then per-class layouts filled in
    # that order: each class's candidates are visited by descending score, ties by lower
    # input index, for O(N) instead of a comparison sort per class.
    ranked = descending_order(scores, _above_floor(scores, score_floor))
    layouts = class_layouts(boxes, labels, ranked, num_classes)
    # Voters' scores in layout order; the no-vote path (plain NMS) never reads them.
    voter_scores = scores[layouts.source] if do_vote else np.empty(0, dtype=np.float64)
    n = ranked.shape[0]
    out_boxes = np.empty((n, 4), dtype=np.float64)
    out_scores = np.empty(n, dtype=np.float64)
    out_rows = np.empty(n, dtype=np.int64)
    if do_vote and soft_method == 0 and can_fuse(nms_threshold, vote_threshold):
        m = _fused_classes(layouts, voter_scores, nms_threshold, vote_threshold, method, beta,
                           out_boxes, out_scores, out_rows)
    else:
        m = _separate_classes(boxes, scores, layouts, voter_scores, nms_threshold, soft_method,
                              soft_sigma, soft_score_threshold, do_vote, vote_threshold, method,
                              beta, out_boxes, out_scores, out_rows)
    # Stable sort: equal scores keep class order, then each class's NMS order.
    order = stable_argsort_descending(out_scores[:m])
    if 0 <= max_detections < m:
        order = order[:max_detections]
    return out_boxes[order], out_scores[order], out_rows[order], layouts, voter_scores


@njit(cache=True, nogil=True)
def _ensemble_kernel(
    boxes, scores, labels, num_classes, score_floor, nms_threshold, soft_method, soft_sigma,
    soft_score_threshold, do_vote, vote_threshold, method, beta, max_detections,
):
    out_boxes, out_scores, rows, _, _ = _merge(
        boxes, scores, labels, num_classes, score_floor, nms_threshold, soft_method, soft_sigma,
        soft_score_threshold, do_vote, vote_threshold, method, beta, max_detections,
    )
    return out_boxes, out_scores, labels[rows]


@njit(cache=True, nogil=True)
def _pose_ensemble_kernel(
    boxes, scores, labels, keypoints, num_classes, score_floor, nms_threshold, soft_method,
    soft_sigma, soft_score_threshold, do_vote, vote_threshold, method, beta, max_detections,
):
    """`_ensemble_kernel` plus the kept boxes' `(K, J, 3)` keypoints, in the dtype of
    `keypoints` (one compiled signature per keypoint dtype): each kept box's voters'
    vote (keypoint_voting.vote_keypoints) or, without voting, its own keypoints."""
    out_boxes, out_scores, rows, layouts, voter_scores = _merge(
        boxes, scores, labels, num_classes, score_floor, nms_threshold, soft_method, soft_sigma,
        soft_score_threshold, do_vote, vote_threshold, method, beta, max_detections,
    )
    out_keypoints = np.empty((rows.shape[0], keypoints.shape[1], 3), dtype=keypoints.dtype)
    sums = np.empty((keypoints.shape[1], 3), dtype=np.float64)
    for k in range(rows.shape[0]):
        r = rows[k]
        if not do_vote:
            out_keypoints[k] = keypoints[r]
            continue
        c = labels[r]
        start, end = layouts.starts[c], layouts.starts[c + 1]
        _, x1, y1, x2, y2, area, bucket_start, x_min, inv_cell = class_layout(layouts, c)
        vote_keypoints(boxes[r, 0], boxes[r, 1], boxes[r, 2], boxes[r, 3], r, x1, y1, x2, y2,
                       area, bucket_start, x_min, inv_cell, voter_scores[start:end],
                       layouts.source[start:end], keypoints, vote_threshold, sums,
                       out_keypoints, k)
    return out_boxes, out_scores, labels[rows], out_keypoints


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


def _checked_inputs(boxes, scores, labels, nms_threshold, vote_threshold, scoring, score_floor,
                    max_detections, soft_nms, beta, soft_nms_sigma, soft_nms_score_threshold):
    """The checked `(boxes, scores, labels)` (the caller's arrays, not copied) and the
    kernels' scalar options after `num_classes`, in their order; ValueError otherwise."""
    boxes = check_boxes(boxes)
    scores = check_scores(scores, boxes.shape[0])
    labels = _check_labels(labels, boxes.shape[0])
    nms_threshold = check_threshold(nms_threshold, "nms_threshold")
    score_floor = float(score_floor)  # -inf is allowed: keep every candidate
    if math.isnan(score_floor):
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
    options = (score_floor, nms_threshold, soft_method, sigma, soft_floor, do_vote,
               vote_threshold, method, beta, limit)
    return boxes, scores, labels, options


def _dense_labels(labels: np.ndarray) -> tuple[np.ndarray, int, np.ndarray | None]:
    """`(N,)` int64 class indices for the kernels, their count, and the distinct input
    labels they index when sparse labels had to be renumbered (else None)."""
    dense = labels.astype(np.int64)
    num_classes = int(dense.max()) + 1
    if num_classes > max(_DENSE_LABEL_LIMIT, 4 * dense.shape[0]):
        classes, dense = np.unique(dense, return_inverse=True)
        return dense, classes.shape[0], classes
    return dense, num_classes, None


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
    boxes, scores, labels, options = _checked_inputs(
        boxes, scores, labels, nms_threshold, vote_threshold, scoring, score_floor,
        max_detections, soft_nms, beta, soft_nms_sigma, soft_nms_score_threshold,
    )
    if boxes.shape[0] == 0:
        return _in_input_dtypes(*_no_detections(), None, boxes, scores, labels)
    dense, num_classes, classes = _dense_labels(labels)
    out_boxes, out_scores, out_labels = _ensemble_kernel(
        f64(boxes), f64(scores), dense, num_classes, *options
    )
    return _in_input_dtypes(out_boxes, out_scores, out_labels, classes, boxes, scores, labels)


def _no_detections() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kernels' output for an image without candidates: `(0, 4)`, `(0,)`, `(0,)`."""
    return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)


def _in_input_dtypes(out_boxes: np.ndarray, out_scores: np.ndarray, out_labels: np.ndarray,
                     classes: np.ndarray | None, boxes: np.ndarray, scores: np.ndarray,
                     labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A kernel's float64 boxes and scores and dense labels back in the caller's terms:
    the input's dtypes (`out_dtype`) and, where `_dense_labels` compacted sparse labels,
    the original label values (`classes[dense]`)."""
    if classes is not None:
        out_labels = classes[out_labels]
    return (
        out_boxes.astype(out_dtype(boxes), copy=False),
        out_scores.astype(out_dtype(scores), copy=False),
        out_labels.astype(labels.dtype, copy=False),
    )


def ensemble_pose_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    keypoints: np.ndarray,
    nms_threshold: float = 0.5,
    vote_threshold: float | None = 0.8,
    scoring: str = "id",
    score_floor: float = 0.05,
    max_detections: int | None = 100,
    soft_nms: str | None = None,
    beta: float = 1.0,
    soft_nms_sigma: float = 0.5,
    soft_nms_score_threshold: float = 0.001,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`ensemble_detections` for candidates that carry keypoints (a one-stage pose
    detector), plus the kept detections' keypoints, in the same one call per image.

    Boxes, scores and labels are exactly those of `ensemble_detections` with the same
    arguments. Each kept detection's keypoints are the vote of the candidates that voted
    for its box (same label, score > `score_floor`, IoU with the kept box >=
    `vote_threshold`), by the rule of engine.ensemble.keypoint_voting; with
    `vote_threshold` None, the kept candidate's own keypoints.

    Args:
        boxes, scores, labels: as `ensemble_detections`.
        keypoints: `(N, J, 3)` float32/float64 (float16 is computed as float32) x, y in
            original-image pixels and confidence >= 0, per candidate; a mirrored pass's
            candidates must already be mirrored back with left/right joints swapped.

    Returns:
        boxes `(K, 4)`, scores `(K,)`, labels `(K,)` as `ensemble_detections`, and
        keypoints `(K, J, 3)`, float32 when the input keypoints were float16/float32,
        else float64.
    """
    boxes, scores, labels, options = _checked_inputs(
        boxes, scores, labels, nms_threshold, vote_threshold, scoring, score_floor,
        max_detections, soft_nms, beta, soft_nms_sigma, soft_nms_score_threshold,
    )
    keypoints = check_keypoints(keypoints, boxes.shape[0])
    if vote_threshold is not None:
        check_voter_scores(scores, float(score_floor))
    if boxes.shape[0] == 0:
        no_keypoints = np.zeros((0,) + keypoints.shape[1:], dtype=keypoints.dtype)
        return *_in_input_dtypes(*_no_detections(), None, boxes, scores, labels), no_keypoints
    dense, num_classes, classes = _dense_labels(labels)
    out_boxes, out_scores, out_labels, out_keypoints = _pose_ensemble_kernel(
        f64(boxes), f64(scores), dense, keypoints, num_classes, *options
    )
    return *_in_input_dtypes(out_boxes, out_scores, out_labels, classes, boxes, scores, labels), out_keypoints
