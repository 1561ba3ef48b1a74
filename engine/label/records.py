"""Records: one JSON object per image (DESIGN.md, Predictions), also for an image with
no detection, so a consumer can tell "nothing there" from "never labeled".

    {"file_name": "a/b.jpg", "width": W, "height": H, "detections": [
        {"bbox": [x, y, w, h], "score": s, "category_id": COCO id,
         "keypoints": [x1, y1, p1, ..., x17, y17, p17]}   # people, with a keypoint model
    ], "escalated": true}                                  # a staged plan's records only

Width and height are as displayed (after EXIF orientation). Coordinates are rounded to
0.01 px and scores to 1e-5: finer digits are below the models' precision and would only
grow the shards. A staged plan (engine.label.escalation) says in "escalated" whether
the image got the second stage's passes besides the first's (the manifest lists both).

A keypoint's third value p is its heatmap peak: the largest value of the joint's heatmap
(averaged over the person's crop and its mirror), not a probability, and it may exceed
1. Its scale is the keypoint model's: the trainer's heatmaps are a softmax scaled by
2 pi sigma^2, so a peak as sharp as the training target is 1 and a sharper one more, at
most 2 pi sigma^2 (25.1 for sigma 2; the demo's peaks reach 2.17). It is kept raw rather than
squashed into [0, 1]: it orders keypoints as the model does, `distill select`
calibrates its keypoint threshold on these values and records it in the same units, and
the COCO labels carry them as `keypoint_scores`. Exports that need a [0, 1] confidence
do not pass it off as one (engine/convert).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.coco.geometry import xyxy_to_xywh
from engine.label.keypoints import Keypoints
from engine.label.merge import Detections
from engine.modelcard import ModelCard


def make_record(name: str, height: int, width: int, detections: Detections,
                keypoints: Keypoints | None, card: ModelCard, escalated: bool | None = None) -> dict[str, Any]:
    """The record of one image (module docstring). escalated: for a staged plan, whether
    the image got the second stage's passes (written as "escalated"; None: a fixed plan,
    whose records carry no such field)."""
    # Rounded in NumPy, one call per array: a Python round() per value cost 6.6 ms for an
    # image of 100 people against 0.39 ms (timed once, 200 calls each, in the keypoint
    # thread where it is serial). For float32 inputs it gives the same doubles as round()
    # (test_record_rounding_matches_python_round).
    category_ids = [int(c["id"]) for c in card.categories]
    boxes = detections.boxes.astype(np.float64)
    if card.clip_after_merge:  # the views left them unclipped for the merge (engine.label.detect)
        boxes = np.clip(boxes, 0, [width, height, width, height])
    xywh = np.round(xyxy_to_xywh(boxes), 2).tolist()
    scores = np.round(detections.scores.astype(np.float64), 5).tolist()
    points_of = {}
    if keypoints is not None and len(keypoints.rows):
        xy = keypoints.points.astype(np.float64)
        if card.clip_after_merge:
            xy = np.clip(xy, 0, [width, height])
        xy = np.round(xy, 2)
        peaks = np.round(keypoints.scores.astype(np.float64), 5)[..., None]
        values = np.concatenate([xy, peaks], axis=2).reshape(len(xy), -1).tolist()  # x, y, s per joint
        points_of = dict(zip(keypoints.rows.tolist(), values))
    items = []
    for row, (box, score, label) in enumerate(zip(xywh, scores, detections.labels.tolist())):
        item = {"bbox": box, "score": score, "category_id": category_ids[label]}
        if row in points_of:
            item["keypoints"] = points_of[row]
        items.append(item)
    record = {"file_name": name, "width": int(width), "height": int(height), "detections": items}
    if escalated is not None:
        record["escalated"] = escalated
    return record
