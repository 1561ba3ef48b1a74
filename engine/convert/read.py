"""Load a COCO labels file and make it safe to convert.

Accepts what `distill select` writes (annotations with `score`, people with `keypoints`
and `keypoint_scores`) and plain COCO ground truth (no scores, crowd regions). Anything
that cannot be converted is a one-line `UserError` naming the entry.

Both target formats store coordinates relative to the image (YOLO normalized to 0..1,
Label Studio in percent 0..100), and Ultralytics rejects all labels of an image when
one value is out of bounds, so boxes are clipped to their image here, once, and
keypoints outside it become "not labeled" (0, 0, 0): both writers see the same labels.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.coco_file import read_coco_dataset
from engine.errors import UserError


@dataclass
class LabelSet:
    """A COCO labels file, validated and clipped; coordinates stay in pixels."""

    path: Path
    info: dict[str, Any]
    images: list[dict[str, Any]]        # COCO image dicts in file order (id, file_name, width, height)
    categories: list[dict[str, Any]]    # COCO categories in file order: YOLO class i is categories[i]
    labels: dict[int, list[dict[str, Any]]]  # image id -> its non-crowd annotations, clipped
    keypoint_category: dict[str, Any] | None  # the category whose labels carry keypoints, if any
    counts: Counter                     # what cleaning changed: crowd, clipped, empty, keypoints_outside

    @property
    def num_labels(self) -> int:
        return sum(len(labels) for labels in self.labels.values())

    @property
    def has_scores(self) -> bool:
        """True when every label has a `score` (generated labels; ground truth has none)."""
        return all("score" in a for labels in self.labels.values() for a in labels)

    @property
    def keypoint_names(self) -> list[str]:
        return list(self.keypoint_category["keypoints"]) if self.keypoint_category else []


def load_labels(path: Path) -> LabelSet:
    """Read and validate the COCO dataset JSON at `path` (see the module docstring)."""
    path = Path(path)
    data = read_coco_dataset(path, "--labels")
    images = _check_images(path, data["images"])
    categories = _check_categories(path, data["categories"])
    counts: Counter = Counter()
    labels: dict[int, list[dict[str, Any]]] = {image["id"]: [] for image in images}
    sizes = {image["id"]: (image["width"], image["height"]) for image in images}
    by_id = {category["id"]: category for category in categories}
    with_keypoints: set[int] = set()
    for annotation in data["annotations"]:
        _check_annotation(path, annotation, sizes, by_id)
        if annotation.get("iscrowd"):
            # A crowd region is an "ignore" area for COCO evaluation, not an instance:
            # neither YOLO nor a Label Studio prediction has a way to say that.
            counts["crowd"] += 1
            continue
        clean = _clip(annotation, *sizes[annotation["image_id"]], counts)
        if clean is None:
            continue
        if any(clean.get("keypoints", ())[2::3]):
            with_keypoints.add(clean["category_id"])
        labels[clean["image_id"]].append(clean)
    if len(with_keypoints) > 1:
        names = ", ".join(by_id[i]["name"] for i in sorted(with_keypoints))
        raise UserError(f"{path}: labels of several categories carry keypoints ({names}); YOLO pose has one "
                        "keypoint layout; keep the keypoints of one category")
    keypoint_category = by_id[with_keypoints.pop()] if with_keypoints else None
    for image_labels in labels.values():
        for annotation in image_labels:
            # Writers take keypoints as the keypoint category's joints: drop those of any
            # other category (declared, but none labeled) rather than mislabel them.
            if keypoint_category is None or annotation["category_id"] != keypoint_category["id"]:
                annotation.pop("keypoints", None)
                annotation.pop("keypoint_scores", None)
    return LabelSet(path, data.get("info") or {}, images, categories, labels, keypoint_category, counts)


def _check_images(path: Path, images: list[Any]) -> list[dict[str, Any]]:
    seen: set[int] = set()
    for image in images:
        ok = (isinstance(image, dict) and isinstance(image.get("id"), int)
              and isinstance(image.get("file_name"), str) and image["file_name"]
              and _positive(image.get("width")) and _positive(image.get("height")))
        if not ok:
            raise UserError(f"{path}: every image needs an integer id, a file_name and width and height > 0 "
                            f"(got {_short(image)})")
        if image["id"] in seen:
            raise UserError(f"{path}: image id {image['id']} appears twice")
        seen.add(image["id"])
    return images


def _check_categories(path: Path, categories: list[Any]) -> list[dict[str, Any]]:
    if not categories:
        raise UserError(f"{path}: no categories")
    ids, names = set(), set()
    for category in categories:
        if not (isinstance(category, dict) and isinstance(category.get("id"), int)
                and isinstance(category.get("name"), str) and category["name"]):
            raise UserError(f"{path}: every category needs an integer id and a name (got {_short(category)})")
        # Both targets identify a class by its name (YOLO `names`, Label Studio labels).
        if category["id"] in ids or category["name"] in names:
            raise UserError(f"{path}: category {category['id']} {category['name']!r} is not unique")
        ids.add(category["id"])
        names.add(category["name"])
        keypoints = category.get("keypoints") or []
        if not all(isinstance(name, str) and name for name in keypoints) or len(set(keypoints)) != len(keypoints):
            raise UserError(f"{path}: category {category['name']!r} has keypoint names that are not unique strings")
    return categories


def _check_annotation(path: Path, annotation: Any, sizes: dict[int, tuple[float, float]],
                      categories: dict[int, dict[str, Any]]) -> None:
    if not isinstance(annotation, dict):
        raise UserError(f"{path}: an annotation is not an object (got {_short(annotation)})")
    where = f"{path}: annotation {annotation.get('id', '?')}"
    if annotation.get("image_id") not in sizes:
        raise UserError(f"{where} refers to image {annotation.get('image_id')!r}, which is not in 'images'")
    category = categories.get(annotation.get("category_id"))
    if category is None:
        raise UserError(f"{where} has category {annotation.get('category_id')!r}, which is not in 'categories'")
    bbox = annotation.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_finite(v) for v in bbox)
            and bbox[2] >= 0 and bbox[3] >= 0):
        raise UserError(f"{where}: bbox must be [x, y, width, height] in pixels, width and height >= 0 "
                        f"(got {bbox!r})")
    if "score" in annotation and not _finite(annotation["score"]):
        raise UserError(f"{where}: score must be a number (got {annotation['score']!r})")
    keypoints = annotation.get("keypoints")
    if keypoints:
        count = len(category.get("keypoints") or [])
        if not (isinstance(keypoints, list) and len(keypoints) == 3 * count and all(_finite(v) for v in keypoints)):
            raise UserError(f"{where}: keypoints must be {count} x [x, y, v] for category {category['name']!r} "
                            f"(got {len(keypoints) if isinstance(keypoints, list) else keypoints!r} values)")
        scores = annotation.get("keypoint_scores")
        if scores is not None and not (isinstance(scores, list) and len(scores) == count):
            raise UserError(f"{where}: keypoint_scores must hold {count} numbers")


def _clip(annotation: dict[str, Any], width: float, height: float, counts: Counter) -> dict[str, Any] | None:
    """A copy of `annotation` with its box clipped to the image (pixels) and keypoints
    outside the image set to (0, 0, 0); None when nothing of the box is left."""
    x, y, w, h = (float(v) for v in annotation["bbox"])
    x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        counts["empty"] += 1
        return None
    clean = dict(annotation, bbox=[x1, y1, x2 - x1, y2 - y1])
    if (x1, y1, x2, y2) != (x, y, x + w, y + h):
        counts["clipped"] += 1
    if annotation.get("keypoints"):
        values = [float(v) for v in annotation["keypoints"]]
        for i in range(0, len(values), 3):
            kx, ky, v = values[i:i + 3]
            if v > 0 and not (0.0 <= kx <= width and 0.0 <= ky <= height):
                values[i:i + 3] = [0.0, 0.0, 0.0]
                counts["keypoints_outside"] += 1
        clean["keypoints"] = values
    return clean


def _positive(value: Any) -> bool:
    return _finite(value) and value > 0


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "..."
