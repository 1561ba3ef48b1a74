"""Reading COCO files through pycocotools, with user mistakes turned into UserError."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
from pycocotools.coco import COCO

from engine.errors import UserError


def load_coco(json_path: str | os.PathLike, images_dir: str | os.PathLike, check_images: bool = True) -> COCO:
    """Parse a COCO annotation file; every listed image must exist under `images_dir`."""
    json_path, images_dir = Path(json_path), Path(images_dir)
    if not json_path.is_file():
        raise UserError(f"annotation file not found: {json_path}")
    if not images_dir.is_dir():
        raise UserError(f"image folder not found: {images_dir}")
    try:
        with open(json_path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"malformed JSON in {json_path}: {error}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise UserError(f"{json_path} is not a COCO file (needs lists 'images', 'annotations', 'categories')")
    try:
        for image in data["images"]:
            image["id"], image["file_name"]
        for ann in data["annotations"]:
            ann["image_id"], ann["bbox"], ann["category_id"]
    except (KeyError, TypeError) as error:
        raise UserError(f"{json_path}: an image or annotation lacks the field {error}") from None
    if check_images:
        for image in data["images"]:
            if not (images_dir / image["file_name"]).is_file():
                raise UserError(f"image listed in {json_path.name} but absent: {images_dir / image['file_name']}")
    coco = COCO()
    coco.dataset = data
    coco.createIndex()  # prints one line; acceptable, it is pycocotools' own
    return coco


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
    for cat in coco.dataset["categories"]:
        if cat.get("keypoints"):
            return int(cat["id"])
    raise UserError("no category with 'keypoints' in the annotation file: not a person-keypoint COCO file")
