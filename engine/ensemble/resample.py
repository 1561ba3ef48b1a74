"""The compiled core of `average_heatmaps`: flip back, resample, accumulate.

Performance notes (the kernel runs over T x R x J maps per image, ~6M values):
- Inner loops index 1-D views with their plain loop counter, so LLVM sees consecutive
  accesses and vectorises them; the one reversed access (the mirror) uses unsigned
  indices, because a signed `w - 1 - c` makes Numba insert a negative-index wraparound
  select that stops vectorisation.
- Bilinear resampling is separable. The vertical pass blends two source rows per output
  row (contiguous, vectorised). The horizontal pass would be a gather per pixel; instead
  it is written as a sum over diagonals, out[e] += D_k[e] * v[e + k], where D_k holds,
  tiled over all rows, the weight of the tap at column offset k. Every diagonal is one
  long contiguous multiply-add over the whole map; a crop scale near 1 needs about
  w * |1 - 1/s| + 2 diagonals, padded with zero ones to a multiple of four and applied
  eight (then four) per sweep over the map. Reads that cross into a neighbouring row
  are multiplied by a zero weight, so heatmaps are assumed finite (0 * inf would leak
  NaN).
- Resampling is linear and the crop scaling is centred, so it commutes with the mirror:
  transforms sharing a scale are summed first (mirrored ones flipped back) and resampled
  once, which halves the interpolation work of the usual scale x flip plans.
- Work goes RoI by RoI: the RoI's output and group sums (a few hundred KB) stay in L2
  while its T x J input maps stream through once, in memory order; the mean's 1/T
  rides along (on the identity maps as they are added, in the resampling weights).
  Memory order matters most: reading a mirrored transform's maps in swapped-channel
  order (so that a plain and a mirrored map could be summed in one pass) cost ~50% more
  on the benchmark load, so the left/right swap is applied on the destination side.
  (Also slower, measured on this project's 2-core AMD EPYC VM: map by map with six
  12 KB streams at a time, joint chunks smaller than the RoI, two or four source
  streams or two destinations in one loop, software prefetch (llvm.prefetch) of the
  next RoI or of the next mirrored map, fusing the identity adds with the resampling,
  and gathers, per-row diagonals or 16-column blocks for the horizontal pass.)
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _axis_taps(size, scale):
    """Lower tap index (int64, may lie outside [0, size)) and the two bilinear weights,
    zeroed where a tap lies outside the map (the zero-padding convention)."""
    lo = np.empty(size, dtype=np.int64)
    w_lo = np.empty(size, dtype=np.float64)
    w_hi = np.empty(size, dtype=np.float64)
    half = 0.5 * size
    for k in range(size):
        # Canonical pixel centre u = k + 0.5 sits at u_t = (u - size/2) / s + size/2 in the
        # transform's map; as a continuous index (pixel q centred at q + 0.5): u_t - 0.5.
        position = (k + 0.5 - half) / scale + half - 0.5
        base = np.floor(position)
        frac = position - base
        lo[k] = np.int64(base)
        w_lo[k] = 1.0 - frac if 0 <= lo[k] <= size - 1 else 0.0
        w_hi[k] = frac if 0 <= lo[k] + 1 <= size - 1 else 0.0
    return lo, w_lo, w_hi


@njit(cache=True, nogil=True)
def _vertical_plan(h, scale, like):
    """Per output row: clamped source rows and weights in the maps' dtype."""
    lo, w_lo, w_hi = _axis_taps(h, scale)
    rows_lo = np.empty(h, dtype=np.int64)
    rows_hi = np.empty(h, dtype=np.int64)
    for i in range(h):
        rows_lo[i] = lo[i] if w_lo[i] != 0.0 else 0
        rows_hi[i] = lo[i] + 1 if w_hi[i] != 0.0 else 0
    return rows_lo, rows_hi, w_lo.astype(like.dtype), w_hi.astype(like.dtype)


