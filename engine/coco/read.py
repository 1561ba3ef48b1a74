"""Reading a COCO dataset JSON file, strictly or leniently.

`load_coco` reads a file a user hands us (a labeled set, ground truth, labels to review
or convert): every entry the commands use is checked, so that a mistake is one line
naming the file and the entry rather than a traceback from deep inside a command, and
the file comes back indexed (`CocoSet`). `read_coco` reads leniently: the file and its
top-level lists only, for labels `distill select` wrote that are only scored
(pycocotools reads their entries), where checking every annotation of a dump would cost
time for nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.json_file import read_json_object
from engine.errors import UserError


def read_coco(path: Path) -> dict[str, Any]:
    """The COCO dataset dict in `path`: a JSON object with `images` and `annotations`
    lists and a non-empty `categories` list; otherwise a one-line UserError naming the
    file. Entries are not checked (see `load_coco`)."""
    try:
        data = read_json_object(path)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except ValueError as error:
        raise UserError(f"cannot read {path}: {error}") from None
    if not all(isinstance(data.get(k), list) for k in ("images", "annotations")):
        raise UserError(f"{path} is not a COCO dataset (no 'images' and 'annotations' lists)")
    if not isinstance(data.get("categories"), list) or not data["categories"]:
        raise UserError(f"{path} has no 'categories' list")
    return data


@dataclass
class CocoSet:
    """A COCO file, checked and indexed. The dicts are the file's own, not copies: a
    label set of a million annotations is held once.

    data: the dataset dict as read (its lists in file order; what pycocotools takes).
    images, categories: {id: entry}, in file order.
    annotations: {image id: its annotations in file order} for every image, also [].
    ids_by_file: {file_name: image id}.
    """

    path: Path
    data: dict[str, Any]
    images: dict[int, dict[str, Any]]
    categories: dict[int, dict[str, Any]]
    annotations: dict[int, list[dict[str, Any]]]
    ids_by_file: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.ids_by_file = {image["file_name"]: image_id for image_id, image in self.images.items()}

    @property
    def info(self) -> dict[str, Any]:
        """The file's `info` object ({} when it has none)."""
        info = self.data.get("info")
        return info if isinstance(info, dict) else {}

    @property
    def thresholds(self) -> dict[str, Any] | None:
        """`info["thresholds"]`: how `distill select` chose these labels, or None."""
        thresholds = self.info.get("thresholds")
        return thresholds if isinstance(thresholds, dict) else None


def keypoint_category(categories: Iterable[dict[str, Any]]) -> int | None:
    """The id of the first category with `keypoints` (COCO's person), None when none has."""
    return next((category["id"] for category in categories if category.get("keypoints")), None)


def load_coco(path: Path) -> CocoSet:
    """The COCO file `path`, every entry checked: images with an integer id, a file_name
    and a positive width and height; categories with an integer id, a name and keypoint
    names (strings); annotations with an integer id, a listed image and category, a bbox
    [x, y, w, h] of finite numbers with w, h >= 0, and, where present, a numeric
    `score`, a whole `num_keypoints`, `keypoints` of 3 numbers per keypoint of their
    category and one `keypoint_scores` entry per keypoint. Ids are unique. Anything else
    is a one-line UserError naming the file and the entry."""
    path = Path(path)
    return checked_coco(path, read_coco(path))


def checked_coco(path: Path, data: dict[str, Any]) -> CocoSet:
    """The COCO dict `data` (as `read_coco` returns it), read from `path`, checked and
    indexed as `load_coco` does."""
    images = _check_images(path, data["images"])
    categories = _check_categories(path, data["categories"])
    annotations: dict[int, list[dict[str, Any]]] = {image_id: [] for image_id in images}
    seen: set[int] = set()
    for annotation in data["annotations"]:
        _check_annotation(path, annotation, images, categories, seen)
        annotations[annotation["image_id"]].append(annotation)
    return CocoSet(path, data, images, categories, annotations)


