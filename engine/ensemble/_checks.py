"""Input checks and dtype policy shared by the public ensembling wrappers.

Every kernel runs on C-contiguous float64 copies of the box inputs: box arrays are
small (tens of thousands of rows), so the copy costs microseconds, and one dtype keeps
the number of compiled signatures (and the test suite's JIT time) small. Outputs come
back as float32 when the caller's input was float32, float64 otherwise.
"""

from __future__ import annotations

import math

import numpy as np


def out_dtype(array: np.ndarray) -> type:
    """float32 when `array` is float32, float64 for every other input dtype."""
    return np.float32 if array.dtype == np.float32 else np.float64


def as_real_array(value, name: str) -> np.ndarray:
    """`value` as an ndarray of a real (bool excluded) numeric dtype, else ValueError."""
    array = np.asarray(value)
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise ValueError(f"{name} must be a real numeric array, got dtype {array.dtype}")
    return array


def check_boxes(value, name: str = "boxes") -> np.ndarray:
    """Validate `(N, 4)` xyxy boxes; returns the original array (not copied)."""
    boxes = as_real_array(value, name)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) xyxy, got {boxes.shape}")
    if boxes.size and not np.isfinite(boxes).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    return boxes


def check_scores(value, count: int, name: str = "scores") -> np.ndarray:
    """Validate `(count,)` finite scores; returns the original array (not copied)."""
    scores = as_real_array(value, name)
    if scores.ndim != 1 or scores.shape[0] != count:
        raise ValueError(
            f"{name} must have shape ({count},) to match the boxes, got {scores.shape}"
        )
    if scores.size and not np.isfinite(scores).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return scores


def check_threshold(value, name: str) -> float:
    """A finite float threshold, else ValueError."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):  # math, not NumPy: a scalar ufunc call costs ~0.4 us
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def f64(array: np.ndarray) -> np.ndarray:
    """A C-contiguous float64 view or copy; the caller's array is never written to."""
    return np.ascontiguousarray(array, dtype=np.float64)


def check_positive(value, name: str) -> float:
    """A finite number > 0 (soft-NMS sigma, scoring beta), else ValueError."""
    number = check_threshold(value, name)
    if number <= 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return number


def method_code(name: str, codes: dict[str, int], kind: str) -> int:
    """The kernel's integer code for a method name, ValueError naming the choices."""
    if name not in codes:
        raise ValueError(f"unknown {kind} {name!r}; expected one of {sorted(codes)}")
    return codes[name]
