"""engine.coco.geometry against plain references: IoU on random boxes (also degenerate and
touching ones), xyxy <-> xywh round trips, and agreement with the ensemble's kernel."""

from __future__ import annotations

import numpy as np
import pytest

from engine.coco.geometry import box_area, box_intersection, box_iou, xywh_to_xyxy, xyxy_to_xywh


def reference_iou(a, b) -> float:
    """IoU of two xyxy boxes, written out with Python floats."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(width, 0.0) * max(height, 0.0)
    area_a = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0)
    area_b = max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def random_boxes(rng, count: int) -> np.ndarray:
    """`(count, 4)` float64 xyxy boxes on a coarse grid, so that shared edges, equal boxes,
    nested boxes and zero widths are frequent; a few are inverted (x2 < x1)."""
    corners = rng.integers(0, 12, (count, 2)).astype(np.float64)
    sizes = rng.integers(0, 8, (count, 2)).astype(np.float64)
    boxes = np.concatenate([corners, corners + sizes], axis=1)
    boxes[rng.random(count) < 0.1] = boxes[0]  # repeated boxes
    inverted = rng.random(count) < 0.1
    boxes[inverted] = boxes[inverted][:, [2, 1, 0, 3]]  # x2 < x1: no area
    return boxes


@pytest.mark.parametrize("seed", range(5))
def test_box_iou_matches_a_plain_reference(seed):
    rng = np.random.default_rng(seed)
    a, b = random_boxes(rng, 40), random_boxes(rng, 30)
    before = a.copy(), b.copy()
    expected = [[reference_iou(x, y) for y in b.tolist()] for x in a.tolist()]
    result = box_iou(a, b)
    assert result.shape == (40, 30) and result.dtype == np.float64
    np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)
    assert np.all((result >= 0) & (result <= 1)) and np.count_nonzero(result) > 50  # overlaps to compare
    np.testing.assert_array_equal(a, before[0])  # inputs untouched
    np.testing.assert_array_equal(b, before[1])
    # float32 and integer inputs give the same IoU as float64 (values exact in every dtype)
    np.testing.assert_allclose(box_iou(a.astype(np.float32), b.astype(np.int64)), result, rtol=1e-12)


def test_box_iou_hand_cases():
    np.testing.assert_allclose(box_iou([[0, 0, 10, 10]], [[0, 0, 10, 5], [5, 5, 15, 15], [10, 0, 20, 10],
                                                          [0, 0, 0, 0]]),
                               [[0.5, 25 / 175, 0.0, 0.0]])
    assert box_iou([[3, 3, 3, 9]], [[3, 3, 3, 9]]).tolist() == [[0.0]]  # empty boxes: 0, not NaN
    assert box_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)
    np.testing.assert_allclose(box_intersection([[0, 0, 4, 4]], [[2, 1, 9, 3], [5, 5, 6, 6]]), [[4.0, 0.0]])
    np.testing.assert_allclose(box_area([[0, 0, 4, 2], [5, 5, 3, 9]]), [8.0, 0.0])


def test_conversions_round_trip_and_keep_their_dtype():
    rng = np.random.default_rng(1)
    xyxy = np.sort(rng.uniform(-50, 500, (6, 2, 2)), axis=1).transpose(0, 2, 1).reshape(6, 4).astype(np.float32)
    xywh = xyxy_to_xywh(xyxy)
    assert xywh.dtype == np.float32 and xywh.shape == (6, 4)
    np.testing.assert_array_equal(xywh[:, :2], xyxy[:, :2])
    np.testing.assert_array_equal(xywh[:, 2:], xyxy[:, 2:] - xyxy[:, :2])  # bit for bit, in float32
    np.testing.assert_allclose(xywh_to_xyxy(xywh), xyxy, rtol=0, atol=1e-4)
    grid = rng.integers(0, 100, (3, 5, 4))  # any leading shape, integers exact both ways
    np.testing.assert_array_equal(xyxy_to_xywh(xywh_to_xyxy(grid)), grid)
    assert xyxy_to_xywh([10.0, 20.0, 15.0, 40.0]).tolist() == [10.0, 20.0, 5.0, 20.0]
    assert xywh_to_xyxy([10, 20, 5, 20]).tolist() == [10, 20, 15, 40]


def test_box_iou_agrees_with_the_ensemble_kernel():
    from engine.ensemble.boxes import box_areas, pair_iou

    rng = np.random.default_rng(2)
    a, b = random_boxes(rng, 25), random_boxes(rng, 20)
    area_a, area_b = box_areas(a), box_areas(b)
    kernel = [[pair_iou(a, i, area_a[i], b, j, area_b[j]) for j in range(len(b))] for i in range(len(a))]
    np.testing.assert_allclose(box_iou(a, b), kernel, rtol=1e-12, atol=1e-12)
