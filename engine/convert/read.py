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

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.coco.geometry import xywh_to_xyxy, xyxy_to_xywh
from engine.errors import UserError
from engine.select.sharded import load_label_set


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
    """Read the COCO dataset JSON at `path`, or the sharded labels of `distill select
    --shards` (their folder or index.json), every entry checked (`engine.coco.read.load_coco`),
    and make it safe to convert (see the module docstring)."""
    path = Path(path)
    coco = load_label_set(path)
    images, categories = list(coco.images.values()), list(coco.categories.values())
    _check_names(path, categories)
    counts: Counter = Counter()
    labels: dict[int, list[dict[str, Any]]] = {image["id"]: [] for image in images}
    sizes = {image["id"]: (image["width"], image["height"]) for image in images}
    by_id = coco.categories
    with_keypoints: set[int] = set()
    for annotation in coco.data["annotations"]:
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
    return LabelSet(path, coco.info, images, categories, labels, keypoint_category, counts)


def _check_names(path: Path, categories: list[dict[str, Any]]) -> None:
    # Both targets identify a class by its name (YOLO `names`, Label Studio labels), and a
    # keypoint by its name (Label Studio's KeyPointLabels, YOLO's flip_idx).
    names: set[str] = set()
    for category in categories:
        if category["name"] in names:
            raise UserError(f"{path}: category {category['id']} {category['name']!r} is not unique")
        names.add(category["name"])
        keypoints = category.get("keypoints") or []
        if len(set(keypoints)) != len(keypoints):
            raise UserError(f"{path}: category {category['name']!r} has keypoint names that are not unique")


def _clip(annotation: dict[str, Any], width: float, height: float, counts: Counter) -> dict[str, Any] | None:
    """A copy of `annotation` with its box clipped to the image (pixels) and keypoints
    outside the image set to (0, 0, 0); None when nothing of the box is left."""
    corners = xywh_to_xyxy(np.asarray(annotation["bbox"], np.float64))
    clipped = np.clip(corners, 0.0, [width, height, width, height])
    x1, y1, x2, y2 = clipped.tolist()
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        counts["empty"] += 1
        return None
    clean = dict(annotation, bbox=xyxy_to_xywh(clipped).tolist())
    if not np.array_equal(clipped, corners):
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

