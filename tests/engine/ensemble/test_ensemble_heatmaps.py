"""Heatmap flip-back, multi-transform averaging, argmax and image mapping vs NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from engine.coco.schema import FLIP_PAIRS, flip_permutation
from engine.ensemble import average_heatmaps, flip_heatmaps, heatmap_argmax, keypoints_to_image

# ---------------------------------------------------------------- NumPy references


def ref_perm(pairs, joints):
    perm = np.arange(joints)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


def ref_flip(maps, pairs):
    return maps[:, ref_perm(pairs, maps.shape[1])][..., ::-1]


def ref_resample(maps, scale, mirror):
    """Bilinear resampling of (R, J, h, w) maps into the canonical frame, zero padded."""
    h, w = maps.shape[-2:]
    padded = np.pad(maps.astype(np.float64), [(0, 0), (0, 0), (1, 1), (1, 1)])

    def taps(size, flip):
        u = (np.arange(size) + 0.5 - size / 2) / scale + size / 2
        if flip:
            u = size - u
        pos = u - 0.5
        base = np.floor(pos)
        frac = pos - base
        # +1 for the padding; anything beyond the padded border is zero as well.
        lo = np.clip(base.astype(int) + 1, 0, size + 1)
        hi = np.clip(base.astype(int) + 2, 0, size + 1)
        inside_lo = (base >= -1) & (base <= size)
        inside_hi = (base + 1 >= -1) & (base + 1 <= size)
        return lo, hi, np.where(inside_lo, 1 - frac, 0), np.where(inside_hi, frac, 0)

    x_lo, x_hi, wx_lo, wx_hi = taps(w, mirror)
    y_lo, y_hi, wy_lo, wy_hi = taps(h, False)
    rows = (padded[:, :, y_lo, :] * wy_lo[:, None] + padded[:, :, y_hi, :] * wy_hi[:, None])
    return rows[..., x_lo] * wx_lo + rows[..., x_hi] * wx_hi


def ref_average(maps, flips, scales, pairs):
    perm = ref_perm(pairs, maps.shape[2])
    total = 0
    for t in range(maps.shape[0]):
        m = maps[t][:, perm] if flips[t] else maps[t]
        total = total + ref_resample(m, scales[t], flips[t])
    return total / maps.shape[0]


def ref_argmax(maps, refine):
    r, j, h, w = maps.shape
    flat = maps.reshape(r, j, h * w).astype(np.float64)
    idx = flat.argmax(-1)
    py, px = np.divmod(idx, w)
    value = np.take_along_axis(flat, idx[..., None], -1)[..., 0]
    x, y = px + 0.5, py + 0.5
    m = maps.astype(np.float64)

    def at(dy, dx):
        yy, xx = np.clip(py + dy, 0, h - 1), np.clip(px + dx, 0, w - 1)
        return m[np.arange(r)[:, None], np.arange(j)[None, :], yy, xx]

    if refine == "quarter":
        x = x + np.where((px > 0) & (px < w - 1), 0.25 * np.sign(at(0, 1) - at(0, -1)), 0)
        y = y + np.where((py > 0) & (py < h - 1), 0.25 * np.sign(at(1, 0) - at(-1, 0)), 0)
    elif refine == "dark":
        hood = np.stack([at(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
        ok = (px >= 1) & (px <= w - 2) & (py >= 1) & (py <= h - 2) & np.all(hood > 0, axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            L = np.log(np.where(hood > 0, hood, 1.0))
            dx, dy = 0.5 * (L[5] - L[3]), 0.5 * (L[7] - L[1])
            dxx, dyy = L[5] - 2 * L[4] + L[3], L[7] - 2 * L[4] + L[1]
            dxy = 0.25 * (L[8] - L[6] - L[2] + L[0])
            det = dxx * dyy - dxy**2
            ok &= (det > 0) & (dxx < 0)
            ox = np.clip(-(dyy * dx - dxy * dy) / det, -1, 1)
            oy = np.clip(-(dxx * dy - dxy * dx) / det, -1, 1)
        x, y = x + np.where(ok, ox, 0), y + np.where(ok, oy, 0)
    elif refine == "window":
        # Positive-value-weighted mean of the pixel centres in the clipped 7x7 window.
        for a in range(r):
            for b in range(j):
                rows = slice(max(py[a, b] - 3, 0), min(py[a, b] + 4, h))
                cols = slice(max(px[a, b] - 3, 0), min(px[a, b] + 4, w))
                weights = np.clip(m[a, b, rows, cols], 0, None)
                if weights.sum() > 0:
                    cy, cx = np.mgrid[rows, cols] + 0.5
                    x[a, b] = (weights * cx).sum() / weights.sum()
                    y[a, b] = (weights * cy).sum() / weights.sum()
    return np.stack([x, y, value], axis=-1)


def gaussian_maps(centres, h, w, sigma):
    """(R, J, h, w) float64 Gaussians at continuous (x, y) centres (R, J, 2)."""
    xs, ys = np.arange(w) + 0.5, np.arange(h) + 0.5
    cx, cy = centres[..., 0, None, None], centres[..., 1, None, None]
    return np.exp(-((xs - cx) ** 2 + (ys[:, None] - cy) ** 2) / (2 * sigma**2))


def random_maps(rng, shape, dtype):
    """Smooth-ish random maps: a few Gaussians plus noise, ties from quantisation."""
    r, j, h, w = shape
    centres = rng.uniform(-2, [w + 2, h + 2], size=(r, j, 2))
    maps = gaussian_maps(centres, h, w, rng.uniform(0.8, 3.0))
    maps += rng.uniform(0, 0.3, size=maps.shape)
    if rng.random() < 0.3:
        maps = np.round(maps * 4) / 4  # plateaus: exact ties and equal neighbours
    if rng.random() < 0.2:
        maps -= 0.5  # non-positive values around the peak: DARK must fall back
    return maps.astype(dtype)


# ---------------------------------------------------------------- flip


def test_flip_matches_reference_and_is_an_involution():
    rng = np.random.default_rng(0)
    for k in range(200):
        dtype = np.float32 if k % 2 else np.float64
        maps = rng.normal(size=(int(rng.integers(0, 4)), 17, int(rng.integers(1, 9)),
                                int(rng.integers(1, 9)))).astype(dtype)
        before = maps.copy()
        flipped = flip_heatmaps(maps, FLIP_PAIRS)
        assert flipped.dtype == dtype
        np.testing.assert_array_equal(flipped, ref_flip(maps, FLIP_PAIRS))
        np.testing.assert_array_equal(flip_heatmaps(flipped, FLIP_PAIRS), maps)
        np.testing.assert_array_equal(maps, before)


def test_flip_follows_the_coordinate_convention():
    maps = np.zeros((1, 17, 4, 6), np.float32)
    maps[0, 5, 2, 1] = 1.0  # left shoulder at x = 1.5
    flipped = flip_heatmaps(maps, FLIP_PAIRS)
    # x -> w - x: 6 - 1.5 = 4.5, column 4; and the channel becomes the right shoulder.
    assert flipped[0, flip_permutation()[5], 2, 4] == 1.0 and flipped.sum() == 1.0


@pytest.mark.parametrize(
    "pairs, message",
    [([(0, 17)], "out of range"), ([(1, 2), (2, 3)], "at most once"), ([(1, 2, 3)], "pairs"),
     ([(0.5, 1)], "integer")],
)
def test_flip_rejects_bad_pairs(pairs, message):
    with pytest.raises(ValueError, match=message):
        flip_heatmaps(np.zeros((1, 17, 2, 2)), pairs)


def test_flip_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\(R, J, h, w\)"):
        flip_heatmaps(np.zeros((17, 2, 2)), FLIP_PAIRS)


# ---------------------------------------------------------------- average


def test_average_matches_reference_on_random_cases():
    rng = np.random.default_rng(1)
    for k in range(300):
        dtype = np.float32 if k % 2 else np.float64
        t, r = int(rng.integers(1, 5)), int(rng.integers(0, 3))
        h, w = int(rng.integers(1, 12)), int(rng.integers(1, 12))
        maps = rng.uniform(0, 1, size=(t, r, 17, h, w)).astype(dtype)
        flips = rng.random(t) < 0.5
        scales = rng.choice([1.0, 0.7, 0.9, 1.1, 1.25, 2.0, 0.3], size=t)
        before = maps.copy()
        out = average_heatmaps(maps, flips, scales, FLIP_PAIRS)
        assert out.shape == (r, 17, h, w) and out.dtype == dtype
        np.testing.assert_allclose(out, ref_average(maps, flips, scales, FLIP_PAIRS),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(maps, before)


def test_average_brings_every_transform_back_to_the_canonical_peak():
    """Render one keypoint as each transform would see it, then recover it."""
    h, w, sigma = 64, 48, 2.0
    true_xy = np.array([19.3, 37.8])
    joint = 7  # left elbow; a mirrored crop shows it as the right elbow
    flips = np.array([False, True, False, True, False, True])
    scales = np.array([1.0, 1.0, 1.2, 1.2, 0.85, 0.85])
    maps = np.zeros((len(flips), 1, 17, h, w))
    for t, (flip, s) in enumerate(zip(flips, scales)):
        x = (true_xy[0] - w / 2) / s + w / 2
        y = (true_xy[1] - h / 2) / s + h / 2
        channel = flip_permutation()[joint] if flip else joint
        centre = np.array([[[w - x if flip else x, y]]])
        maps[t, 0, channel] = gaussian_maps(centre, h, w, sigma / s)[0, 0]
    averaged = average_heatmaps(maps.astype(np.float32), flips, scales, FLIP_PAIRS)
    peak = heatmap_argmax(averaged, refine="dark")[0, joint]
    np.testing.assert_allclose(peak[:2], true_xy, atol=0.05)
    assert averaged[0, flip_permutation()[joint]].max() == 0.0


def test_average_zero_outside_a_shrunk_crop():
    maps = np.ones((1, 1, 17, 8, 8), np.float64)
    out = average_heatmaps(maps, [False], [0.5], [])
    # Scale 0.5: u_t = 2u - 4, so the centres of columns 0 and 1 (u = 0.5, 1.5) sample
    # x_t = -3 and -1, beyond the map; column 4 samples x_t = 5, inside.
    assert out[0, 0, 4, 0] == 0.0 and out[0, 0, 4, 1] == 0.0 and out[0, 0, 4, 4] == 1.0
    # Scale 0.8: column 0 samples x_t = -0.375, 0.875 px left of pixel 0's centre: it
    # blends the zero border (weight 0.875) with pixel 0 (weight 0.125).
    out = average_heatmaps(maps, [False], [0.8], [])
    np.testing.assert_allclose(out[0, 0, 4, :2], [0.125, 1.0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(heatmaps=np.zeros((2, 17, 4, 4))), r"\(T, R, J, h, w\)"),
        (dict(heatmaps=np.zeros((0, 1, 17, 4, 4)), flips=[], scales=[]), "T >= 1"),
        (dict(flips=[True]), "flips"),
        (dict(flips=[0.5, 1.0]), "flips"),
        (dict(scales=[1.0, 0.0]), "> 0"),
        (dict(scales=[1.0]), "scales"),
        (dict(flip_pairs=[(0, 40)]), "out of range"),
    ],
)
def test_average_rejects_bad_arguments(kwargs, message):
    args = dict(heatmaps=np.zeros((2, 1, 17, 4, 4)), flips=[False, True], scales=[1.0, 1.1],
                flip_pairs=FLIP_PAIRS)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        average_heatmaps(**args)


# ---------------------------------------------------------------- argmax


@pytest.mark.parametrize("refine", [None, "quarter", "dark", "window"])
def test_argmax_matches_reference_on_random_cases(refine):
    rng = np.random.default_rng(2)
    for k in range(400):
        dtype = np.float32 if k % 2 else np.float64
        shape = (int(rng.integers(0, 4)), int(rng.integers(1, 5)), int(rng.integers(1, 10)),
                 int(rng.integers(1, 10)))
        maps = random_maps(rng, shape, dtype)
        before = maps.copy()
        out = heatmap_argmax(maps, refine)
        assert out.shape == shape[:2] + (3,) and out.dtype == dtype
        np.testing.assert_allclose(out, ref_argmax(maps, refine), rtol=1e-5, atol=1e-4)
        np.testing.assert_array_equal(maps, before)


def test_dark_recovers_a_subpixel_gaussian_peak():
    centres = np.array([[[10.2, 7.9], [3.71, 12.45], [20.5, 20.5]]])
    maps = gaussian_maps(centres, 24, 32, sigma=2.0)
    np.testing.assert_allclose(heatmap_argmax(maps, "dark")[..., :2], centres, atol=1e-6)
    plain = heatmap_argmax(maps, None)
    np.testing.assert_array_equal(plain[0, :, :2], [[10.5, 7.5], [3.5, 12.5], [20.5, 20.5]])
    quarter = heatmap_argmax(maps, "quarter")
    np.testing.assert_array_equal(quarter[0, :, :2], [[10.25, 7.75], [3.75, 12.25], [20.5, 20.5]])
    np.testing.assert_allclose(plain[..., 2], maps.reshape(1, 3, -1).max(-1))


def test_argmax_rejects_bad_arguments():
    with pytest.raises(ValueError, match="refine"):
        heatmap_argmax(np.zeros((1, 1, 2, 2)), "subpixel")
    with pytest.raises(ValueError, match="non-empty"):
        heatmap_argmax(np.zeros((1, 1, 0, 2)))
    with pytest.raises(ValueError, match="numeric"):
        heatmap_argmax(np.array([[[["a"]]]]))


# ---------------------------------------------------------------- to image


def test_keypoints_to_image_matches_reference():
    rng = np.random.default_rng(4)
    for k in range(200):
        dtype = np.float32 if k % 2 else np.float64
        r, j = int(rng.integers(0, 5)), int(rng.integers(1, 18))
        xy = rng.uniform(0, 64, size=(r, j, 3)).astype(dtype)
        corner = rng.uniform(0, 500, size=(r, 2))
        rois = np.concatenate([corner, corner + rng.uniform(0, 300, size=(r, 2))], 1)
        before = (xy.copy(), rois.copy())
        out = keypoints_to_image(xy, rois, (64, 48))
        ref = rois[:, None, :2] + xy[..., :2].astype(np.float64) * (
            (rois[:, None, 2:] - rois[:, None, :2]) / np.array([48.0, 64.0]))
        assert out.shape == (r, j, 2) and out.dtype == dtype
        np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-4)
        np.testing.assert_array_equal(xy, before[0])
        np.testing.assert_array_equal(rois, before[1])


def test_keypoints_to_image_maps_the_heatmap_borders_to_the_roi():
    xy = np.array([[[0.0, 0.0], [48.0, 64.0], [24.0, 32.0]]])
    out = keypoints_to_image(xy, np.array([[100.0, 50.0, 196.0, 178.0]]), (64, 48))
    np.testing.assert_allclose(out[0], [[100, 50], [196, 178], [148, 114]])


@pytest.mark.parametrize(
    "xy, rois, size, message",
    [
        (np.zeros((2, 17)), np.zeros((2, 4)), (64, 48), "xy"),
        (np.zeros((2, 17, 2)), np.zeros((3, 4)), (64, 48), "rois"),
        (np.zeros((2, 17, 2)), np.zeros((2, 4)), (64,), "heatmap_size"),
        (np.zeros((2, 17, 2)), np.zeros((2, 4)), (64, 0), "heatmap_size"),
    ],
)
def test_keypoints_to_image_rejects_bad_shapes(xy, rois, size, message):
    with pytest.raises(ValueError, match=message):
        keypoints_to_image(xy, rois, size)
