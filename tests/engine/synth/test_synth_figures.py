"""Articulated figures: COCO left/right semantics, flip equivariance, occlusion flags."""

from __future__ import annotations

import numpy as np
import pytest

from engine.coco.schema import KEYPOINT_NAMES, flip_permutation
from engine.synth.config import SynthConfig
from engine.synth.draw import Drawing, Polygon, render
from engine.synth.figures import Outfit, build_figure, figure_extent
from engine.synth.poses import POSE_FAMILIES, Pose, sample_pose
from engine.synth.scene import _Item, _paint_and_annotate

K = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
OUTFIT = Outfit(skin=(150, 180, 225), hair=(20, 20, 20), shirt=(60, 80, 160),
                pants=(90, 60, 40), shoes=(30, 30, 30), long_sleeves=False)


def _standing(yaw: float) -> Pose:
    arm, leg = (10.0, 0.0, 5.0, 10.0), (5.0, 0.0, 2.0, 0.0)
    return Pose(yaw=yaw, roll=0.0, lean=0.0, left_arm=arm, right_arm=arm, left_leg=leg,
                right_leg=leg)


def _draw(pose: Pose, width: int = 160, height: int = 200, origin=(80.5, 100.0),
          figure_height: float = 150.0):
    figure = build_figure(pose, OUTFIT, figure_height, origin)
    image = np.zeros((height, width, 3), np.uint8)
    mask = np.zeros((height, width), np.uint8)
    render(figure.drawing, image, mask)
    return figure, image, mask


def test_frontal_figure_has_its_left_on_the_image_right():
    figure, _, _ = _draw(_standing(0.0))
    kp = figure.keypoints
    for part in ("eye", "ear", "shoulder", "elbow", "wrist", "hip", "knee", "ankle"):
        assert kp[K[f"left_{part}"], 0] > kp[K[f"right_{part}"], 0], part
    # Head above shoulders above hips above knees above ankles (image y grows down).
    ys = [kp[K[n], 1] for n in ("nose", "left_shoulder", "left_hip", "left_knee", "left_ankle")]
    assert ys == sorted(ys)
    assert not figure.hidden.any()


@pytest.mark.parametrize("yaw", [60.0, -60.0, 95.0])
def test_turned_figure_looks_where_its_nose_points(yaw):
    figure, _, _ = _draw(_standing(yaw))
    kp = figure.keypoints
    head_x = 0.5 * (kp[K["left_ear"], 0] + kp[K["right_ear"], 0])
    assert np.sign(kp[K["nose"], 0] - head_x) == np.sign(yaw)
    # Turned towards its left (yaw > 0), the left ear goes behind the head.
    far_ear = "left_ear" if yaw > 0 else "right_ear"
    assert figure.hidden[K[far_ear]]
    near_ear = "right_ear" if yaw > 0 else "left_ear"
    assert not figure.hidden[K[near_ear]] and not figure.hidden[K["nose"]]
    assert not figure.hidden[5:].any()  # only face points can hide behind the head


def test_mirrored_pose_draws_the_flipped_picture_with_swapped_joints():
    rng = np.random.default_rng(0)
    perm = flip_permutation()
    width = 160
    for family in POSE_FAMILIES:
        weights = {family: 1.0}
        pose = sample_pose(rng, weights, max_yaw_deg=100, max_roll_deg=12)
        figure, image, mask = _draw(pose, width=width, origin=(80.0, 100.0))
        mirror, mirror_image, mirror_mask = _draw(pose.mirrored(), width=width,
                                                  origin=(width - 80.0, 100.0))
        # Joint j of the mirrored figure is joint perm[j] of the original, x -> W - x.
        expected = figure.keypoints[perm].copy()
        expected[:, 0] = width - expected[:, 0]
        np.testing.assert_allclose(mirror.keypoints, expected, atol=1e-6, err_msg=family)
        np.testing.assert_array_equal(mirror.hidden, figure.hidden[perm])
        # The pictures agree up to rasterisation at the edges.
        flipped = mask[:, ::-1] > 0
        iou = (flipped & (mirror_mask > 0)).sum() / (flipped | (mirror_mask > 0)).sum()
        assert iou > 0.95, (family, iou)
        diff = np.abs(image[:, ::-1].astype(int) - mirror_image.astype(int)).mean()
        assert diff < 3.0, (family, diff)


