"""A view maps boxes back with each axis's own ratio of the original to the resized size.

The view tests in test_label_pipeline.py use a 90x150 image at scales 60 and 120, where
both ratios are exactly 1.5, so a y mapped back with the x ratio passes them. Here the
ratios differ: 107x160 at shorter side 96 is resized to 96x144 (rounded), y by
107/96 = 1.1146 and x by 160/144 = 1.1111.
"""

from __future__ import annotations

import numpy as np

from engine.label.views import TransformPlan, make_views


def test_boxes_come_back_with_the_ratio_of_their_own_axis():
    image = np.zeros((107, 160, 3), np.uint8)
    plain, mirrored = make_views(image, TransformPlan.grid((96,), flip=True, max_size=1000), stride=32)
    assert plain.size == mirrored.size == (96, 144)
    box = np.array([[96.0, 48.0, 144.0, 96.0]])  # xyxy in view pixels, reaching the view's corner
    expected = [[96 * 160 / 144, 48 * 107 / 96, 160.0, 107.0]]
    np.testing.assert_allclose(plain.boxes_to_source(box), expected, rtol=1e-6)
    # mirrored: x -> 144 - x in the view, then the same ratios
    np.testing.assert_allclose(mirrored.boxes_to_source(box), [[0.0, 48 * 107 / 96, 48 * 160 / 144, 107.0]],
                               rtol=1e-6, atol=1e-4)
