"""One round of the loop in one table: the supervised baseline, the teacher with TTA,
the generated labels, and the student trained on them.

    python -m engine.select.report --round 1 \
        --supervised DET/metrics.json KP/e2e.json [--teacher DET/metrics.json KP/e2e.json] \
        --tta VAL_TTA.json --val-gt VAL.json --generated PSEUDO.json --generated-gt UNLABELED.json \
        --student DET/metrics.json KP/e2e.json

The comparison that matters is the paper's: the student (labeled + generated labels)
against the supervised baseline, the same models trained on the labeled set alone, each
row with its training steps so that a student trained longer than its baseline shows
(the table then says that it is not a same-schedule comparison). In round 1 the teacher
is that baseline; from round 2 on it is the previous round's student, a row of its own.
Model rows come from the trainer's COCO evaluation on the validation set: box AP from the
detector's `metrics.json`, keypoint AP from `distill eval --detector` (keypoints on the
detector's own person boxes, not ground-truth boxes, so that they compare with the label
rows); the steps from the `metrics.json` files (the keypoint model's beside its eval
file). Label rows are scored with `engine.coco.evaluate.score_labels`: the teacher's
test-time-augmented labels of the validation set, and the generated labels of the
unlabeled set against its hidden ground truth (omitted without --generated-gt). Metrics
files of an earlier version (keys `bbox_AP`, `keypoints_AP`) are read as well.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.coco.evaluate import coco_api, get_metric, score_label_file, score_labels
from engine.coco.read import load_coco, read_coco
from engine.errors import UserError
from engine.select.evaluate import passes_of
from engine.select.sharded import ShardedLabels, is_sharded


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


def model_steps(detector_metrics: Path, keypoint_stats: Path) -> str:
    """"DET/KP" training steps of a model row ("?" where a metrics file does not say):
    the detector's metrics.json, and the metrics.json beside the keypoint eval file."""
    steps = []
    for path in (detector_metrics, keypoint_stats.parent / "metrics.json"):
        try:
            steps.append(str(json.loads(path.read_text())["iterations"]))
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            steps.append("?")
    return "/".join(steps)


def labels_row(labels: Path, gt_path: Path) -> tuple[float, float]:
    """(box AP, keypoint AP) of a labels file (or sharded labels) against ground truth."""
    if is_sharded(labels):
        scores = score_labels(coco_api(load_coco(gt_path).data), ShardedLabels.open(labels).to_coco())
    else:
        scores = score_label_file(labels, gt_path)
    return scores["box_AP"], scores["keypoint_AP"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Supervised baseline, teacher TTA, generated labels and student "
                                                 "of one round.")
    parser.add_argument("--round", default="1")
    parser.add_argument("--supervised", nargs=2, type=Path, required=True, metavar=("DET_METRICS", "KP_EVAL"),
                        help="the models trained on the labeled set alone (round 1's teachers)")
    parser.add_argument("--teacher", nargs=2, type=Path, metavar=("DET_METRICS", "KP_EVAL"),
                        help="the round's teachers when they are not --supervised (round 2 on)")
    parser.add_argument("--tta", type=Path, required=True, help="the teacher's labels of the validation images")
    parser.add_argument("--val-gt", type=Path, required=True)
    parser.add_argument("--generated", type=Path, required=True, help="distill select's labels of the unlabeled set")
    parser.add_argument("--generated-gt", type=Path, help="the unlabeled set's hidden ground truth, when known")
    parser.add_argument("--student", nargs=2, type=Path, required=True, metavar=("DET_METRICS", "KP_EVAL"))
    args = parser.parse_args(argv)
    own_teacher = args.teacher is not None and list(args.teacher) != list(args.supervised)
    try:
        supervised, baseline_steps = model_row(*args.supervised), model_steps(*args.supervised)
        student, student_steps = model_row(*args.student), model_steps(*args.student)
        rows = [("(a) supervised: labeled set only" + ("" if own_teacher else " (= teacher)"), supervised,
                 baseline_steps)]
        if own_teacher:
            rows.append(("teacher: previous round's student", model_row(*args.teacher), model_steps(*args.teacher)))
        rows.append((f"teacher + TTA, {passes_of(read_coco(args.tta), args.tta)} passes", labels_row(args.tta, args.val_gt),
                     ""))
        if args.generated_gt is not None:
            rows.append(("generated labels (vs hidden truth)", labels_row(args.generated, args.generated_gt), ""))
        rows.append(("(b) student: labeled + generated", student, student_steps))
    except UserError as error:
        print(f"report: error: {error}", file=sys.stderr)
        return 2
    print(f"{'round ' + args.round:<46} {'box AP':>7} {'kp AP':>7}  steps det/kp")
    for name, (box, keypoint), steps in rows:
        print(f"{name:<46} {box:>7.3f} {keypoint:>7.3f}  {steps}".rstrip())
    print(f"{'(b) - (a)':<46} {student[0] - supervised[0]:>+7.3f} {student[1] - supervised[1]:>+7.3f}")
    if baseline_steps != student_steps:
        print(f"note: the student trained {student_steps} steps and (a) {baseline_steps}: (b) - (a) is not a "
              "same-schedule comparison")
    return 0


if __name__ == "__main__":
    sys.exit(main())
