"""Box voting (Gidaris & Komodakis, 2015) with Detectron's score-averaging methods.

Each kept ("top") box is replaced by the score-weighted mean of every candidate whose
IoU with it is >= the vote threshold; its score is recomputed from the voters' scores
`w_1..w_n` (and IoUs `o_1..o_n`) by one of Detectron's methods:

- `id`: the top score, unchanged;
- `avg`: mean(w);
- `iou_avg`: sum(o * w) / sum(o);
- `generalized_avg`: mean(w ** beta) ** (1 / beta);
- `quasi_sum`: sum(w) / n ** beta;
- `temp_avg`: mean over voters of w**(1/beta) / (w**(1/beta) + (1 - w)**(1/beta)), the
  probability of the class after a temperature `beta` applied to the two-way
  distribution (w, 1 - w); it needs scores in [0, 1].

When nobody votes (a zero-area top box overlaps nothing) or all voters score 0, the box
is left as it is; with no voters its score is left as it is too.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.ensemble._checks import (
    check_boxes, check_positive, check_scores, check_threshold, f64, method_code, out_dtype,
)
from engine.ensemble.boxes import (
    layout_iou, overlap_window, suppression_window, x_bucket_layout,
)

SCORING_METHODS = {
    "id": 0,
    "avg": 1,
    "iou_avg": 2,
    "generalized_avg": 3,
    "quasi_sum": 4,
    "temp_avg": 5,
}


@njit(cache=True, nogil=True, inline="always")
def _temperature_probability(w: float, inv_beta: float) -> float:
    # Dividing both parts by the larger one first, as Detectron does in log space, keeps
    # the powers in (0, 1] for any temperature.
    larger = max(w, 1.0 - w)
    a = (w / larger) ** inv_beta
    b = ((1.0 - w) / larger) ** inv_beta
    return a / (a + b)


@njit(cache=True, nogil=True, inline="always")
def _method_term(method: int, w: float, iou: float, beta: float, inv_beta: float) -> float:
    """A voter's term in the running sum of `method` (0 for methods that need none)."""
    if method == 2:
        return iou * w
    if method == 3:
        return w**beta
    if method == 5:
        return _temperature_probability(w, inv_beta)
    return 0.0


