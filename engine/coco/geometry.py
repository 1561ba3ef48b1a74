"""Box geometry in continuous pixel coordinates (DESIGN.md, Conventions).

A box [x1, y1, x2, y2] ("xyxy", what models and the ensemble use) has width x2 - x1,
no +1 pixel; COCO files store [x, y, w, h] ("xywh"). IoU and intersections are computed
on xyxy boxes only: xywh boxes go through `xywh_to_xyxy` first. (The Numba kernels of
`engine.ensemble` keep their own compiled pairwise IoU on the labeling hot path; a test
holds the two to the same values.)
"""

from __future__ import annotations

import numpy as np


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """`(..., 4)` [x, y, w, h] of `(..., 4)` [x1, y1, x2, y2] boxes; a new array of the
    input's dtype, so that float32 stays float32 bit for bit."""
    boxes = np.asarray(boxes)
    return np.concatenate([boxes[..., :2], boxes[..., 2:] - boxes[..., :2]], axis=-1)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """`(..., 4)` [x1, y1, x2, y2] of `(..., 4)` [x, y, w, h] boxes; a new array of the
    input's dtype."""
    boxes = np.asarray(boxes)
    return np.concatenate([boxes[..., :2], boxes[..., :2] + boxes[..., 2:]], axis=-1)


def _as_boxes(boxes: np.ndarray) -> np.ndarray:
    return np.asarray(boxes, np.float64).reshape(-1, 4)


def box_area(boxes: np.ndarray) -> np.ndarray:
    """`(N,)` float64 areas of `(N, 4)` xyxy boxes; 0 for a box with x2 < x1 or y2 < y1."""
    boxes = _as_boxes(boxes)
    return np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)


def box_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`(N, M)` float64 intersection areas of xyxy boxes `a` `(N, 4)` and `b` `(M, 4)`."""
    a, b = _as_boxes(a), _as_boxes(b)
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    return np.prod(np.clip(high - low, 0, None), axis=2)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`(N, M)` float64 IoU of xyxy boxes `a` `(N, 4)` and `b` `(M, 4)` (pixels, any
    float or int dtype); 0 where the union is empty. The inputs are not modified."""
    inter = box_intersection(a, b)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