def test_figure_extent_contains_the_drawing():
    rng = np.random.default_rng(1)
    for _ in range(20):
        pose = sample_pose(rng, {k: 1.0 for k in POSE_FAMILIES}, 100, 12)
        x1, y1, x2, y2 = figure_extent(pose, 150.0)
        _, _, mask = _draw(pose, width=400, height=400, origin=(200.0, 200.0))
        ys, xs = np.nonzero(mask)
        assert xs.min() >= 200 + x1 - 2 and xs.max() <= 200 + x2 + 2
        assert ys.min() >= 200 + y1 - 2 and ys.max() <= 200 + y2 + 2


def test_occluder_drawn_on_top_marks_joints_occluded_and_frame_cuts_mark_absent():
    pose = _standing(0.0)
    figure = build_figure(pose, OUTFIT, 150.0, (80.0, 100.0))
    wrist = figure.keypoints[K["left_wrist"]]
    cover = Drawing([Polygon(np.array([wrist + [-8, -8], wrist + [8, -8], wrist + [8, 8],
                                       wrist + [-8, 8]]), (0, 255, 0))])
    below = Drawing([Polygon(np.array([[0, 0], [160, 0], [160, 200], [0, 200]], float), (9, 9, 9))])
    # Crop the frame so that the feet fall outside it.
    height = int(figure.keypoints[K["left_knee"], 1] + 10)
    image = np.zeros((height, 160, 3), np.uint8)
    items = [_Item(below, -1.0), _Item(figure.drawing, 0.0, 1, figure), _Item(cover, 0.5)]
    (ann,) = _paint_and_annotate(image, items)
    v = np.array(ann["keypoints"][2::3])
    assert v[K["left_wrist"]] == 1
    assert v[K["left_ankle"]] == 0 and v[K["right_ankle"]] == 0
    assert ann["keypoints"][3 * K["left_ankle"]:3 * K["left_ankle"] + 2] == [0, 0]
    assert (v[[K[n] for n in ("nose", "right_wrist", "left_shoulder", "left_knee")]] == 2).all()
    assert ann["num_keypoints"] == int((v > 0).sum()) == 15
    # The box is clipped to the frame; the occluded part still counts towards it.
    x, y, w, h = ann["bbox"]
    assert y + h == height
    assert x <= wrist[0] - 1 <= x + w


def test_default_pose_prior_differs_from_shift():
    from engine.synth.styles import DEFAULT, SHIFTED

    assert set(DEFAULT.poses) != set(SHIFTED.poses)
    assert set(DEFAULT.backgrounds).isdisjoint(SHIFTED.backgrounds)
    assert SynthConfig().max_yaw_deg < 180  # no back views: left/right stays decidable


def test_mostly_covered_object_is_not_annotated():
    figure = build_figure(_standing(0.0), OUTFIT, 60.0, (40.0, 40.0))
    # A slab over everything but the feet: under a quarter of the figure stays visible.
    cover = Drawing([Polygon(np.array([[0, 0], [80, 0], [80, 62], [0, 62]], float), (0, 255, 0))])
    items = [_Item(figure.drawing, 0.0, 1, figure), _Item(cover, 1.0)]
    assert _paint_and_annotate(np.zeros((80, 80, 3), np.uint8), items, min_visible_frac=0.25) == []
    (ann,) = _paint_and_annotate(np.zeros((80, 80, 3), np.uint8), items, min_visible_frac=0.0)
    assert ann["num_keypoints"] == 17
    assert (np.array(ann["keypoints"][2::3]) == 1).sum() >= 13  # all but the lower legs


def test_layout_keeps_small_boxes_out_of_large_ones():
    from engine.synth.scene import _Layout

    config = SynthConfig(truncation_prob=0.0, placement_tries=50)
    layout = _Layout(200, 200, config, np.random.default_rng(0))
    assert layout.place((0, 0, 150, 150)) is not None
    for _ in range(10):
        anchor = layout.place((0, 0, 20, 20))
        if anchor is not None:
            x, y = anchor
            inter = max(0, min(x + 20, layout.boxes[0][2]) - max(x, layout.boxes[0][0])) * \
                max(0, min(y + 20, layout.boxes[0][3]) - max(y, layout.boxes[0][1]))
            assert inter <= config.max_overlap_cover * 400 + 1e-6
