"""Reading COCO files for training and evaluation (engine.coco: every entry checked, user
mistakes as one-line UserErrors), as pycocotools' COCO, and the images they list; and a
student's generated labels, a COCO file or sharded labels (trainer.data.labels)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from pycocotools.coco import COCO

from engine.coco.evaluate import coco_api
from engine.coco.read import keypoint_category, load_coco
from engine.errors import UserError
from engine.select.sharded import ShardedLabels, is_sharded
from trainer.data.labels import ShardedTrainingLabels, training_labels


def load_annotations(json_path: str | os.PathLike, images_dir: str | os.PathLike) -> COCO:
    """pycocotools' COCO of the annotation file `json_path`, every entry checked
    (`engine.coco.read.load_coco`); every listed image must exist under `images_dir`."""
    json_path, images_dir = Path(json_path), Path(images_dir)
    dataset = load_coco(json_path)
    if not images_dir.is_dir():
        raise UserError(f"image folder not found: {images_dir}")
    for image in dataset.images.values():
        if not (images_dir / image["file_name"]).is_file():
            raise UserError(f"image listed in {json_path.name} but absent: {images_dir / image['file_name']}")
    return coco_api(dataset.data)


def load_generated(path: str | os.PathLike, images_dir: str | os.PathLike) -> COCO | ShardedTrainingLabels:
    """A student's generated labels at `path`: a COCO file (`load_annotations`), or sharded
    labels (`distill select --shards`: their folder or index.json), opened, not read: their
    entries are read when trained on. Of those, the first image of every shard must exist
    under `images_dir` (a wrong folder fails here; checking a million files would not be free)."""
    if not is_sharded(Path(path)):
        return load_annotations(path, images_dir)
    labels = ShardedLabels.open(Path(path))
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise UserError(f"image folder not found: {images_dir}")
    row = 0
    for shard in labels.shards:
        if shard["images"]:
            name = labels.image(row)["file_name"]
            if not (images_dir / name).is_file():
                raise UserError(f"image listed in {labels.folder / shard['file']} but absent: {images_dir / name}")
        row += shard["images"]
    return ShardedTrainingLabels(labels)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB; grayscale files are expanded to three channels."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def categories_of(source: COCO | ShardedTrainingLabels) -> list[dict]:
    """The COCO categories of a COCO or of sharded labels."""
    return training_labels(source).categories


def category_table(coco: COCO | ShardedTrainingLabels) -> list[dict]:
    """[{"id": coco_id, "name": str}] sorted by id: position = the model's class index."""
    return [{"id": int(c["id"]), "name": str(c["name"])} for c in sorted(categories_of(coco), key=lambda c: c["id"])]


def person_category_id(coco: COCO | ShardedTrainingLabels) -> int:
    """The id of the category that carries keypoints (COCO's "person")."""
    person = keypoint_category(categories_of(coco))
    if person is None:
        raise UserError("no category with 'keypoints' in the annotation file: not a person-keypoint COCO file")
    return person
