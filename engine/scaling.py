"""The image-scale convention of DESIGN.md, shared by training, export and labeling.

For a target shorter side s the factor is f = s / min(h, w), capped so that
max(h, w) * f <= max_size. The resized image has round(h * f) x round(w * f) pixels, so
callers that map boxes back use the per-axis ratios of the actual sizes, not f.
"""

from __future__ import annotations

import cv2
import numpy as np


def scale_factor(height: int, width: int, short_side: float, max_size: float) -> float:
    """f = short_side / min(h, w), capped so that max(h, w) * f <= max_size."""
    factor = short_side / min(height, width)
    if max(height, width) * factor > max_size:
        factor = max_size / max(height, width)
    return factor


def scaled_size(height: int, width: int, short_side: float, max_size: float) -> tuple[int, int]:
    """(h, w) in px of an image resized by `scale_factor`; each side at least 1 px."""
    factor = scale_factor(height, width, short_side, max_size)
    return max(1, round(height * factor)), max(1, round(width * factor))


def resize_to_scale(image: np.ndarray, short_side: float, max_size: float) -> np.ndarray:
    """(H, W, C) image resized (bilinear) to `scaled_size`."""
    h, w = scaled_size(image.shape[0], image.shape[1], short_side, max_size)
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)  # cv2 wants (w, h)


def round_up(value: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is >= `value` (input sizes vs strides)."""
    return -(-int(value) // multiple) * multiple