def _check_images(path: Path, images: list[Any]) -> dict[int, dict[str, Any]]:
    by_id: dict[int, dict[str, Any]] = {}
    for image in images:
        ok = (isinstance(image, dict) and _integer(image.get("id"))
              and isinstance(image.get("file_name"), str) and image["file_name"]
              and _positive(image.get("width")) and _positive(image.get("height")))
        if not ok:
            raise UserError(f"{path}: every image needs an integer id, a file_name and width and height > 0 "
                            f"(got {_short(image)})")
        if image["id"] in by_id:
            raise UserError(f"{path}: image id {image['id']} appears twice")
        by_id[image["id"]] = image
    return by_id


def _check_categories(path: Path, categories: list[Any]) -> dict[int, dict[str, Any]]:
    by_id: dict[int, dict[str, Any]] = {}
    for category in categories:
        if not (isinstance(category, dict) and _integer(category.get("id"))
                and isinstance(category.get("name"), str) and category["name"]):
            raise UserError(f"{path}: every category needs an integer id and a name (got {_short(category)})")
        if category["id"] in by_id:
            raise UserError(f"{path}: category id {category['id']} appears twice")
        keypoints = category.get("keypoints") or []
        if not (isinstance(keypoints, list) and all(isinstance(name, str) and name for name in keypoints)):
            raise UserError(f"{path}: category {category['name']!r} has keypoint names that are not all strings")
        by_id[category["id"]] = category
    return by_id


def _check_annotation(path: Path, annotation: Any, images: dict[int, dict[str, Any]],
                      categories: dict[int, dict[str, Any]], seen: set[int]) -> None:
    if not isinstance(annotation, dict):
        raise UserError(f"{path}: an annotation is not an object (got {_short(annotation)})")
    if not _integer(annotation.get("id")):
        raise UserError(f"{path}: every annotation needs an integer id (got {_short(annotation)})")
    where = f"{path}: annotation {annotation['id']}"
    if annotation["id"] in seen:
        raise UserError(f"{where} appears twice")
    seen.add(annotation["id"])
    if not _integer(annotation.get("image_id")) or annotation["image_id"] not in images:
        raise UserError(f"{where} refers to image {annotation.get('image_id')!r}, which is not in 'images'")
    category = categories.get(annotation.get("category_id")) if _integer(annotation.get("category_id")) else None
    if category is None:
        raise UserError(f"{where} has category {annotation.get('category_id')!r}, which is not in 'categories'")
    bbox = annotation.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_finite(v) for v in bbox)
            and bbox[2] >= 0 and bbox[3] >= 0):
        raise UserError(f"{where}: bbox must be [x, y, width, height] in pixels, width and height >= 0 "
                        f"(got {bbox!r})")
    if "score" in annotation and not _finite(annotation["score"]):
        raise UserError(f"{where}: score must be a number (got {annotation['score']!r})")
    if "num_keypoints" in annotation and not (_integer(annotation["num_keypoints"])
                                                and annotation["num_keypoints"] >= 0):
        raise UserError(f"{where}: num_keypoints must be a whole number >= 0 (got {annotation['num_keypoints']!r})")
    keypoints = annotation.get("keypoints")
    if keypoints:
        count = len(category.get("keypoints") or [])
        if not (isinstance(keypoints, list) and len(keypoints) == 3 * count and all(_finite(v) for v in keypoints)):
            raise UserError(f"{where}: keypoints must be {count} x [x, y, v] for category {category['name']!r} "
                            f"(got {len(keypoints) if isinstance(keypoints, list) else keypoints!r} values)")
        scores = annotation.get("keypoint_scores")
        if scores is not None and not (isinstance(scores, list) and len(scores) == count
                                       and all(_finite(v) for v in scores)):
            raise UserError(f"{where}: keypoint_scores must hold {count} numbers")


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(value: Any) -> bool:
    return _finite(value) and value > 0


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "..."