@njit(cache=True, nogil=True)
def _horizontal_plan(h, w, scale, like):
    """(first diagonal offset, padding, (K, h*w) tiled diagonal weights)."""
    lo, w_lo, w_hi = _axis_taps(w, scale)
    first, last = w, -w
    for c in range(w):
        if w_lo[c] != 0.0:
            first, last = min(first, lo[c] - c), max(last, lo[c] - c)
        if w_hi[c] != 0.0:
            first, last = min(first, lo[c] + 1 - c), max(last, lo[c] + 1 - c)
    if first > last:  # every tap outside the map: the transform contributes zeros
        return 0, 0, np.zeros((0, h * w), dtype=like.dtype)
    # Zero diagonals pad the count to a multiple of four: one sweep of eight costs less
    # than a sweep of four plus one of two and one of one.
    last = first + (last - first + 4) // 4 * 4 - 1
    tiles = np.zeros((last - first + 1, h * w), dtype=like.dtype)
    for c in range(w):
        if w_lo[c] != 0.0:
            tiles[lo[c] - c - first, c] += w_lo[c]
        if w_hi[c] != 0.0:
            tiles[lo[c] + 1 - c - first, c] += w_hi[c]
    for i in range(1, h):
        tiles[:, i * w : (i + 1) * w] = tiles[:, :w]
    return first, max(-first, last, 0), tiles


@njit(cache=True, nogil=True, inline="always")
def _add_map(dst, src, h, w, mirror, assign, factor):
    """dst += factor * src (dst = factor * src when `assign`) for flat (h*w,) maps,
    mirrored along the width if asked. Assigning the first contribution saves zeroing
    the buffer; the factor (1/T into the output, 1 into a group sum) saves a scaling
    pass over the output (the loop is bound by memory, the multiply is free)."""
    if not mirror:
        if assign:
            for e in range(h * w):
                dst[e] = src[e] * factor
        else:
            for e in range(h * w):
                dst[e] += src[e] * factor
        return
    last = np.uint64(w - 1)
    for i in range(h):
        d = dst[i * w : (i + 1) * w]
        s = src[i * w : (i + 1) * w]
        if assign:
            for c in range(np.uint64(w)):
                d[c] = s[last - c] * factor
        else:
            for c in range(np.uint64(w)):
                d[c] += s[last - c] * factor


@njit(cache=True, nogil=True, inline="always")
def _add_resampled(dst, src, rows_lo, rows_hi, a, b, first, pad, tiles, vbuf, w):
    """dst += bilinear resampling of `src`, both flat (h*w,) maps."""
    h = rows_lo.shape[0]
    for i in range(h):
        row = vbuf[pad + i * w : pad + (i + 1) * w]
        top = src[rows_lo[i] * w : (rows_lo[i] + 1) * w]
        bottom = src[rows_hi[i] * w : (rows_hi[i] + 1) * w]
        for c in range(w):
            row[c] = a[i] * top[c] + b[i] * bottom[c]
    size = h * w
    count = tiles.shape[0]
    base = pad + first
    # Eight (then four) diagonals per sweep: one load and one store of dst serve them
    # all. (For the 7 diagonals of scales 0.9 and 1.1, padded to 8, one sweep of eight
    # took ~20% less compute than sweeps of 4 + 2 + 1.) The plan pads the count to a
    # multiple of four, so no sweep of two or one is needed.
    q = 0
    while q + 8 <= count:
        w0, w1, w2, w3 = tiles[q], tiles[q + 1], tiles[q + 2], tiles[q + 3]
        w4, w5, w6, w7 = tiles[q + 4], tiles[q + 5], tiles[q + 6], tiles[q + 7]
        v = vbuf[base + q : base + q + size + 7]
        for e in range(size):
            near = (w0[e] * v[e] + w1[e] * v[e + 1]) + (w2[e] * v[e + 2] + w3[e] * v[e + 3])
            far = (w4[e] * v[e + 4] + w5[e] * v[e + 5]) + (w6[e] * v[e + 6] + w7[e] * v[e + 7])
            dst[e] += near + far
        q += 8
    if q < count:  # four left at most, the count being a multiple of four
        w0, w1, w2, w3 = tiles[q], tiles[q + 1], tiles[q + 2], tiles[q + 3]
        v0 = vbuf[base + q : base + q + size]
        v1 = vbuf[base + q + 1 : base + q + 1 + size]
        v2 = vbuf[base + q + 2 : base + q + 2 + size]
        v3 = vbuf[base + q + 3 : base + q + 3 + size]
        for e in range(size):
            dst[e] += (w0[e] * v0[e] + w1[e] * v1[e]) + (w2[e] * v2[e] + w3[e] * v3[e])


