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
more than the IoUs they save.) The per-image merge lays out all classes at once
(`class_layouts`), each class in a slice of shared arrays.

The window loops index the layout with unsigned integers (`np.uint64(lo + j)`): Numba
adds negative-index wraparound code to every access with a signed index it cannot prove
non-negative, and on the benchmark load that made the NMS scans about 1.5x slower.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

# Relative widening of the x1 window: the bound is exact in real arithmetic, the slack
# absorbs floating-point rounding (it only ever adds candidates, never removes a match).
_WINDOW_SLACK = 1e-6

# The layouts of all classes of one image; class_layouts documents the fields.
ClassLayouts = namedtuple(
    "ClassLayouts",
    ["starts", "position_of", "x1", "y1", "x2", "y2", "area", "source", "bucket_start",
     "x_min", "inv_cell"],
)


@njit(cache=True, nogil=True, inline="always")
def box_area(boxes: np.ndarray, i: int) -> float:
    """Area of box `i` of `(N, 4)` float64 xyxy, 0 for degenerate boxes."""
    width = boxes[i, 2] - boxes[i, 0]
    height = boxes[i, 3] - boxes[i, 1]
    if width <= 0.0 or height <= 0.0:
        return 0.0
    return width * height


@njit(cache=True, nogil=True)
def box_areas(boxes: np.ndarray) -> np.ndarray:
    """`(N,)` float64 areas of `(N, 4)` float64 xyxy boxes."""
    areas = np.empty(boxes.shape[0], dtype=np.float64)
    for i in range(boxes.shape[0]):
        areas[i] = box_area(boxes, i)
    return areas


@njit(cache=True, nogil=True, inline="always")
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


@njit(cache=True, nogil=True, inline="always")
def bucket_index(value: float, x_min: float, inv_cell: float, buckets: int) -> int:
    """Bucket of an x1 value, clamped to [0, buckets - 1]. Monotone in `value` (rounded
    float operations are), which is all the window lookup needs. The clamps are
    selects, not branches: window bounds fall outside a class's x1 range at random,
    and the mispredictions cost more than the lookup. A NaN position (an infinite
    `inv_cell` times 0) lands in bucket 0."""
    position = max(0.0, (value - x_min) * inv_cell)  # Numba's max(0.0, NaN) is 0.0
    return np.int64(min(np.float64(buckets - 1), position))


@njit(cache=True, nogil=True)
def class_layouts(boxes: np.ndarray, labels: np.ndarray, rows: np.ndarray,
                  num_classes: int) -> ClassLayouts:
    """The x-bucket layouts of every class of `boxes[rows]`, in one set of arrays.

    `rows` (int64) lists the boxes in visiting order; `labels[rows[k]]` in
    [0, num_classes) is the class of the k-th. Class c's boxes occupy positions
    `starts[c]:starts[c + 1]` of the `(n,)` arrays (x1, y1, x2, y2, area, and `source`,
    the row each position holds), laid out exactly as `x_bucket_layout` would lay out
    that class alone: `n_c` buckets over the class's x1 range, rank order within a
    bucket. `position_of` and `bucket_start` hold class-local positions, so
    `class_layout` can hand the per-class kernels plain views. A fixed number of
    allocations per image, none per class: per-class layouts of ~80 mostly small
    classes cost a dozen small allocations each.
    """
    n = rows.shape[0]
    starts = np.zeros(num_classes + 1, dtype=np.int64)
    x_min = np.full(num_classes, np.inf)
    x_max = np.full(num_classes, -np.inf)
    for k in range(n):
        c = labels[rows[k]]
        starts[c + 1] += 1
        x_min[c] = min(x_min[c], boxes[rows[k], 0])
        x_max[c] = max(x_max[c], boxes[rows[k], 0])
    inv_cell = np.zeros(num_classes, dtype=np.float64)
    for c in range(num_classes):
        count = starts[c + 1]
        starts[c + 1] += starts[c]
        if x_max[c] > x_min[c]:
            inv_cell[c] = count / (x_max[c] - x_min[c])
    # Class c's n_c buckets own the n_c + 1 bucket_start entries from starts[c] + c (the
    # last one is the class's end), so the classes' entries never overlap.
    slot_of = np.empty(n, dtype=np.int64)
    fill = np.zeros(n + num_classes, dtype=np.int64)
    for k in range(n):
        c = labels[rows[k]]
        count = starts[c + 1] - starts[c]
        slot = starts[c] + c + bucket_index(boxes[rows[k], 0], x_min[c], inv_cell[c], count)
        slot_of[k] = slot
        fill[slot] += 1
    bucket_start = np.empty(n + num_classes, dtype=np.int64)
    for c in range(num_classes):
        local = 0
        for slot in range(starts[c] + c, starts[c + 1] + c):
            bucket_start[slot] = local
            local += fill[slot]
            fill[slot] = starts[c] + bucket_start[slot]  # now the bucket's global fill pointer
        bucket_start[starts[c + 1] + c] = local
    rank_fill = starts[:num_classes].copy()
    position_of = np.empty(n, dtype=np.int64)
    x1 = np.empty(n, dtype=np.float64)
    y1 = np.empty(n, dtype=np.float64)
    x2 = np.empty(n, dtype=np.float64)
    y2 = np.empty(n, dtype=np.float64)
    area = np.empty(n, dtype=np.float64)
    source = np.empty(n, dtype=np.int64)
    for k in range(n):
        r = rows[k]
        c = labels[r]
        p = fill[slot_of[k]]
        fill[slot_of[k]] += 1
        position_of[rank_fill[c]] = p - starts[c]
        rank_fill[c] += 1
        x1[p], y1[p], x2[p], y2[p] = boxes[r, 0], boxes[r, 1], boxes[r, 2], boxes[r, 3]
        area[p] = box_area(boxes, r)
        source[p] = r
    return ClassLayouts(starts, position_of, x1, y1, x2, y2, area, source, bucket_start,
                        x_min, inv_cell)


