"""Views made on the device for the torch backend: only the original bytes cross the bus.

`engine.label.views.make_views` + `engine.label.batches.make_batches` build every view
on the host and ship all of them: for the paper's plan (shorter side 400..1200, each
mirrored) a 480x640 photo becomes about 17 Mpx of views, some 36x the original's bytes.
Here the original `(H, W, 3)` uint8 image is uploaded once and the resize, mirror and
zero padding run where the detector runs; `make_batches(views, batch_size,
stack=torch.stack)` then gives the same `(B, 3, Hp, Wp)` uint8 batches in the same order.

The resize reproduces OpenCV's `cv2.resize(INTER_LINEAR)` on uint8 images in integer
arithmetic, not `torch.nn.functional.interpolate`. Measured against cv2 5.0 on random
noise and structured images, up- and down-scaling (benchmarks/gpu_check.py and
tests/engine/label/test_device_views.py): `interpolate(mode="bilinear", align_corners=False,
antialias=False)` on float32 and rounded is off by 1 grey level on ~13% of the pixels of
a noise image (~1% of a smooth one), because cv2 quantizes its weights to 1/2048 and
rounds in fixed point; the integer emulation below is bit-exact with it (0 pixels
differ). Equal pixels keep a record independent of where its views were made. What it
reproduces, from OpenCV's resize.cpp:
- source coordinate of output pixel d: f = float32((d + 0.5) * src / dst - 0.5),
  s = floor(f), weights (1 - (f - s), f - s) each rounded to an integer out of 2048;
- columns: a source column left of 0 or from the last one on clamps to it with weights
  (2048, 0); rows: the two source rows are clamped but their weights are not;
- the horizontal pass keeps exact int sums (scale 2048); the vertical pass is the SIMD
  one: ((S0 >> 4) * b0 >> 16) + ((S1 >> 4) * b1 >> 16), then (+ 2) >> 2 and saturation.
OpenCV's exact 2x downscale takes its INTER_AREA path; that is the same 2x2 mean.

torch is imported inside the functions: `engine` must import on a box without it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from engine.label.views import Padding, TransformPlan, View
from engine.scaling import scaled_size

if TYPE_CHECKING:  # annotations only; torch stays a lazy import
    import torch

COEF_BITS = 11  # OpenCV's INTER_RESIZE_COEF_BITS: weights are integers out of 2048
COEF_SCALE = 1 << COEF_BITS


@lru_cache(maxsize=256)
def linear_taps(src: int, dst: int, clamp_weights: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """cv2's INTER_LINEAR taps along one axis of `src` px resized to `dst` px.

    Returns (first, second) `(dst,)` int64 source indices and their `(dst,)` int32
    weights out of 2048. `clamp_weights`: cv2 clamps columns (an edge tap gets weight
    2048 on the edge pixel) but leaves row weights as computed, only the rows clamped.
    """
    scale = 1.0 / (dst / src)  # cv2: scale_x = 1. / inv_scale_x, in double
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = f - s.astype(np.float32)  # float32 like cv2's `fx -= sx`
    if clamp_weights:
        left, right = s < 0, s >= src - 1
        f[left | right] = 0.0
        s[left] = 0
        s[right] = src - 1
    # saturate_cast<short>(w * 2048): round half to even, as np.rint.
    w1 = np.rint(f * np.float32(COEF_SCALE)).astype(np.int32)
    w0 = np.rint((np.float32(1.0) - f) * np.float32(COEF_SCALE)).astype(np.int32)
    return np.clip(s, 0, src - 1), np.clip(s + 1, 0, src - 1), w0, w1


@lru_cache(maxsize=256)
def _taps_on(device: "torch.device", src: int, dst: int, clamp_weights: bool) -> tuple:
    """`linear_taps` as tensors on `device`, uploaded once per (size, size) pair: images
    of a dump share few sizes."""
    import torch

    return tuple(torch.from_numpy(a).to(device, non_blocking=True)
                 for a in linear_taps(src, dst, clamp_weights))


def resize_linear(image: "torch.Tensor", size: tuple[int, int]) -> "torch.Tensor":
    """`image` `(3, H, W)` uint8 (any device, any strides) resized to `size` (h, w) px ->
    `(3, h, w)` uint8 on the same device, equal to cv2.resize(INTER_LINEAR) (module doc)."""
    import torch

    _, height, width = image.shape
    h, w = size
    x0, x1, ax0, ax1 = _taps_on(image.device, width, w, clamp_weights=True)
    y0, y1, by0, by1 = _taps_on(image.device, height, h, clamp_weights=False)
    # Horizontal pass: exact int32 sums scaled by 2048 (max 255 * 2048, no overflow).
    rows = (image.index_select(2, x0).to(torch.int32) * ax0
            + image.index_select(2, x1).to(torch.int32) * ax1)
    # Vertical pass as cv2's SIMD kernel: 16-bit high products, then a rounding shift.
    top = ((rows.index_select(1, y0) >> 4) * by0[:, None]) >> 16
    bottom = ((rows.index_select(1, y1) >> 4) * by1[:, None]) >> 16
    return ((top + bottom + 2) >> 2).clamp_(0, 255).to(torch.uint8)


def upload(image: np.ndarray, device: "torch.device | str") -> "torch.Tensor":
    """`image` `(H, W, 3)` uint8 RGB host array -> the same `(H, W, 3)` uint8 tensor on
    `device`. On CUDA the bytes go through page-locked memory so the copy is a DMA that
    does not block the CPU (non_blocking); the caller's next kernels queue behind it on
    the same stream, so no synchronization is needed before using the result."""
    import torch

    device = torch.device(device)
    host = torch.from_numpy(np.ascontiguousarray(image))
    if device.type != "cuda":
        return host.to(device)
    # torch's caching host allocator reuses the pinned blocks.
    return host.pin_memory().to(device, non_blocking=True)


def make_device_views(image: "torch.Tensor", plan: TransformPlan, padding: Padding) -> list[View]:
    """Every view of `image` `(H, W, 3)` uint8 RGB on its device, in `plan.passes`
    order, as `make_views` makes them: `View.pixels` is a `(3, Hp, Wp)` uint8 tensor on
    the image's device (padded as `padding` says), the other fields equal."""
    height, width = int(image.shape[0]), int(image.shape[1])
    # Planar once per image: gathers along rows and columns of a planar copy ran 1.7x
    # faster than on the strided HWC view (CPU, measured); the copy is one pass.
    chw = image.permute(2, 0, 1).contiguous()
    views: list[View] = []
    resized = chw
    for scale, flipped in plan.passes:
        h, w = scaled_size(height, width, scale, plan.max_size)
        if not flipped or not views or views[-1].scale != scale:
            # The mirrored view reuses the resized pixels, as make_views does.
            resized = chw if (h, w) == (height, width) else resize_linear(chw, (h, w))
        source = resized.flip(2) if flipped else resized
        padded = padding.padded_shape(h, w)
        top, left = padding.offset(h, w, padded)
        pixels = image.new_full((3, *padded), padding.value)
        pixels[:, top:top + h, left:left + w] = source
        views.append(View(pixels, (h, w), (height, width), scale, flipped, (top, left)))
    return views
