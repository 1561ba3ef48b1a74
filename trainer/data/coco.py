"""Reading COCO files for training and evaluation (engine.coco: every entry checked, user
mistakes as one-line UserErrors), as pycocotools' COCO, and the images they list."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from pycocotools.coco import COCO

from engine.coco.evaluate import coco_api
from engine.coco.read import keypoint_category, load_coco
from engine.errors import UserError


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


def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB; grayscale files are expanded to three channels."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def category_table(coco: COCO) -> list[dict]:
    """[{"id": coco_id, "name": str}] sorted by id: position = the model's class index."""
    return [{"id": int(c["id"]), "name": str(c["name"])} for c in sorted(coco.dataset["categories"], key=lambda c: c["id"])]


def person_category_id(coco: COCO) -> int:
    """The id of the category that carries keypoints (COCO's "person")."""
    person = keypoint_category(coco.dataset["categories"])
    if person is None:
        raise UserError("no category with 'keypoints' in the annotation file: not a person-keypoint COCO file")
    return person
