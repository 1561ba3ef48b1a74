"""Stable descending-score order by LSD radix sort, the visiting order of NMS.

A comparison sort was the largest single cost of the per-image merge. Radix sort on the
64-bit pattern of the float64 scores is O(n) per pass, and passes over a byte that is
the same in every key are skipped: scores that came from float32 (the detector's output)
have 29 zero low mantissa bits and mostly one sign/exponent byte, so about four of the
eight passes run. LSD radix is stable, so equal scores keep their input order, which is
the "lower index first" tie-break of `nms`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_SIGN = np.uint64(1) << np.uint64(63)
_BYTE = np.uint64(0xFF)


@njit(cache=True, nogil=True)
def descending_keys(scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`(n,)` uint64 keys whose ascending order is the descending order of
    `scores[rows]` (float64, finite; -0.0 counts as 0.0)."""
    bits = scores.view(np.uint64)
    keys = np.empty(rows.shape[0], dtype=np.uint64)
    for k in range(rows.shape[0]):
        b = bits[rows[k]]
        if b == _SIGN:
            b = np.uint64(0)  # -0.0 == 0.0
        # IEEE-754 bits ordered as unsigned integers: flip all bits of negatives, set the
        # sign bit of non-negatives; then invert for a descending order.
        ordered = ~b if (b & _SIGN) else (b | _SIGN)
        keys[k] = ~ordered
    return keys


@njit(cache=True, nogil=True)
def radix_order(keys: np.ndarray) -> np.ndarray:
    """Stable ascending argsort of `(n,)` uint64 keys (LSD radix, 8-bit digits)."""
    n = keys.shape[0]
    order = np.arange(n)
    if n < 2:
        return order
    spare = np.empty(n, dtype=np.int64)
    any_bits = np.uint64(0)
    all_bits = ~np.uint64(0)
    for k in range(n):
        any_bits |= keys[k]
        all_bits &= keys[k]
    varying = any_bits ^ all_bits
    counts = np.empty(257, dtype=np.int64)
    for byte in range(8):
        shift = np.uint64(8 * byte)
        if (varying >> shift) & _BYTE == 0:
            continue  # every key has the same digit here: the pass would be a no-op
        counts[:] = 0
        for k in range(n):
            counts[np.int64((keys[order[k]] >> shift) & _BYTE) + 1] += 1
        for d in range(256):
            counts[d + 1] += counts[d]
        for k in range(n):
            digit = np.int64((keys[order[k]] >> shift) & _BYTE)
            spare[counts[digit]] = order[k]
            counts[digit] += 1
        order, spare = spare, order
    return order


@njit(cache=True, nogil=True)
def descending_order(scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`rows` reordered by descending `scores[rows]`; equal scores keep their order in
    `rows` (so ascending `rows` give "lower index first")."""
    return rows[radix_order(descending_keys(scores, rows))]


@njit(cache=True, nogil=True)
def stable_argsort_descending(values: np.ndarray) -> np.ndarray:
    """`np.argsort(-values, kind="mergesort")` of `(n,)` float64 values: indices by
    descending value, equal values in index order, NaN last. Radix sort unless a NaN
    is present (voted scores can be NaN, e.g. a negative score to a fractional power;
    the bit-pattern keys would not put it last)."""
    for k in range(values.shape[0]):
        if np.isnan(values[k]):
            return np.argsort(-values, kind="mergesort")
    return descending_order(values, np.arange(values.shape[0]))
