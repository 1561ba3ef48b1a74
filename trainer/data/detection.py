"""Box dataset: random shorter-side resize, horizontal flip, crowd boxes kept apart."""

from __future__ import annotations

import random

import numpy as np
import torch
from pycocotools.coco import COCO

from engine.coco.geometry import xywh_to_xyxy
from engine.scaling import resize_to_scale, round_up
from trainer.data.coco import category_table, read_image
from trainer.data.labels import ShardedTrainingLabels, training_labels


class DetectionDataset(torch.utils.data.Dataset):
    """Items: (image (3, h, w) float32 RGB 0..255, target dict, meta dict).

    target: "boxes" (M, 4) float32 xyxy in resized pixels, "labels" (M,) int64 class
    indices, "crowd" (K, 4) float32 xyxy ignore regions. meta: "image_id", "scale".
    """

    def __init__(self, coco: COCO | ShardedTrainingLabels, images_dir: str, min_sizes: tuple[int, ...], max_size: int, train: bool,
                 seed: int = 0, categories: list[dict] | None = None):
        """`coco`: the labels (a COCO, or sharded labels read an image at a time);
        `categories` ([{"id", "name"}], class-index order) defaults to the labels' own."""
        self.labels, self.images_dir = training_labels(coco), str(images_dir)
        self.ids = self.labels.image_ids()
        self.categories = category_table(coco) if categories is None else categories
        self.label_of = {c["id"]: i for i, c in enumerate(self.categories)}
        self.min_sizes, self.max_size, self.train = tuple(min_sizes), max_size, train
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.ids)

    def annotations(self, image_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(M, 4) xyxy boxes, (M,) labels, (K, 4) crowd boxes in original pixels."""
        boxes, labels, crowd = [], [], []
        for ann in self.labels.image_annotations(image_id):
            x, y, w, h = ann["bbox"]
            if w < 1 or h < 1 or ann["category_id"] not in self.label_of:
                continue  # degenerate boxes carry no usable signal
            if ann.get("iscrowd", 0):
                crowd.append(ann["bbox"])
            else:
                boxes.append(ann["bbox"])
                labels.append(self.label_of[ann["category_id"]])
        # x + w in float64, then float32: the corners are the file's numbers rounded once
        return (
            xywh_to_xyxy(np.array(boxes, np.float64).reshape(-1, 4)).astype(np.float32),
            np.array(labels, np.int64),
            xywh_to_xyxy(np.array(crowd, np.float64).reshape(-1, 4)).astype(np.float32),
        )

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        image = read_image(f"{self.images_dir}/{self.labels.file_name(image_id)}")
        boxes, labels, crowd = self.annotations(image_id)
        min_size = self.rng.choice(self.min_sizes) if self.train else self.min_sizes[0]
        height, width = image.shape[:2]
        image = resize_to_scale(image, min_size, self.max_size)
        new_h, new_w = image.shape[:2]
        # Boxes scale with the actual (rounded) size so they stay aligned with the pixels.
        scale = np.array([new_w / width, new_h / height] * 2, np.float32)
        boxes, crowd = boxes * scale, crowd * scale
        if self.train and self.rng.random() < 0.5:
            image = image[:, ::-1]
            boxes = flip_boxes(boxes, new_w)
            crowd = flip_boxes(crowd, new_w)
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
        target = {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels), "crowd": torch.from_numpy(crowd)}
        return tensor, target, {"image_id": image_id, "scale": (new_w / width, new_h / height)}


def flip_boxes(boxes: np.ndarray, width: float) -> np.ndarray:
    """Mirror (N, 4) xyxy boxes in an image of width `width`: x -> W - x."""
    out = boxes.copy()
    out[:, 0], out[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
    return out


def pad_batch(images: list[torch.Tensor], divisor: int) -> torch.Tensor:
    """Zero-pad (3, h, w) images bottom/right to a common size, a multiple of `divisor`."""
    height = max(i.shape[1] for i in images)
    width = max(i.shape[2] for i in images)
    height, width = round_up(height, divisor), round_up(width, divisor)
    batch = images[0].new_zeros(len(images), 3, height, width)
    for slot, image in zip(batch, images):
        slot[:, : image.shape[1], : image.shape[2]] = image
    return batch


class DetectionCollate:
    """Pads a list of dataset items into (images (B, 3, H, W), targets, metas)."""

    def __init__(self, divisor: int):
        self.divisor = divisor

    def __call__(self, items):
        images, targets, metas = zip(*items)
        return pad_batch(list(images), self.divisor), list(targets), list(metas)
