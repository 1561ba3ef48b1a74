"""Small datasets for the trainer tests: a few `distill synth` images and hand-made COCO."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory) -> dict[str, Path]:
    """8 training and 4 validation synthetic images (seeds 1 and 2)."""
    from engine.synth import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    train = generate_dataset(root / "train", 8, seed=1)
    val = generate_dataset(root / "val", 4, seed=2)
    return {
        "train_json": Path(train), "train_images": root / "train" / "images",
        "val_json": Path(val), "val_images": root / "val" / "images",
    }


def write_tiny_coco(folder: Path, with_image: bool = True) -> Path:
    """One 64x48 image with one person box (and keypoints), as a COCO file."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    if with_image:
        cv2.imwrite(str(images / "a.jpg"), np.full((48, 64, 3), 127, np.uint8))
    keypoints = [0.0] * 51
    keypoints[5 * 3 : 5 * 3 + 3] = [20.0, 20.0, 2.0]
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
        "annotations": [{
            "id": 1, "image_id": 1, "category_id": 1, "bbox": [10.0, 8.0, 20.0, 30.0], "area": 600.0,
            "iscrowd": 0, "keypoints": keypoints, "num_keypoints": 1,
        }],
        "categories": [{"id": 1, "name": "person", "keypoints": ["k"] * 17, "skeleton": []}],
    }
    path = folder / "annotations.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture()
def tiny_coco(tmp_path) -> Path:
    return write_tiny_coco(tmp_path)


@pytest.fixture()
def tiny_coco_without_image(tmp_path) -> Path:
    """The same file, but its image was never written."""
    return write_tiny_coco(tmp_path / "missing", with_image=False)


@pytest.fixture()
def trainers(monkeypatch) -> list:
    """Every Trainer that `train()` builds, kept after it returns: its `model` is the
    trained model in memory, `initial` a copy of the weights it started from."""
    import trainer.train
    from trainer.loop import Trainer

    made = []

    class Recording(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.initial = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            made.append(self)

    monkeypatch.setattr(trainer.train, "Trainer", Recording)
    return made
