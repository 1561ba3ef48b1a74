"""Predictions -> a COCO dataset JSON that pycocotools loads as ground truth.

Every labeled image is listed, also those without any label: generated labels are
treated as complete, so an unlabeled region is background. Annotations carry their
`score` (and people their per-keypoint `keypoint_scores`) so that later steps can
re-threshold without relabeling.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any


def select_labels(records: Iterable[dict[str, Any]], categories: list[dict[str, Any]],
                  thresholds: Mapping[int, float | None], keypoint_threshold: float,
                  info: dict[str, Any]) -> dict[str, Any]:
    """COCO dict from `records` keeping detections with score >= their category's
    threshold in `thresholds` {category id: threshold} (None or a missing id: none of that
    category); keypoints with score >= `keypoint_threshold` get visibility 2, the others
    0 (at 0, 0)."""
    images, annotations = [], []
    for image_id, record in enumerate(records, 1):
        images.append({"id": image_id, "file_name": record["file_name"],
                       "width": record["width"], "height": record["height"]})
        for detection in record["detections"]:
            threshold = thresholds.get(detection["category_id"])
            if threshold is None or detection["score"] < threshold:
                continue
            x, y, w, h = detection["bbox"]
            annotation = {"id": len(annotations) + 1, "image_id": image_id,
                          "category_id": detection["category_id"], "bbox": [x, y, w, h],
                          "area": round(w * h, 2), "iscrowd": 0, "score": detection["score"]}
            if "keypoints" in detection:
                values = detection["keypoints"]
                keypoints, scores = [], []
                for i in range(0, len(values), 3):
                    kx, ky, ks = values[i:i + 3]
                    visible = ks >= keypoint_threshold
                    keypoints += [kx, ky, 2] if visible else [0, 0, 0]
                    scores.append(ks)
                annotation.update(keypoints=keypoints, num_keypoints=sum(1 for v in keypoints[2::3] if v),
                                  keypoint_scores=scores)
            annotations.append(annotation)
    return {"info": {**info, "date_created": time.strftime("%Y-%m-%dT%H:%M:%S")},
            "images": images, "annotations": annotations, "categories": categories}

