"""Device-side views (engine.label.device_views) against the host's make_views +
make_batches, run on the CPU here (the same torch ops run on CUDA).

Tolerance: the device resize emulates cv2.resize(INTER_LINEAR)'s fixed-point uint8
arithmetic, and was bit-exact with cv2 5.0 here on noise and structured images, up- and
down-scaling, including the exact 2x downscale that cv2 routes to INTER_AREA. The test
allows 1 grey level on at most 0.1% of the pixels so that an OpenCV build whose
rounding differs in a corner (a scalar tail, say) still passes, while a float
`interpolate` (1 grey level on ~13% of a noise image's pixels, measured) would fail.
Shapes, order, owners and view metadata must be identical.
"""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from engine.label.batches import make_batches
from engine.label.views import Padding, TransformPlan, make_views

torch = pytest.importorskip("torch")
from engine.label.device_views import (  # noqa: E402
    linear_taps, make_device_views, resize_linear, upload)

MAX_GREY_DIFF = 1
MAX_DIFFERING_FRACTION = 1e-3
STRIDE = 64


def _images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float32)
    smooth = np.stack([xx * 0.7, yy, (xx + yy) * 0.4], axis=2).astype(np.uint8)
    cv2.circle(smooth, (150, 100), 60, (250, 20, 90), -1)
    return {"noise": rng.integers(0, 256, (167, 259, 3), dtype=np.uint8),  # odd sizes
            "smooth": smooth,
            "tall": rng.integers(0, 256, (301, 150, 3), dtype=np.uint8)}


def _assert_close(host: np.ndarray, device: np.ndarray, what: str) -> None:
    assert host.shape == device.shape, f"{what}: shape {device.shape} != {host.shape}"
    diff = np.abs(host.astype(np.int16) - device.astype(np.int16))
    fraction = float(np.count_nonzero(diff)) / diff.size
    assert diff.max() <= MAX_GREY_DIFF and fraction <= MAX_DIFFERING_FRACTION, (
        f"{what}: max |diff| {diff.max()} grey levels, {fraction:.3%} of pixels differ")


@pytest.mark.parametrize("name", ["noise", "smooth", "tall"])
def test_device_views_match_make_views(name):
    image = _images()[name]
    # Down (80), about equal, exactly 2x down for "smooth" (120 of 240), up (2-3x), and a
    # max_size cap that binds for the tall image's upscale.
    plan = TransformPlan.grid((80, 120, 160, 400), flip=True, max_size=700)
    before = image.copy()
    host = make_views(image, plan, Padding(STRIDE))
    device = make_device_views(upload(image, "cpu"), plan, Padding(STRIDE))
    np.testing.assert_array_equal(image, before)  # the input is not mutated
    assert len(device) == len(host)
    for h, d in zip(host, device):
        assert (d.size, d.source_size, d.scale, d.flipped) == (h.size, h.source_size, h.scale, h.flipped)
        assert d.padded_shape == h.padded_shape
        assert d.pixels.dtype == torch.uint8
        _assert_close(h.pixels, d.pixels.numpy(), f"{name} scale {h.scale} flipped {h.flipped}")
        hh, ww = h.size
        assert not d.pixels[:, hh:, :].any() and not d.pixels[:, :, ww:].any(), "padding is not zero"


def test_device_batches_match_make_batches():
    images = _images()
    plan = TransformPlan.grid((90, 150), flip=True, max_size=400)
    chunk = [images["noise"], images["smooth"], images["noise"]]
    host = make_batches([make_views(i, plan, Padding(STRIDE)) for i in chunk], batch_size=3)
    device = make_batches([make_device_views(upload(i, "cpu"), plan, Padding(STRIDE)) for i in chunk], 3, stack=torch.stack)
    assert [b.owners for b in device] == [b.owners for b in host]
    for h, d in zip(host, device):
        _assert_close(h.pixels, d.pixels.numpy(), f"batch {h.owners}")


def test_resize_matches_cv2_both_ways_on_noise():
    """The kernel alone, wider than the plans above: many size pairs, both directions."""
    image = np.random.default_rng(1).integers(0, 256, (97, 131, 3), dtype=np.uint8)
    chw = torch.from_numpy(image).permute(2, 0, 1)
    for h, w in [(1, 1), (13, 7), (48, 65), (96, 130), (98, 132), (200, 262), (333, 451)]:
        expected = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        got = resize_linear(chw, (h, w)).permute(1, 2, 0).numpy()
        _assert_close(expected, got, f"97x131 -> {h}x{w}")
    first, second, w0, w1 = linear_taps(10, 4, clamp_weights=True)
    assert (w0 + w1 == 2048).all() and first.min() >= 0 and second.max() <= 9


def test_device_views_import_without_torch():
    code = ("import sys, engine.label.device_views; "
            "assert 'torch' not in sys.modules, 'engine.label.device_views imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True)
