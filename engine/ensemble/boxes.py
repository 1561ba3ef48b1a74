"""IoU of continuous xyxy boxes, and the x-sorted layout the NMS and voting kernels share.

Coordinates are continuous (no "+1" pixel, unlike Detectron): a box's width is x2 - x1.
A box with x2 <= x1 or y2 <= y1 has zero area and overlaps nothing, so its IoU with any
box (itself included) is 0: the 0/0 case is defined rather than left as NaN.

IoU is always evaluated as inter / (area_a + area_b - inter) with `a` the reference
(kept/top) box; the NumPy references in the tests use the same order, so kept indices
match exactly even for boxes sitting right on a threshold.

Speed comes from pruning rather than from a full IoU matrix. Boxes are laid out grouped
by x1 into equal-width buckets (a counting sort, structure of arrays); for a threshold
t > 0, IoU(a, b) >= t forces the intersection width to be at least t * w_a and
w_b <= w_a / t, which bounds b's x1 to [x1_a + t*w_a - w_a/t, x2_a - t*w_a]. The buckets
covering that interval are found in O(1), and only their boxes get an IoU. (A sorted
layout with binary searches was slower: the sort and the mispredicted searches cost
more than the IoUs they save.)
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Relative widening of the x1 window: the bound is exact in real arithmetic, the slack
# absorbs floating-point rounding (it only ever adds candidates, never removes a match).
_WINDOW_SLACK = 1e-6


@njit(cache=True, inline="always")
def box_area(boxes: np.ndarray, i: int) -> float:
    """Area of box `i` of `(N, 4)` float64 xyxy, 0 for degenerate boxes."""
    width = boxes[i, 2] - boxes[i, 0]
    height = boxes[i, 3] - boxes[i, 1]
    if width <= 0.0 or height <= 0.0:
        return 0.0
    return width * height


@njit(cache=True)
def box_areas(boxes: np.ndarray) -> np.ndarray:
    """`(N,)` float64 areas of `(N, 4)` float64 xyxy boxes."""
    areas = np.empty(boxes.shape[0], dtype=np.float64)
    for i in range(boxes.shape[0]):
        areas[i] = box_area(boxes, i)
    return areas


@njit(cache=True, inline="always")
def pair_iou(a: np.ndarray, i: int, area_a: float, b: np.ndarray, j: int, area_b: float) -> float:
    """IoU of box `a[i]` (the reference box) and box `b[j]` given their areas."""
    width = min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0])
    if width <= 0.0:
        return 0.0
    height = min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1])
    if height <= 0.0:
        return 0.0
    inter = width * height
    union = area_a + area_b - inter
    if union <= 0.0:
        return 0.0
    return inter / union


@njit(cache=True)
def x_bucket_layout(boxes: np.ndarray, rows: np.ndarray):
    """Boxes `boxes[rows]` as a structure of arrays grouped by x1 bucket.

    A counting sort into `n` equal-width buckets over [min x1, max x1] (O(n), no
    comparison sort); within a bucket the order is the order of `rows`.
    Returns `(position_of, x1, y1, x2, y2, area, bucket_start, x_min, inv_cell)`:
    `position_of[k]` is where `rows[k]` landed, the five `(n,)` float64 arrays are in
    bucket order, bucket b spans positions `bucket_start[b]:bucket_start[b + 1]`.
    """
    n = rows.shape[0]
    x_min = np.inf
    x_max = -np.inf
    for k in range(n):
        x_min = min(x_min, boxes[rows[k], 0])
        x_max = max(x_max, boxes[rows[k], 0])
    inv_cell = n / (x_max - x_min) if x_max > x_min else 0.0
    bucket_of = np.empty(n, dtype=np.int64)
    bucket_start = np.zeros(n + 2, dtype=np.int64)
    for k in range(n):
        b = bucket_index(boxes[rows[k], 0], x_min, inv_cell, n)
        bucket_of[k] = b
        bucket_start[b + 2] += 1
    for b in range(2, n + 2):
        bucket_start[b] += bucket_start[b - 1]
    # bucket_start[b + 1] is now the fill pointer of bucket b; the scatter below advances
    # it to the end of bucket b, which is the start of bucket b + 1.
    position_of = np.empty(n, dtype=np.int64)
    x1 = np.empty(n, dtype=np.float64)
    y1 = np.empty(n, dtype=np.float64)
    x2 = np.empty(n, dtype=np.float64)
    y2 = np.empty(n, dtype=np.float64)
    area = np.empty(n, dtype=np.float64)
    for k in range(n):
        p = bucket_start[bucket_of[k] + 1]
        bucket_start[bucket_of[k] + 1] += 1
        r = rows[k]
        position_of[k] = p
        x1[p], y1[p], x2[p], y2[p] = boxes[r, 0], boxes[r, 1], boxes[r, 2], boxes[r, 3]
        area[p] = box_area(boxes, r)
    return position_of, x1, y1, x2, y2, area, bucket_start[: n + 1], x_min, inv_cell


@njit(cache=True, inline="always")
def bucket_index(value: float, x_min: float, inv_cell: float, buckets: int) -> int:
    """Bucket of an x1 value, clamped to [0, buckets - 1]. Monotone in `value` (rounded
    float operations are), which is all the window lookup needs."""
    position = (value - x_min) * inv_cell
    if position <= 0.0:
        return 0
    if position >= buckets - 1:
        return buckets - 1
    return np.int64(position)


@njit(cache=True, inline="always")
def overlap_window(bucket_start, x_min, inv_cell, ax1, ax2, threshold):
    """`[lo, hi)`: layout positions that include every box able to reach IoU >=
    `threshold` (> 0) with a box of positive width spanning [ax1, ax2]: the buckets
    covering the x1 bound of the module docstring."""
    buckets = bucket_start.shape[0] - 1
    if buckets == 0:
        return 0, 0  # an empty layout
    width = ax2 - ax1
    slack = _WINDOW_SLACK * (abs(ax1) + abs(ax2) + width / threshold) + 1e-12
    lower = ax1 + threshold * width - width / threshold - slack
    upper = ax2 - threshold * width + slack
    lo = bucket_start[bucket_index(lower, x_min, inv_cell, buckets)]
    hi = bucket_start[bucket_index(upper, x_min, inv_cell, buckets) + 1]
    return lo, hi


@njit(cache=True, inline="always")
def boxes_starting_before(bucket_start, x_min, inv_cell, x):
    """End of the layout positions whose bucket may hold an x1 <= `x`."""
    buckets = bucket_start.shape[0] - 1
    if buckets == 0:
        return 0
    return bucket_start[bucket_index(x, x_min, inv_cell, buckets) + 1]


@njit(cache=True, inline="always")
def layout_iou(ax1, ay1, ax2, ay2, a_area, x1, y1, x2, y2, area, q):
    """IoU of reference box a (coordinates, area) with layout box `q`; branch-free, so
    the window loops carry no mispredicted branches."""
    width = max(min(ax2, x2[q]) - max(ax1, x1[q]), 0.0)
    height = max(min(ay2, y2[q]) - max(ay1, y1[q]), 0.0)
    inter = width * height
    union = a_area + area[q] - inter
    return inter / union if union > 0.0 else 0.0
