"""A view maps boxes back with each axis's own ratio of the original to the resized size.

The view tests in test_label_pipeline.py use a 90x150 image at scales 60 and 120, where
both ratios are exactly 1.5, so a y mapped back with the x ratio passes them. Here the
ratios differ: 107x160 at shorter side 96 is resized to 96x144 (rounded), y by
107/96 = 1.1146 and x by 160/144 = 1.1111.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.label.views import Padding, TransformPlan, make_views
from engine.modelcard import ModelCard


def test_boxes_come_back_with_the_ratio_of_their_own_axis():
    image = np.zeros((107, 160, 3), np.uint8)
    plain, mirrored = make_views(image, TransformPlan.grid((96,), flip=True, max_size=1000), Padding(32))
    assert plain.size == mirrored.size == (96, 144)
    box = np.array([[96.0, 48.0, 144.0, 96.0]])  # xyxy in view pixels, reaching the view's corner
    expected = [[96 * 160 / 144, 48 * 107 / 96, 160.0, 107.0]]
    np.testing.assert_allclose(plain.boxes_to_source(box), expected, rtol=1e-6)
    # mirrored: x -> 144 - x in the view, then the same ratios
    np.testing.assert_allclose(mirrored.boxes_to_source(box), [[0.0, 48 * 107 / 96, 48 * 160 / 144, 107.0]],
                               rtol=1e-6, atol=1e-4)


def test_padding_of_graphs_from_elsewhere():
    """Ultralytics' letterbox: grey 114, the image centred (the smaller half of the padding
    above and left); a fixed-size graph: every view padded to that size."""
    image = np.full((107, 160, 3), 7, np.uint8)
    plan = TransformPlan.grid((96,), flip=True, max_size=1000)
    plain, mirrored = make_views(image, plan, Padding(32, value=114, center=True))
    assert plain.padded_shape == (96, 160) and plain.offset == (0, 8)
    assert (plain.pixels[:, :, :8] == 114).all() and (plain.pixels[:, :, 8:152] == 7).all()
    assert (plain.pixels[:, :, 152:] == 114).all()
    box = np.array([[8.0, 0.0, 152.0, 96.0]])  # the whole image inside the padded view
    np.testing.assert_allclose(plain.boxes_to_source(box), [[0, 0, 160, 107]], atol=1e-4)
    np.testing.assert_allclose(mirrored.boxes_to_source(box), [[0, 0, 160, 107]], atol=1e-4)
    (fixed,) = make_views(image, TransformPlan.grid((96,), flip=False, max_size=1000), Padding(1, size=(128, 200)))
    assert fixed.padded_shape == (128, 200) and fixed.offset == (0, 0)
    with pytest.raises(ValueError, match="does not fit"):
        make_views(image, TransformPlan.grid((160,), flip=False, max_size=1000), Padding(1, size=(128, 200)))
    assert Padding.of(ModelCard(task="detect", categories=[{"id": 1, "name": "person"}], input_name="images",
                                outputs=["boxes", "scores", "labels"], strides=[8, 16], topk=10)) == Padding(16)


def test_keypoints_come_back_mirrored_with_left_and_right_swapped():
    image = np.zeros((107, 160, 3), np.uint8)
    plain, mirrored = make_views(image, TransformPlan.grid((96,), flip=True, max_size=1000),
                                 Padding(32, center=True))
    # joints 0 (middle), 1 (left), 2 (right); x, y in view pixels (offset 8 px on the left)
    points = np.array([[[8 + 72.0, 48.0, 0.9], [8 + 60.0, 30.0, 0.8], [8 + 84.0, 30.0, 0.7]]], np.float32)
    back = plain.keypoints_to_source(points, [[1, 2]])
    np.testing.assert_allclose(back[0, :, 0], np.array([72.0, 60.0, 84.0]) * 160 / 144, rtol=1e-6)
    np.testing.assert_allclose(back[0, :, 1], np.array([48.0, 30.0, 30.0]) * 107 / 96, rtol=1e-6)
    flipped = mirrored.keypoints_to_source(points, [[1, 2]])
    # mirrored: x -> 144 - x, and the joint seen at the left position is the right one
    np.testing.assert_allclose(flipped[0, :, 0], np.array([72.0, 144 - 84.0, 144 - 60.0]) * 160 / 144, rtol=1e-6)
    np.testing.assert_allclose(flipped[0, :, 2], [0.9, 0.7, 0.8])
