"""Keypoint voting: the keypoints of a kept box from the candidates that voted for it.

A one-stage pose detector (YOLO-pose, RTMO) gives every candidate box its own `(J, 3)`
keypoints (x, y, confidence). When the merge keeps a box and box voting replaces it by
the score-weighted mean of its voters (the candidates of its class with IoU >= the vote
threshold, voting.py), its keypoints become the vote of the same voters. For joint j,
over voters i with box score s_i and joint confidence c_ij:

    x_j = sum(s_i c_ij x_ij) / sum(s_i c_ij)     y_j likewise
    c_j = sum(s_i c_ij) / sum(s_i)

Why these weights. The coordinates are weighted by s_i, as box voting weights the box
corners (Detectron), times c_ij, because a pass that does not see a joint (occluded, out
of its crop, too small at its scale) says so by a low confidence and should not pull the
joint: in the paper's heatmap averaging such a pass contributes a flat, low map that
barely moves the averaged peak. The confidence is the s-weighted mean of the voters'
confidences rather than the self-weighted sum(s_i c_ij^2) / sum(s_i c_ij): averaging
heatmaps puts at the agreed location the mean of the passes' peak values, so a joint
that one pass sees with confidence 0.9 and three passes miss scores about 0.9 / 4, not
0.9. The self-weighted mean would report 0.9 there: it is never below the s-weighted
one (Cauchy-Schwarz) and follows the most confident pass, discarding the disagreement
that the ensemble is there to measure. The s-weighted mean lies between the voters'
lowest and highest confidence, equals it when they agree, and does not grow with the
number of passes, so the keypoint threshold that `distill select` calibrates keeps its
meaning whatever the plan.

A joint whose weight sum(s_i c_ij) is 0 (every voter gives it confidence 0, or every
voter scores 0) keeps the kept box's own joint. A box nobody votes for (zero area, or a
vote threshold above 1) keeps its own keypoints; a box that only votes for itself gets
them back up to rounding. Scores and confidences must be >= 0: they are weights.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.ensemble._checks import as_real_array
from engine.ensemble.boxes import layout_iou
from engine.ensemble.voting import voter_window


@njit(cache=True, nogil=True, error_model="numpy")
def vote_keypoints(
    ax1: float,
    ay1: float,
    ax2: float,
    ay2: float,
    own: int,
    x1: np.ndarray,
    y1: np.ndarray,
    x2: np.ndarray,
    y2: np.ndarray,
    area: np.ndarray,
    bucket_start: np.ndarray,
    x_min: float,
    inv_cell: float,
    scores: np.ndarray,
    source: np.ndarray,
    keypoints: np.ndarray,
    vote_threshold: float,
    sums: np.ndarray,
    out: np.ndarray,
    o: int,
) -> None:
    """Write to `out[o]` the keypoints voted for the kept box (ax1, ay1, ax2, ay2), input
    row `own`, by the boxes of a layout (boxes.x_bucket_layout) whose IoU with it is >=
    `vote_threshold` (module docstring).

    `scores` and `source` are the layout's `(n,)` scores and input rows in layout order,
    `keypoints` the `(N, J, 3)` keypoints of all input rows, `sums` a `(J, 3)` float64
    scratch. The window and the IoU test are those of voting.vote_one, so the voters are
    exactly the box's; they are added in ascending layout position, as there.
    """
    a_area, lo, hi = voter_window(ax1, ay1, ax2, ay2, bucket_start, x_min, inv_cell,
                                  vote_threshold)
    joints = keypoints.shape[1]
    sums[:] = 0.0  # per joint: sum of s*c, of s*c*x, of s*c*y
    score_sum = 0.0
    for j in range(hi - lo):
        q = np.uint64(lo + j)  # unsigned: no negative-index wraparound code (boxes.py)
        iou = layout_iou(ax1, ay1, ax2, ay2, a_area, x1, y1, x2, y2, area, q)
        if iou >= vote_threshold:
            s = scores[q]
            score_sum += s
            voter = keypoints[source[q]]
            for joint in range(joints):
                w = s * voter[joint, 2]
                sums[joint, 0] += w
                sums[joint, 1] += w * voter[joint, 0]
                sums[joint, 2] += w * voter[joint, 1]
    for joint in range(joints):
        weight = sums[joint, 0]
        if weight > 0.0:  # then score_sum > 0 too: every term is >= 0
            out[o, joint, 0] = sums[joint, 1] / weight
            out[o, joint, 1] = sums[joint, 2] / weight
            out[o, joint, 2] = weight / score_sum
        else:
            out[o, joint, 0] = keypoints[own, joint, 0]
            out[o, joint, 1] = keypoints[own, joint, 1]
            out[o, joint, 2] = keypoints[own, joint, 2]


def check_keypoints(value, count: int) -> np.ndarray:
    """`(count, J, 3)` finite keypoints with confidences >= 0, as a C-contiguous float32
    (float16/float32 input) or float64 (other reals) array; the caller's is not written."""
    array = as_real_array(value, "keypoints")
    if array.ndim != 3 or array.shape[0] != count or array.shape[2] != 3:
        raise ValueError(
            f"keypoints must have shape ({count}, J, 3) (x, y, confidence) to match the boxes, "
            f"got {array.shape}"
        )
    if array.size and not np.isfinite(array).all():
        raise ValueError("keypoints contains NaN or infinite values")
    if array.size and array[..., 2].min() < 0:
        raise ValueError("keypoint confidences must be >= 0: they weigh the vote")
    dtype = np.float32 if array.dtype in (np.float16, np.float32) else np.float64
    return np.ascontiguousarray(array, dtype=dtype)


def check_voter_scores(scores: np.ndarray, score_floor: float) -> None:
    """The scores of the candidates that may vote (> `score_floor`) weigh keypoints: a
    negative one is a ValueError."""
    voters = scores[scores > score_floor]
    if voters.size and voters.min() < 0:
        raise ValueError("scores above score_floor must be >= 0 when keypoints are voted: "
                         "they weigh the vote")
