"""Top-down crop geometry shared by the trainer and the labeling engine (torch-free).

A person box is turned into a *crop box* of fixed aspect (Wc / Hc) about its centre and
padded; the crop box (x1, y1, x2, y2) in continuous image pixels maps linearly onto the
(Wc, Hc) crop, so crop point u = (x - x1) * Wc / (x2 - x1), v = (y - y1) * Hc / (y2 - y1).
Continuous coordinates: pixel (row i, col j) has its centre at (j + 0.5, i + 0.5).
"""

from __future__ import annotations

import cv2
import numpy as np


def person_crop_box(box_xywh: np.ndarray, aspect: float, padding: float = 1.25) -> np.ndarray:
    """Expand boxes to the fixed aspect `aspect` = Wc / Hc about their centre, then pad.

    box_xywh: (4,) or (N, 4) float, COCO [x, y, w, h] in image pixels.
    Returns the same leading shape with 4 float32 values, xyxy in image pixels.
    """
    box = np.asarray(box_xywh, dtype=np.float64)
    x, y, w, h = box[..., 0], box[..., 1], box[..., 2], box[..., 3]
    cx, cy = x + 0.5 * w, y + 0.5 * h
    # Grow the short side (relative to the target aspect) so that the person is never cut.
    wider = w > aspect * h
    h = np.where(wider, w / aspect, h)
    w = np.where(wider, w, h * aspect)
    w, h = w * padding, h * padding
    out = np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)
    return out.astype(np.float32)


def crop_affine(crop_box: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """(2, 3) float64 matrix mapping continuous image points to continuous crop points."""
    x1, y1, x2, y2 = (float(v) for v in crop_box)
    height, width = out_size
    sx, sy = width / max(x2 - x1, 1e-6), height / max(y2 - y1, 1e-6)
    return np.array([[sx, 0.0, -sx * x1], [0.0, sy, -sy * y1]], dtype=np.float64)


def warp_crop(
    image: np.ndarray, crop_box: np.ndarray, out_size: tuple[int, int], border_value: int = 0
) -> np.ndarray:
    """Warp the crop box of `image` (H, W, 3) uint8 to an (Hc, Wc, 3) uint8 crop.

    crop_box: (4,) xyxy in continuous image pixels; out_size: (Hc, Wc). Outside the image
    the crop is filled with `border_value`.
    """
    matrix = crop_affine(crop_box, out_size)
    # cv2 places pixel centres at integer coordinates, we at +0.5: shift in and out.
    # u_cv = u - 0.5 = sx * (x_cv + 0.5) + tx - 0.5.
    cv_matrix = matrix.copy()
    cv_matrix[:, 2] += 0.5 * matrix[:, 0] + 0.5 * matrix[:, 1] - 0.5
    height, width = out_size
    return cv2.warpAffine(
        image,
        cv_matrix,
        (int(width), int(height)),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(border_value, border_value, border_value),
    )


def points_to_crop(points: np.ndarray, crop_box: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """Map image points into crop pixels.

    points: (..., K, 2) float xy in image pixels; crop_box: (..., 4) xyxy broadcasting with
    the points' leading dims; out_size: (Hc, Wc). Returns (..., K, 2) float32 crop pixels.
    """
    pts = np.asarray(points, dtype=np.float64)
    box = np.asarray(crop_box, dtype=np.float64)[..., None, :]
    height, width = out_size
    sx = width / np.maximum(box[..., 2] - box[..., 0], 1e-6)
    sy = height / np.maximum(box[..., 3] - box[..., 1], 1e-6)
    u = (pts[..., 0] - box[..., 0]) * sx
    v = (pts[..., 1] - box[..., 1]) * sy
    return np.stack([u, v], axis=-1).astype(np.float32)


def points_from_crop(points: np.ndarray, crop_box: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """Inverse of `points_to_crop`: crop pixels (..., K, 2) back to image pixels."""
    pts = np.asarray(points, dtype=np.float64)
    box = np.asarray(crop_box, dtype=np.float64)[..., None, :]
    height, width = out_size
    x = pts[..., 0] * (box[..., 2] - box[..., 0]) / width + box[..., 0]
    y = pts[..., 1] * (box[..., 3] - box[..., 1]) / height + box[..., 1]
    return np.stack([x, y], axis=-1).astype(np.float32)
