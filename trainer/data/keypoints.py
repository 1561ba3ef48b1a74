"""Person-keypoint dataset for the top-down model: jittered crops, Gaussian heatmaps.

Each item is one person (non-crowd, at least one labelled keypoint). The GT box is
expanded to the crop aspect and padded (engine.crops), jittered in scale and position,
warped to (Hc, Wc); a horizontal flip mirrors the crop (u -> Wc - u) and swaps left/right
joints. Heatmaps live at stride 4 with pixel centres at (j + 0.5, i + 0.5).
"""

from __future__ import annotations

import random

import numpy as np
import torch
from pycocotools.coco import COCO

from engine.coco.schema import NUM_KEYPOINTS, flip_permutation
from engine.crops import person_crop_box, points_to_crop, warp_crop
from trainer.config import KeypointConfig
from trainer.data.coco import person_category_id, read_image
from trainer.data.labels import ShardedTrainingLabels, training_labels


def gaussian_heatmaps(points: np.ndarray, visible: np.ndarray, heatmap_size: tuple[int, int], sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Targets for (J, 2) keypoints in heatmap units (crop pixels / 4).

    Returns heatmaps (J, h, w) float32 with peak 1 at the keypoint, evaluated at pixel
    centres (j + 0.5, i + 0.5), and weights (J,) float32: 1 for a labelled keypoint whose
    location lies in the heatmap, 0 otherwise (no supervision, not "absent").
    """
    height, width = heatmap_size
    xs = np.arange(width, dtype=np.float32) + 0.5
    ys = np.arange(height, dtype=np.float32) + 0.5
    dx = (xs[None, :] - points[:, 0:1]) ** 2  # (J, w)
    dy = (ys[None, :] - points[:, 1:2]) ** 2  # (J, h)
    heatmaps = np.exp(-(dy[:, :, None] + dx[:, None, :]) / (2 * sigma**2)).astype(np.float32)
    inside = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
    weights = (visible & inside).astype(np.float32)
    heatmaps *= weights[:, None, None]
    return heatmaps, weights


def flip_crop_keypoints(points: np.ndarray, visible: np.ndarray, crop_width: float) -> tuple[np.ndarray, np.ndarray]:
    """Mirror (J, 2) crop points (u -> Wc - u) and swap left/right joints."""
    perm = flip_permutation()
    flipped = points[perm].copy()
    flipped[:, 0] = crop_width - flipped[:, 0]
    return flipped, visible[perm]


class KeypointDataset(torch.utils.data.Dataset):
    """Items: (crop (3, Hc, Wc) float32 RGB 0..255, heatmaps (J, Hc/4, Wc/4), weights (J,), meta)."""

    def __init__(self, coco: COCO | ShardedTrainingLabels, images_dir: str, config: KeypointConfig, train: bool,
                 seed: int = 0):
        """`coco`: the labels (a COCO, or sharded labels read a person at a time)."""
        self.labels, self.images_dir, self.config, self.train = training_labels(coco), str(images_dir), config, train
        # the trainable people: dicts of a COCO, 8-byte rows of sharded labels
        self.instances = self.labels.people(person_category_id(coco))
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.instances)

    def crop_box(self, bbox_xywh) -> np.ndarray:
        """The (jittered, when training) crop box, (4,) float32 xyxy image pixels."""
        height, width = self.config.input_size
        box = person_crop_box(np.asarray(bbox_xywh, np.float32), width / height, self.config.padding)
        if not self.train:
            return box
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        w, h = box[2] - box[0], box[3] - box[1]
        # Jitter the scale and centre so the model sees imperfect (detector-like) boxes.
        s = 1 + self.rng.uniform(-self.config.scale_jitter, self.config.scale_jitter)
        cx += self.rng.uniform(-self.config.shift_jitter, self.config.shift_jitter) * w / self.config.padding
        cy += self.rng.uniform(-self.config.shift_jitter, self.config.shift_jitter) * h / self.config.padding
        w, h = w * s, h * s
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)

    def __getitem__(self, index: int):
        ann, file_name = self.labels.person(self.instances[index])
        image = read_image(f"{self.images_dir}/{file_name}")
        height, width = self.config.input_size
        box = self.crop_box(ann["bbox"])
        crop = warp_crop(image, box, (height, width))
        kps = np.asarray(ann["keypoints"], np.float32).reshape(NUM_KEYPOINTS, 3)
        visible = kps[:, 2] > 0
        points = points_to_crop(kps[:, :2], box, (height, width))
        if self.train and self.rng.random() < 0.5:
            crop = crop[:, ::-1]
            points, visible = flip_crop_keypoints(points, visible, width)
        heatmaps, weights = gaussian_heatmaps(points / 4.0, visible, (height // 4, width // 4), self.config.sigma)
        tensor = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))).float()
        meta = {"image_id": ann["image_id"], "box": box}
        return tensor, torch.from_numpy(heatmaps), torch.from_numpy(weights), meta


def keypoint_collate(items):
    crops, heatmaps, weights, metas = zip(*items)
    return torch.stack(crops), torch.stack(heatmaps), torch.stack(weights), list(metas)
