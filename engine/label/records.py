"""Records: one JSON object per image (DESIGN.md, Predictions), also for an image with
no detection, so a consumer can tell "nothing there" from "never labeled".

    {"file_name": "a/b.jpg", "width": W, "height": H, "detections": [
        {"bbox": [x, y, w, h], "score": s, "category_id": COCO id,
         "keypoints": [x1, y1, s1, ..., x17, y17, s17]}   # people, with a keypoint model
    ]}

Width and height are as displayed (after EXIF orientation). Coordinates are rounded to
0.01 px and scores to 1e-5: finer digits are below the models' precision and would only
grow the shards.
"""

from __future__ import annotations

from typing import Any

from engine.label.keypoints import Keypoints
from engine.label.merge import Detections
from engine.modelcard import ModelCard


def make_record(name: str, height: int, width: int, detections: Detections,
                keypoints: Keypoints | None, card: ModelCard) -> dict[str, Any]:
    category_ids = [int(c["id"]) for c in card.categories]
    points_of = {}
    if keypoints is not None:
        for row, xy, peaks in zip(keypoints.rows, keypoints.points, keypoints.scores):
            values = []
            for (x, y), s in zip(xy.tolist(), peaks.tolist()):
                values += [round(x, 2), round(y, 2), round(s, 5)]
            points_of[int(row)] = values
    items = []
    for row, (box, score, label) in enumerate(zip(detections.boxes.tolist(), detections.scores.tolist(),
                                                  detections.labels.tolist())):
        x1, y1, x2, y2 = box
        item = {"bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "score": round(score, 5), "category_id": category_ids[label]}
        if row in points_of:
            item["keypoints"] = points_of[row]
        items.append(item)
    return {"file_name": name, "width": int(width), "height": int(height), "detections": items}
