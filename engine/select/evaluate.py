"""Score generated labels against ground truth the engine never saw (pycocotools).

    python -m engine.select.evaluate --gt GT.json --labels single=A.json --labels ensemble=B.json

Each labels file (`distill select`'s output, scores kept) is read as detection results:
box AP over the ground truth's categories, keypoint AP over people. A person's keypoint
result is scored by its box score times `instance_score` of its keypoint scores, as the
trainer's evaluation scores a single pass. Images are matched by `file_name`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np

from engine.errors import UserError
from engine.label.views import TransformPlan


def instance_score(peaks: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """`(N,)` mean of each person's confident keypoint scores `peaks` `(N, J)` (all of
    them when none is above `threshold`)."""
    confident = peaks > threshold
    total = np.where(confident, peaks, 0).sum(1)
    count = confident.sum(1)
    return np.where(count > 0, total / np.maximum(count, 1), peaks.mean(1)).astype(np.float32)


def _summarize(gt, results: list[dict], iou_type: str, cat_ids: list[int]) -> tuple[float, float]:
    from pycocotools.cocoeval import COCOeval

    if not results:
        return 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, gt.loadRes(results), iou_type)
        evaluator.params.catIds = cat_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0]), float(evaluator.stats[1])


def score_labels(gt, labels: dict) -> dict[str, float]:
    """{"box_AP", "box_AP50", "keypoint_AP", "keypoint_AP50"} of a labels dict vs `gt` (COCO)."""
    ids = {image["file_name"]: image["id"] for image in gt.dataset["images"]}
    names = {image["id"]: image["file_name"] for image in labels["images"]}
    known = set(gt.getCatIds())
    person = next((c["id"] for c in gt.dataset["categories"] if c.get("keypoints")), None)
    boxes, people = [], []
    for ann in labels["annotations"]:
        image_id = ids.get(names[ann["image_id"]])
        if image_id is None or ann["category_id"] not in known:
            continue
        boxes.append({"image_id": image_id, "category_id": ann["category_id"], "bbox": ann["bbox"],
                      "score": ann["score"]})
        if ann["category_id"] == person and "keypoint_scores" in ann:
            peaks = np.asarray(ann["keypoint_scores"], np.float32)[None]
            points = np.asarray(ann["keypoints"], np.float32).reshape(-1, 3)
            points[:, 2] = 1.0
            people.append({"image_id": image_id, "category_id": person, "bbox": ann["bbox"],
                           "keypoints": points.reshape(-1).tolist(),
                           "score": float(ann["score"] * instance_score(peaks)[0])})
    box_ap, box_ap50 = _summarize(gt, boxes, "bbox", sorted(known))
    kp_ap, kp_ap50 = _summarize(gt, people, "keypoints", [person]) if person else (0.0, 0.0)
    return {"box_AP": box_ap, "box_AP50": box_ap50, "keypoint_AP": kp_ap, "keypoint_AP50": kp_ap50}


def load_ground_truth(path: Path):
    """pycocotools COCO of `path`, without its index-building chatter on stdout."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def score_label_file(labels: Path, gt: Path) -> dict[str, float]:
    """`score_labels` of the labels file `labels` against the ground-truth file `gt`."""
    return score_labels(load_ground_truth(gt), read_json(Path(labels)))


def passes_of(labels: dict) -> int | str:
    """The number of transforms the labels were made with ("?" when their info lacks the plan)."""
    plan = labels.get("info", {}).get("labeling", {}).get("labeling", {}).get("plan")
    return len(TransformPlan.from_dict(plan).passes) if plan else "?"


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read {path}: {error}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Box AP and keypoint AP of generated labels against ground truth.")
    parser.add_argument("--gt", required=True, type=Path, help="ground-truth COCO JSON")
    parser.add_argument("--labels", required=True, action="append", metavar="NAME=LABELS.json",
                        help="a labels file to score, named in the table (repeatable)")
    args = parser.parse_args(argv)
    try:
        gt = load_ground_truth(args.gt)
        rows = []
        for item in args.labels:
            name, _, path = item.rpartition("=")
            labels = read_json(Path(path))
            rows.append((name or path, passes_of(labels), score_labels(gt, labels)))
    except UserError as error:
        print(f"evaluate: error: {error}", file=sys.stderr)
        return 2
    print(f"{'labels':<12} {'passes':>6} {'box AP':>7} {'AP50':>6} {'kp AP':>7} {'AP50':>6}")
    for name, views, m in rows:
        print(f"{name:<12} {views:>6} {m['box_AP']:>7.3f} {m['box_AP50']:>6.3f} "
              f"{m['keypoint_AP']:>7.3f} {m['keypoint_AP50']:>6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