@njit(cache=True, nogil=True)
def average_kernel(heatmaps, flips, scales, perm):
    """`(T, R, J, h, w)` C-contiguous maps -> `(R, J, h, w)` mean in the canonical frame."""
    t_count, r_count, j_count, h, w = heatmaps.shape
    like = np.empty(0, dtype=heatmaps.dtype)  # carries the dtype into the plans
    group_scales = np.unique(scales)
    group_of = np.searchsorted(group_scales, scales)
    g_count = group_scales.shape[0]
    identity = group_scales == 1.0
    inv = heatmaps.dtype.type(1.0 / t_count)
    one = heatmaps.dtype.type(1.0)
    plans = []
    max_pad = 0
    for g in range(g_count):
        # (The identity group's plan is a trivial one and is never used.)
        rows_lo, rows_hi, a, b = _vertical_plan(h, group_scales[g], like)
        a *= inv  # the mean's 1/T, folded into the resampling weights
        b *= inv
        first, pad, tiles = _horizontal_plan(h, w, group_scales[g], like)
        max_pad = max(max_pad, pad)
        plans.append((rows_lo, rows_hi, a, b, first, tiles))
    hw = h * w
    source = heatmaps.reshape(t_count * r_count * j_count * hw)
    out = np.empty(r_count * j_count * hw, dtype=heatmaps.dtype)
    has_identity = identity.any()
    started = np.zeros(g_count, dtype=np.bool_)
    # Per-RoI sums of each scale group, resampled once per group and joint (L2-sized:
    # groups x J maps).
    group_sums = np.empty((g_count, j_count * hw), dtype=heatmaps.dtype)
    vbuf = np.zeros(hw + 2 * max_pad, dtype=heatmaps.dtype)
    for r in range(r_count):
        roi_out = out[r * j_count * hw : (r + 1) * j_count * hw]
        if not has_identity:
            roi_out[:] = 0.0  # only resampled groups add into it
        started[:] = False
        for t in range(t_count):
            g = group_of[t]
            target = roi_out if identity[g] else group_sums[g]
            assign = not started[g]
            started[g] = True
            # Source maps are read in memory order (one contiguous block of J maps per
            # transform and RoI), which keeps the hardware prefetchers streaming; the
            # left/right swap is applied on the destination side (perm is an involution).
            block = ((t * r_count + r) * j_count) * hw
            for j_src in range(j_count):
                j = perm[j_src] if flips[t] else j_src
                _add_map(target[j * hw : (j + 1) * hw],
                         source[block + j_src * hw : block + (j_src + 1) * hw], h, w, flips[t],
                         assign, inv if identity[g] else one)
        for g in range(g_count):
            if identity[g]:
                continue
            rows_lo, rows_hi, a, b, first, tiles = plans[g]
            for j in range(j_count):
                # Every group uses the widest padding, so the borders of vbuf stay zero.
                _add_resampled(roi_out[j * hw : (j + 1) * hw],
                               group_sums[g, j * hw : (j + 1) * hw],
                               rows_lo, rows_hi, a, b, first, max_pad, tiles, vbuf, w)
    return out.reshape(r_count, j_count, h, w)
