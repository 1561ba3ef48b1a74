"""Datasets and augmentation: box flips, keypoint crops, flip + left/right joint swap."""

from __future__ import annotations

import json

import cv2
import numpy as np
import torch

from engine.coco.schema import KEYPOINT_NAMES, flip_permutation
from trainer.config import tiny_keypoints
from trainer.data.coco import load_annotations
from trainer.data.detection import DetectionCollate, DetectionDataset, flip_boxes
from trainer.data.keypoints import KeypointDataset, flip_crop_keypoints, gaussian_heatmaps
from engine.ensemble import heatmap_argmax


class FixedRng:
    """Stands in for random.Random: every draw returns the same value."""

    def __init__(self, value: float):
        self.value = value

    def random(self) -> float:
        return self.value

    def uniform(self, low: float, high: float) -> float:
        return (low + high) / 2

    def choice(self, seq):
        return seq[0]

    def seed(self, *_):
        pass


def test_flip_boxes_maps_x_to_w_minus_x():
    boxes = np.array([[10.0, 5.0, 30.0, 25.0]], np.float32)
    assert flip_boxes(boxes, 100).tolist() == [[70.0, 5.0, 90.0, 25.0]]
    assert np.allclose(flip_boxes(flip_boxes(boxes, 100), 100), boxes)


def test_detection_dataset_resizes_flips_and_pads(tiny_coco):
    coco = load_annotations(tiny_coco, tiny_coco.parent / "images")
    dataset = DetectionDataset(coco, tiny_coco.parent / "images", (96,), 1000, train=True)
    dataset.rng = FixedRng(0.0)  # always flip
    image, target, meta = dataset[0]
    assert image.shape == (3, 96, 128) and meta["scale"] == (2.0, 2.0)
    # bbox [10, 8, 20, 30] -> xyxy [10, 8, 30, 38] x2 = [20, 16, 60, 76]; flipped in W = 128.
    assert target["boxes"].tolist() == [[68.0, 16.0, 108.0, 76.0]]
    assert target["labels"].tolist() == [0] and target["crowd"].shape == (0, 4)
    images, targets, _ = DetectionCollate(64)([dataset[0], dataset[0]])
    assert images.shape == (2, 3, 128, 128)


def test_gaussian_heatmaps_peak_at_pixel_centre_convention():
    points = np.array([[5.5, 3.5], [100.0, 1.0]], np.float32)
    heatmaps, weights = gaussian_heatmaps(points, np.array([True, True]), (8, 10), sigma=1.0)
    assert heatmaps.shape == (2, 8, 10)
    assert np.unravel_index(heatmaps[0].argmax(), (8, 10)) == (3, 5) and heatmaps[0, 3, 5] == 1.0
    assert weights.tolist() == [1.0, 0.0] and heatmaps[1].max() == 0.0
    decoded = heatmap_argmax(heatmaps[None, :1], refine="window")
    assert np.allclose(decoded[0, 0, :2], [5.5, 3.5]) and decoded[0, 0, 2] == 1.0


def test_flip_crop_keypoints_swaps_left_and_right():
    points = np.zeros((17, 2), np.float32)
    points[5] = [10.0, 40.0]  # left shoulder
    visible = np.zeros(17, bool)
    visible[5] = True
    flipped, flipped_visible = flip_crop_keypoints(points, visible, 96)
    right_shoulder = KEYPOINT_NAMES.index("right_shoulder")
    assert flipped_visible[right_shoulder] and not flipped_visible[5]
    assert flipped[right_shoulder].tolist() == [86.0, 40.0]
    assert flip_permutation()[right_shoulder] == 5


def test_keypoint_dataset_flip_moves_the_joint_to_the_mirrored_channel(tmp_path):
    # A 100x100 image with a white dot at the left shoulder (30.5, 40.5).
    image = np.zeros((100, 100, 3), np.uint8)
    image[40, 30] = 255
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "p.png"), image)
    keypoints = [0.0] * 51
    keypoints[15:18] = [30.5, 40.5, 2]
    data = {
        "images": [{"id": 7, "file_name": "p.png", "width": 100, "height": 100}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [20.0, 20.0, 48.0, 64.0], "iscrowd": 0,
                         "keypoints": keypoints, "num_keypoints": 1, "area": 3072.0}],
        "categories": [{"id": 1, "name": "person", "keypoints": list(KEYPOINT_NAMES), "skeleton": []}],
    }
    (tmp_path / "a.json").write_text(json.dumps(data))
    coco = load_annotations(tmp_path / "a.json", tmp_path / "images")
    config = tiny_keypoints()
    plain = KeypointDataset(coco, str(tmp_path / "images"), config, train=False)
    crop, heatmaps, weights, meta = plain[0]
    assert crop.shape == (3, 128, 96) and heatmaps.shape == (17, 32, 24)
    assert weights[5] == 1 and weights.sum() == 1
    flipped = KeypointDataset(coco, str(tmp_path / "images"), config, train=True)
    flipped.rng = FixedRng(0.0)  # flip, and no jitter (uniform returns the midpoint)
    crop_f, heatmaps_f, weights_f, meta_f = flipped[0]
    assert np.allclose(meta_f["box"], meta["box"])
    assert torch.equal(crop_f, crop.flip(2))
    right = KEYPOINT_NAMES.index("right_shoulder")
    assert weights_f[right] == 1 and weights_f[5] == 0
    assert torch.allclose(heatmaps_f[right], heatmaps[5].flip(1), atol=1e-6)
