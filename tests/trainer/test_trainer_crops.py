"""Crop geometry of engine.crops: aspect, padding, point maps, and warp alignment."""

from __future__ import annotations

import numpy as np

from engine.crops import person_crop_box, points_from_crop, points_to_crop, warp_crop


def test_person_crop_box_aspect_padding_and_centre():
    box = person_crop_box(np.array([10.0, 20.0, 30.0, 90.0]), aspect=0.75, padding=1.25)
    w, h = box[2] - box[0], box[3] - box[1]
    assert np.isclose(w / h, 0.75)
    # Tall box: height kept, padded.
    assert np.isclose(h, 90.0 * 1.25)
    assert np.allclose([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], [25.0, 65.0])
    # Wide box: width kept.
    wide = person_crop_box(np.array([0.0, 0.0, 100.0, 10.0]), aspect=0.75, padding=1.0)
    assert np.allclose(wide, [0.0, 5 - 100 / 0.75 / 2, 100.0, 5 + 100 / 0.75 / 2], atol=1e-4)


def test_person_crop_box_vectorised_matches_single():
    boxes = np.array([[10.0, 20.0, 30.0, 90.0], [0.0, 0.0, 100.0, 10.0], [5.0, 5.0, 7.0, 3.0]])
    many = person_crop_box(boxes, aspect=0.75)
    assert many.shape == (3, 4) and many.dtype == np.float32
    for row, box in zip(many, boxes):
        assert np.allclose(row, person_crop_box(box, aspect=0.75))


def test_points_round_trip_and_known_values():
    crop_box = np.array([10.0, 20.0, 58.0, 84.0])  # 48 x 64 -> crop (Hc, Wc) = (128, 96): x2 scale
    points = np.array([[10.0, 20.0], [58.0, 84.0], [34.0, 52.0]])
    mapped = points_to_crop(points, crop_box, (128, 96))
    assert np.allclose(mapped, [[0, 0], [96, 128], [48, 64]])
    assert np.allclose(points_from_crop(mapped, crop_box, (128, 96)), points, atol=1e-4)
    # Batched: (N, K, 2) with (N, 4).
    batch = points_to_crop(np.stack([points, points + 1]), np.stack([crop_box, crop_box]), (128, 96))
    assert batch.shape == (2, 3, 2) and np.allclose(batch[1] - batch[0], [2.0, 2.0])


def _centroid(image: np.ndarray) -> np.ndarray:
    """Intensity centroid in continuous coordinates (pixel centres at +0.5)."""
    weights = image.astype(np.float64)
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    return np.array([((xs + 0.5) * weights).sum(), ((ys + 0.5) * weights).sum()]) / weights.sum()


def test_warp_crop_puts_a_point_where_points_to_crop_says():
    # A smooth blob centred at a continuous point; its centroid must land where the
    # forward map sends that point, for an integer shift and for a 2x zoom.
    height, width = 120, 160
    centre = np.array([70.3, 55.8])
    ys, xs = np.mgrid[0:height, 0:width]
    blob = np.exp(-(((xs + 0.5) - centre[0]) ** 2 + ((ys + 0.5) - centre[1]) ** 2) / (2 * 3.0**2))
    image = np.repeat((blob * 255).round().astype(np.uint8)[..., None], 3, axis=2)
    for crop_box, out_size in [(np.array([40.0, 30.0, 104.0, 94.0]), (64, 64)), (np.array([50.0, 40.0, 98.0, 104.0]), (128, 96))]:
        crop = warp_crop(image, crop_box, out_size)
        assert crop.shape == (*out_size, 3) and crop.dtype == np.uint8
        expected = points_to_crop(centre[None], crop_box, out_size)[0]
        assert np.allclose(_centroid(crop[..., 0]), expected, atol=0.1)


def test_warp_crop_identity_is_exact():
    image = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    crop = warp_crop(image, np.array([5.0, 7.0, 37.0, 39.0]), (32, 32))
    assert np.array_equal(crop, image[7:39, 5:37])
