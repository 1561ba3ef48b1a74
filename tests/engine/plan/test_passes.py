"""The identity pass, the baseline `distill plan-transforms` reports its gain against, is
the image at its own size: shorter side min(h, w), not max(h, w) (which would upscale
every non-square image by max/min and make the baseline a test-time augmentation)."""

from __future__ import annotations

import numpy as np

from engine.label.views import Padding
from engine.plan.passes import identity_view


def test_identity_view_is_the_image_at_its_own_size():
    image = np.random.default_rng(0).integers(0, 255, (90, 150, 3), np.uint8)
    view = identity_view(image, max_size=1000, padding=Padding(32))
    assert view.size == view.source_size == (90, 150) and view.scale == 90 and not view.flipped
    assert view.padded_shape == (96, 160)
    np.testing.assert_array_equal(view.pixels[:, :90, :150], image.transpose(2, 0, 1))
    box = np.array([[10.5, 20.25, 140.0, 80.0]])
    np.testing.assert_allclose(view.boxes_to_source(box), box)
    # max_size still caps it: a 90x150 image under max_size 120 is shrunk by 120/150
    assert identity_view(image, max_size=120, padding=Padding(32)).size == (72, 120)
