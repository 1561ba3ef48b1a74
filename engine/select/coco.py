"""Predictions -> a COCO dataset JSON that pycocotools loads as ground truth.

Every labeled image is listed, also those without any label: generated labels are
treated as complete, so an unlabeled region is background. Annotations carry their
`score` (and people their per-keypoint `keypoint_scores`) so that later steps can
re-threshold without relabeling.

`LabelMaker` turns one record at a time into its image entry and annotations, numbering
both across calls, so that the single file (`select_labels`) and the sharded output
(engine/select/sharded.py) hold the same entries with the same ids.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any


class LabelMaker:
    """Hard labels of records, one record at a time: detections with score >= their
    category's threshold in `thresholds` {category id: threshold} (None or a missing id:
    none of that category); keypoints with score >= `keypoint_threshold` get visibility
    2, the others 0 (at 0, 0). Image ids and annotation ids count from 1 over all calls.

    counts: {category id: labels made}; visible: {category id: [sum of num_keypoints, labels
    with keypoints]} (what the report needs, without keeping the labels).
    """

    def __init__(self, thresholds: Mapping[int, float | None], keypoint_threshold: float) -> None:
        self.thresholds, self.keypoint_threshold = thresholds, keypoint_threshold
        self.images = self.annotations = 0
        self.counts: Counter = Counter()
        self.visible: dict[int, list[int]] = {}

    def label(self, record: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(COCO image entry, its annotations) of one record."""
        self.images += 1
        image_id = self.images
        image = {"id": image_id, "file_name": record["file_name"], "width": record["width"], "height": record["height"]}
        annotations = []
        for detection in record["detections"]:
            threshold = self.thresholds.get(detection["category_id"])
            if threshold is None or detection["score"] < threshold:
                continue
            self.annotations += 1
            x, y, w, h = detection["bbox"]
            annotation = {"id": self.annotations, "image_id": image_id,
                          "category_id": detection["category_id"], "bbox": [x, y, w, h],
                          "area": round(w * h, 2), "iscrowd": 0, "score": detection["score"]}
            if "keypoints" in detection:
                values = detection["keypoints"]
                keypoints, scores = [], []
                for i in range(0, len(values), 3):
                    kx, ky, ks = values[i:i + 3]
                    visible = ks >= self.keypoint_threshold
                    keypoints += [kx, ky, 2] if visible else [0, 0, 0]
                    scores.append(ks)
                annotation.update(keypoints=keypoints, num_keypoints=sum(1 for v in keypoints[2::3] if v),
                                  keypoint_scores=scores)
                tally = self.visible.setdefault(detection["category_id"], [0, 0])
                tally[0] += annotation["num_keypoints"]
                tally[1] += 1
            self.counts[detection["category_id"]] += 1
            annotations.append(annotation)
        return image, annotations


def coco_info(info: dict[str, Any]) -> dict[str, Any]:
    """`info` with the time of writing."""
    return {**info, "date_created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def collect_labels(records: Iterable[dict[str, Any]], maker: LabelMaker) -> tuple[list, list]:
    """(image entries, annotations) of `records` labeled by `maker`, in record order."""
    images, annotations = [], []
    for record in records:
        image, labels = maker.label(record)
        images.append(image)
        annotations += labels
    return images, annotations


def select_labels(records: Iterable[dict[str, Any]], categories: list[dict[str, Any]],
                  thresholds: Mapping[int, float | None], keypoint_threshold: float,
                  info: dict[str, Any]) -> dict[str, Any]:
    """COCO dict of `records` labeled by a `LabelMaker(thresholds, keypoint_threshold)`."""
    images, annotations = collect_labels(records, LabelMaker(thresholds, keypoint_threshold))
    return {"info": coco_info(info), "images": images, "annotations": annotations, "categories": categories}
