"""One round of the loop in one table: teacher, teacher with TTA, generated labels, student.

    python -m engine.select.report --round 1 \
        --teacher DET/metrics.json KP/e2e.json --tta VAL_TTA.json --val-gt VAL.json \
        --generated PSEUDO.json --generated-gt UNLABELED.json \
        --student DET/metrics.json KP/e2e.json

Model rows (teacher, student) come from the trainer's COCO evaluation on the validation
set: box AP from the detector's `metrics.json`, keypoint AP from `distill eval
--detector` (keypoints on the detector's own person boxes, not ground-truth boxes, so
that they compare with the label rows). Label rows are scored with
`engine.coco.evaluate.score_labels`: the teacher's test-time-augmented labels of the
validation set, and the generated labels of the unlabeled set against its hidden ground
truth (omitted without --generated-gt). Metrics files of an earlier version (keys
`bbox_AP`, `keypoints_AP`) are read as well.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.coco.evaluate import get_metric, score_label_file
from engine.coco.read import read_coco
from engine.errors import UserError
from engine.select.evaluate import passes_of


def read_metric(path: Path, key: str) -> float:
    """The metric `key` (`box_AP`, `keypoint_AP`) of the metrics JSON file `path`."""
    try:
        metrics = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    value = get_metric(metrics, key) if isinstance(metrics, dict) else None
    if value is None:
        raise UserError(f"{path} holds no {key} (a model trained without a validation set?)")
    return value


def model_row(detector_metrics: Path, keypoint_stats: Path) -> tuple[float, float]:
    """(box AP, keypoint AP) of a detector's metrics.json and a keypoint eval JSON."""
    return read_metric(detector_metrics, "box_AP"), read_metric(keypoint_stats, "keypoint_AP")


def labels_row(labels: Path, gt_path: Path) -> tuple[float, float]:
    """(box AP, keypoint AP) of a labels file against ground truth."""
    scores = score_label_file(labels, gt_path)
    return scores["box_AP"], scores["keypoint_AP"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Teacher, TTA, generated-label and student AP of one round.")
    parser.add_argument("--round", default="1")
    parser.add_argument("--teacher", nargs=2, type=Path, required=True, metavar=("DET_METRICS", "KP_EVAL"))
    parser.add_argument("--tta", type=Path, required=True, help="the teacher's labels of the validation images")
    parser.add_argument("--val-gt", type=Path, required=True)
    parser.add_argument("--generated", type=Path, required=True, help="distill select's labels of the unlabeled set")
    parser.add_argument("--generated-gt", type=Path, help="the unlabeled set's hidden ground truth, when known")
    parser.add_argument("--student", nargs=2, type=Path, required=True, metavar=("DET_METRICS", "KP_EVAL"))
    args = parser.parse_args(argv)
    try:
        rows = [("teacher, one pass (val)", model_row(*args.teacher)),
                (f"teacher + TTA, {passes_of(read_coco(args.tta), args.tta)} passes (val)", labels_row(args.tta, args.val_gt))]
        if args.generated_gt is not None:
            rows.append(("generated labels (unlabeled)", labels_row(args.generated, args.generated_gt)))
        rows.append(("student, one pass (val)", model_row(*args.student)))
    except UserError as error:
        print(f"report: error: {error}", file=sys.stderr)
        return 2
    print(f"round {args.round}{'':<26} {'box AP':>7} {'kp AP':>7}")
    for name, (box, keypoint) in rows:
        print(f"{name:<34} {box:>7.3f} {keypoint:>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