@njit(cache=True, nogil=True, inline="always")
def class_layout(layouts: ClassLayouts, c: int):
    """Class `c` of `layouts` as the tuple `x_bucket_layout` returns, made of views."""
    start, end = layouts.starts[c], layouts.starts[c + 1]
    return (
        layouts.position_of[start:end],
        layouts.x1[start:end],
        layouts.y1[start:end],
        layouts.x2[start:end],
        layouts.y2[start:end],
        layouts.area[start:end],
        layouts.bucket_start[start + c:end + c + 1],
        layouts.x_min[c],
        layouts.inv_cell[c],
    )


@njit(cache=True, nogil=True)
def x_bucket_layout(boxes: np.ndarray, rows: np.ndarray):
    """Boxes `boxes[rows]` as a structure of arrays grouped by x1 bucket.

    A counting sort into `n` equal-width buckets over [min x1, max x1] (O(n), no
    comparison sort); within a bucket the order is the order of `rows`.
    Returns `(position_of, x1, y1, x2, y2, area, bucket_start, x_min, inv_cell)`:
    `position_of[k]` is where `rows[k]` landed, the five `(n,)` float64 arrays are in
    bucket order, bucket b spans positions `bucket_start[b]:bucket_start[b + 1]`.
    The one-class case of `class_layouts`.
    """
    one_class = np.zeros(boxes.shape[0], dtype=np.int64)
    return class_layout(class_layouts(boxes, one_class, rows, 1), 0)


@njit(cache=True, nogil=True, inline="always")
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


@njit(cache=True, nogil=True, inline="always")
def boxes_starting_before(bucket_start, x_min, inv_cell, x):
    """End of the layout positions whose bucket may hold an x1 <= `x`."""
    buckets = bucket_start.shape[0] - 1
    if buckets == 0:
        return 0
    return bucket_start[bucket_index(x, x_min, inv_cell, buckets) + 1]


@njit(cache=True, nogil=True, inline="always")
def suppression_window(bucket_start, x_min, inv_cell, ax1, ax2, a_area, threshold):
    """`[lo, hi)`: layout positions that include every box whose IoU with box a (x1
    `ax1`, x2 `ax2`, area `a_area`) can be > `threshold`, the boxes NMS must test."""
    if threshold < 0.0:
        return 0, bucket_start[bucket_start.shape[0] - 1]  # even IoU 0 exceeds it
    if a_area <= 0.0:
        return 0, 0  # IoU 0 with everything: exceeds no threshold >= 0
    if threshold == 0.0:
        return 0, boxes_starting_before(bucket_start, x_min, inv_cell, ax2)
    return overlap_window(bucket_start, x_min, inv_cell, ax1, ax2, threshold)


@njit(cache=True, nogil=True, inline="always")
def layout_iou(ax1, ay1, ax2, ay2, a_area, x1, y1, x2, y2, area, q):
    """IoU of reference box a (coordinates, area) with layout box `q`; branch-free, so
    the window loops carry no mispredicted branches."""
    width = max(min(ax2, x2[q]) - max(ax1, x1[q]), 0.0)
    height = max(min(ay2, y2[q]) - max(ay1, y1[q]), 0.0)
    inter = width * height
    union = a_area + area[q] - inter
    return inter / union if union > 0.0 else 0.0
