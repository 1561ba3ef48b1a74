"""Bringing keypoint heatmaps of several test-time transforms back into one frame.

Heatmap pixel (row i, column j) has its centre at (j + 0.5, i + 0.5); a horizontal flip
of a map of width w sends x to w - x, so column j lands on column w - 1 - j exactly.
Transform t of a RoI was computed on the canonical crop enlarged by `scales[t]` about
its centre (and mirrored when `flips[t]`), so canonical point u maps to
u_t = (u - w/2) / s + w/2 (then w - u_t when mirrored) in that transform's heatmap.
Sampling is bilinear between pixel centres, with zeros beyond the map's border.

Heatmaps stay in their own dtype (float32 from a network, or float64): copying millions
of heatmap values to float64 would cost more than the resampling itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from engine.ensemble.resample import average_kernel


def as_heatmaps(value, ndim: int, name: str = "heatmaps") -> np.ndarray:
    """C-contiguous float32 (float16/float32 input) or float64 (other reals) array."""
    array = np.asarray(value)
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise ValueError(f"{name} must be a real numeric array, got dtype {array.dtype}")
    if array.ndim != ndim:
        layout = "(R, J, h, w)" if ndim == 4 else "(T, R, J, h, w)"
        raise ValueError(f"{name} must have shape {layout}, got {array.shape}")
    dtype = np.float32 if array.dtype in (np.float16, np.float32) else np.float64
    return np.ascontiguousarray(array, dtype=dtype)


def pair_permutation(flip_pairs: Sequence[Sequence[int]], num_joints: int) -> np.ndarray:
    """`(J,)` int64 `p` with flipped channel j = original channel p[j], from 0-based pairs."""
    pairs = np.asarray(flip_pairs if len(flip_pairs) else np.zeros((0, 2)), dtype=np.float64)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f"flip_pairs must be (left, right) index pairs, got shape {pairs.shape}")
    if not np.all(pairs == np.round(pairs)):
        raise ValueError("flip_pairs must hold integer joint indices")
    pairs = pairs.astype(np.int64)
    if pairs.size and (pairs.min() < 0 or pairs.max() >= num_joints):
        raise ValueError(f"flip_pairs index out of range for {num_joints} joints")
    flat = pairs.ravel()
    if np.unique(flat).size != flat.size:
        raise ValueError("flip_pairs must name each joint at most once")
    perm = np.arange(num_joints, dtype=np.int64)
    perm[pairs[:, 0]] = pairs[:, 1]
    perm[pairs[:, 1]] = pairs[:, 0]
    return perm


@njit(cache=True, nogil=True)
def _flip_kernel(heatmaps, perm):
    r_count, j_count, h, w = heatmaps.shape
    out = np.empty_like(heatmaps)
    for r in range(r_count):
        for j in range(j_count):
            src = heatmaps[r, perm[j]]
            dst = out[r, j]
            for i in range(h):
                for c in range(w):
                    dst[i, c] = src[i, w - 1 - c]
    return out


def flip_heatmaps(heatmaps: np.ndarray, flip_pairs: Sequence[Sequence[int]]) -> np.ndarray:
    """Mirror `(R, J, h, w)` heatmaps along the width and swap each left/right pair.

    Args:
        heatmaps: `(R, J, h, w)` float32/float64 (float16 is computed as float32).
        flip_pairs: 0-based (left, right) joint index pairs, e.g. engine.coco.schema.FLIP_PAIRS.

    Returns:
        `(R, J, h, w)` new array, float32 or float64; the input is not modified.
    """
    maps = as_heatmaps(heatmaps, 4)
    return _flip_kernel(maps, pair_permutation(flip_pairs, maps.shape[1]))


def average_heatmaps(
    heatmaps: np.ndarray,
    flips: Sequence[bool] | np.ndarray,
    scales: Sequence[float] | np.ndarray,
    flip_pairs: Sequence[Sequence[int]],
) -> np.ndarray:
    """Average T transforms' heatmaps of the same RoIs in the canonical crop frame.

    Args:
        heatmaps: `(T, R, J, h, w)` float32/float64, transform t's heatmaps.
        flips: `(T,)` bool, transform t was computed on the mirrored crop.
        scales: `(T,)` float > 0, transform t's crop was the canonical crop enlarged by
            this factor about its centre (1.0 = the canonical crop).
        flip_pairs: 0-based (left, right) joint pairs swapped by a mirror.

    Returns:
        `(R, J, h, w)` mean of the T maps after flipping back (with the pair swap) and
        bilinear resampling to the canonical frame (zero outside a transform's map).
    """
    maps = as_heatmaps(heatmaps, 5)
    t_count = maps.shape[0]
    if t_count == 0:
        raise ValueError("heatmaps must hold at least one transform (T >= 1)")
    flips = np.asarray(flips)
    if flips.shape != (t_count,) or flips.dtype.kind not in "biu":
        raise ValueError(f"flips must be {t_count} booleans, one per transform, got {flips!r}")
    scales = np.asarray(scales, dtype=np.float64)
    if scales.shape != (t_count,):
        raise ValueError(f"scales must have shape ({t_count},), got {scales.shape}")
    if not np.all(np.isfinite(scales) & (scales > 0)):
        raise ValueError(f"scales must be finite and > 0, got {scales.tolist()}")
    perm = pair_permutation(flip_pairs, maps.shape[2])
    return average_kernel(maps, flips.astype(np.bool_), scales, perm)
