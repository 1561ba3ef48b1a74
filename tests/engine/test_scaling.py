"""engine.scaling: the DESIGN.md scale rule, the resize built on it, stride rounding."""

import numpy as np

from engine.scaling import resize_to_scale, round_up, scale_factor


def test_scale_factor_caps_the_long_side():
    assert scale_factor(100, 200, 50, 1000) == 0.5
    assert scale_factor(100, 400, 300, 600) == 1.5  # 3.0 would make the long side 1200


def test_resize_to_scale_rounds_each_side():
    image = np.zeros((90, 160, 3), np.uint8)
    assert resize_to_scale(image, 400, 2000).shape == (400, 711, 3)  # 160 * 400 / 90 = 711.1
    assert resize_to_scale(image, 400, 500).shape == (281, 500, 3)  # capped by the long side
    assert resize_to_scale(np.zeros((1, 1000, 3), np.uint8), 1, 10).shape == (1, 10, 3)


def test_round_up_to_stride():
    assert [round_up(v, 32) for v in (1, 32, 33, 64, 65)] == [32, 32, 64, 64, 96]