# A top box's running sums over its voters: (count, weight, w*x1, w*y1, w*x2, w*y2,
# the method's term, iou).
NO_VOTES = (0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@njit(cache=True, nogil=True, inline="always")
def _add_voter(sums, w, iou, x1, y1, x2, y2, method, beta, inv_beta):
    """`sums` (NO_VOTES's layout) with one more voter of score `w`, IoU `iou` and box
    (x1, y1, x2, y2). The voting kernels add voters in ascending layout position, so
    every floating-point sum is formed in the same order whichever kernel votes."""
    count, weight, sx1, sy1, sx2, sy2, acc, iou_sum = sums
    return (count + 1, weight + w, sx1 + w * x1, sy1 + w * y1, sx2 + w * x2, sy2 + w * y2,
            acc + _method_term(method, w, iou, beta, inv_beta), iou_sum + iou)


@njit(cache=True, nogil=True, inline="always")
def _write_vote(ax1, ay1, ax2, ay2, top_score, sums, method, beta, out_boxes, out_scores, o):
    """Row `o` of the outputs from a top box and its voters' sums (module docstring)."""
    count, weight, sx1, sy1, sx2, sy2, acc, iou_sum = sums
    if weight != 0.0:
        out_boxes[o, 0] = sx1 / weight
        out_boxes[o, 1] = sy1 / weight
        out_boxes[o, 2] = sx2 / weight
        out_boxes[o, 3] = sy2 / weight
    else:
        out_boxes[o, 0], out_boxes[o, 1], out_boxes[o, 2], out_boxes[o, 3] = ax1, ay1, ax2, ay2
    score = top_score
    if count > 0:
        if method == 1:
            score = weight / count
        elif method == 2:
            if iou_sum > 0.0:
                score = acc / iou_sum
        elif method == 3:
            score = (acc / count) ** (1.0 / beta)
        elif method == 4:
            score = weight / count**beta
        elif method == 5:
            score = acc / count
    out_scores[o] = score


@njit(cache=True, nogil=True, inline="always")
def voter_window(ax1, ay1, ax2, ay2, bucket_start, x_min, inv_cell, vote_threshold):
    """`(a_area, lo, hi)`: the area of the top box (ax1, ay1, ax2, ay2) and the layout
    positions `[lo, hi)` that hold every candidate whose IoU with it can reach
    `vote_threshold`. The boxes and the keypoints of a top box are voted over this window
    with the same IoU test, so both see the same voters."""
    a_area = 0.0
    if ax2 - ax1 > 0.0 and ay2 - ay1 > 0.0:
        a_area = (ax2 - ax1) * (ay2 - ay1)
    if vote_threshold <= 0.0:
        return a_area, 0, bucket_start[bucket_start.shape[0] - 1]  # even IoU 0 reaches it
    if a_area <= 0.0:
        return a_area, 0, 0  # IoU 0 with everything: nobody votes
    lo, hi = overlap_window(bucket_start, x_min, inv_cell, ax1, ax2, vote_threshold)
    return a_area, lo, hi


@njit(cache=True, nogil=True, error_model="numpy")
def vote_one(
    ax1: float,
    ay1: float,
    ax2: float,
    ay2: float,
    top_score: float,
    x1: np.ndarray,
    y1: np.ndarray,
    x2: np.ndarray,
    y2: np.ndarray,
    area: np.ndarray,
    bucket_start: np.ndarray,
    x_min: float,
    inv_cell: float,
    scores: np.ndarray,
    vote_threshold: float,
    method: int,
    beta: float,
    out_boxes: np.ndarray,
    out_scores: np.ndarray,
    o: int,
) -> None:
    """Vote the xyxy box (ax1, ay1, ax2, ay2) against a layout (boxes.x_bucket_layout,
    `scores` in the layout's order); write the result to row `o` of the outputs."""
    a_area, lo, hi = voter_window(ax1, ay1, ax2, ay2, bucket_start, x_min, inv_cell,
                                  vote_threshold)
    inv_beta = 1.0 / beta
    sums = NO_VOTES
    for j in range(hi - lo):
        q = np.uint64(lo + j)  # unsigned: no negative-index wraparound code (boxes.py)
        iou = layout_iou(ax1, ay1, ax2, ay2, a_area, x1, y1, x2, y2, area, q)
        if iou >= vote_threshold:
            sums = _add_voter(sums, scores[q], iou, x1[q], y1[q], x2[q], y2[q], method, beta,
                              inv_beta)
    _write_vote(ax1, ay1, ax2, ay2, top_score, sums, method, beta, out_boxes, out_scores, o)


@njit(cache=True, nogil=True, inline="always")
def can_fuse(nms_threshold: float, vote_threshold: float) -> bool:
    """Whether `nms_vote_layout` may vote inside the NMS scan (its docstring says why)."""
    return vote_threshold > 0.0 and vote_threshold >= nms_threshold


@njit(cache=True, nogil=True, error_model="numpy")
def nms_vote_layout(
    position_of: np.ndarray,
    x1: np.ndarray,
    y1: np.ndarray,
    x2: np.ndarray,
    y2: np.ndarray,
    area: np.ndarray,
    bucket_start: np.ndarray,
    x_min: float,
    inv_cell: float,
    scores: np.ndarray,
    suppressed: np.ndarray,
    nms_threshold: float,
    vote_threshold: float,
    method: int,
    beta: float,
    source: np.ndarray,
    out_boxes: np.ndarray,
    out_scores: np.ndarray,
    out_rows: np.ndarray,
    o: int,
) -> int:
    """Greedy NMS (nms.nms_layout) of a layout with each kept box voted (`vote_one`)
    in the same scan; kept boxes go to output rows `o, o + 1, ...` in visiting order.

    `scores` are the boxes' `(n,)` scores in layout order, `suppressed` a `(n,)` uint8
    scratch of zeros, `source` the `(n,)` input row each layout position holds; a kept
    box's input row goes to `out_rows` (the caller finds its label and keypoints there).
    Returns the row after the last one written.

    Valid only when `can_fuse` (0 < vote_threshold, nms_threshold <= vote_threshold):
    then IoU >= vote_threshold implies IoU >= nms_threshold, so the window NMS scans for
    a kept box (every box that can exceed nms_threshold; all boxes when it is negative)
    holds every voter, and NMS computes each of those IoUs anyway. Both windows hold
    every voter and are scanned in ascending position, so the voters, their order and
    every floating-point sum are exactly those of `vote_one`: the output is
    bit-identical. What the fusion saves is a second window lookup and scan per kept
    box, which matters when most kept boxes are isolated (about 3000 per image on the
    benchmark load): the merge took ~20% less time than NMS followed by `vote_one`.
    The voter test stays a branch: voters are rare (~5000 of ~90000 IoUs per image),
    and a branch-free accumulation was ~15% slower overall.
    """
    inv_beta = 1.0 / beta
    for k in range(position_of.shape[0]):
        p = position_of[k]
        if suppressed[p]:
            continue
        ax1, ay1, ax2, ay2, a_area = x1[p], y1[p], x2[p], y2[p], area[p]
        lo, hi = suppression_window(bucket_start, x_min, inv_cell, ax1, ax2, a_area,
                                    nms_threshold)
        sums = NO_VOTES
        for j in range(hi - lo):
            q = np.uint64(lo + j)  # unsigned: no negative-index wraparound code (boxes.py)
            iou = layout_iou(ax1, ay1, ax2, ay2, a_area, x1, y1, x2, y2, area, q)
            suppressed[q] |= np.uint8(iou > nms_threshold)
            if iou >= vote_threshold:
                sums = _add_voter(sums, scores[q], iou, x1[q], y1[q], x2[q], y2[q], method,
                                  beta, inv_beta)
        _write_vote(ax1, ay1, ax2, ay2, scores[p], sums, method, beta, out_boxes, out_scores, o)
        out_rows[o] = source[p]
        o += 1
    return o


@njit(cache=True, nogil=True)
def layout_scores(scores: np.ndarray, rows: np.ndarray, position_of: np.ndarray) -> np.ndarray:
    """`scores[rows]` rearranged into the layout's x1 order."""
    out = np.empty(rows.shape[0], dtype=np.float64)
    for k in range(rows.shape[0]):
        out[position_of[k]] = scores[rows[k]]
    return out


@njit(cache=True, nogil=True)
def _box_voting_kernel(top_boxes, top_scores, all_boxes, all_scores, vote_threshold, method, beta):
    k = top_boxes.shape[0]
    out_boxes = np.empty((k, 4), dtype=np.float64)
    out_scores = np.empty(k, dtype=np.float64)
    rows = np.arange(all_boxes.shape[0])
    position_of, x1, y1, x2, y2, area, bucket_start, x_min, inv_cell = x_bucket_layout(
        all_boxes, rows
    )
    scores = layout_scores(all_scores, rows, position_of)
    for t in range(k):
        vote_one(top_boxes[t, 0], top_boxes[t, 1], top_boxes[t, 2], top_boxes[t, 3],
                 top_scores[t], x1, y1, x2, y2, area, bucket_start, x_min, inv_cell, scores,
                 vote_threshold, method, beta, out_boxes, out_scores, t)
    return out_boxes, out_scores


def scoring_code(scoring: str) -> int:
    """The kernel code of a scoring method name, ValueError for unknown names."""
    return method_code(scoring, SCORING_METHODS, "box-voting scoring")


def check_probabilities(scores: np.ndarray, scoring: str, name: str) -> None:
    """`temp_avg` treats scores as probabilities; anything outside [0, 1] is an error."""
    if scoring == "temp_avg" and scores.size and (scores.min() < 0 or scores.max() > 1):
        raise ValueError(f"scoring 'temp_avg' needs {name} in [0, 1]")


def box_voting(
    top_boxes: np.ndarray,
    top_scores: np.ndarray,
    all_boxes: np.ndarray,
    all_scores: np.ndarray,
    vote_threshold: float = 0.8,
    scoring: str = "id",
    beta: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Refine `top_boxes` by score-weighted voting of `all_boxes` (module docstring).

    Args:
        top_boxes: `(K, 4)` xyxy, the boxes kept by NMS. top_scores: `(K,)`.
        all_boxes: `(M, 4)` xyxy, every candidate allowed to vote. all_scores: `(M,)`.
        vote_threshold: a candidate votes when its IoU with the top box is >= this.
        scoring: `id`, `avg`, `iou_avg`, `generalized_avg`, `quasi_sum` or `temp_avg`.
        beta: exponent/temperature of `generalized_avg`, `quasi_sum`, `temp_avg` (> 0).

    Returns:
        `(K, 4)` voted boxes (dtype float32 when `top_boxes` is float32, else float64)
        and `(K,)` scores (float32 when `top_scores` is float32, else float64).
    """
    top_boxes = check_boxes(top_boxes, "top_boxes")
    top_scores = check_scores(top_scores, top_boxes.shape[0], "top_scores")
    all_boxes = check_boxes(all_boxes, "all_boxes")
    all_scores = check_scores(all_scores, all_boxes.shape[0], "all_scores")
    code = scoring_code(scoring)
    threshold = check_threshold(vote_threshold, "vote_threshold")
    beta = check_positive(beta, "beta")
    check_probabilities(all_scores, scoring, "all_scores")
    box_dtype, score_dtype = out_dtype(top_boxes), out_dtype(top_scores)
    if top_boxes.shape[0] == 0:
        return np.zeros((0, 4), dtype=box_dtype), np.zeros(0, dtype=score_dtype)
    boxes, scores = _box_voting_kernel(
        f64(top_boxes), f64(top_scores), f64(all_boxes), f64(all_scores), threshold, code, beta
    )
    return boxes.astype(box_dtype, copy=False), scores.astype(score_dtype, copy=False)
