"""`distill select`: a labeling run's predictions into hard labels, a COCO file.

    distill select --predictions OUT --labeled LABELED.json --out PSEUDO.json   # calibrated
    distill select --predictions OUT --out LABELS.json [--threshold T]          # fixed

Calibrated (the paper's rule, DESIGN.md Labels): per category, the score threshold that
gives the run as many labels per image as LABELED.json has non-crowd instances per
image; for people, the keypoint threshold that leaves a selected person as many visible
keypoints as a labeled person has (engine/select/thresholds.py states the exact rule).
The shards are streamed three times (category score histograms; keypoint score
histograms of the people above the person threshold; the labels), so memory grows
with the labels kept, not with the predictions.

Fixed: every prediction with score >= T (default: the run's score floor).

Both rules record their thresholds in the output's `info["thresholds"]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine.atomic import write_json_atomically
from engine.errors import UserError
from engine.label.manifest import RunManifest
from engine.select.calibrated import select_calibrated
from engine.select.coco import select_labels
from engine.select.predictions import iter_records, run_categories


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "select", help="turn a labeling run's predictions into a COCO labels file",
        description="Read OUT/shards (distill label) and write a COCO dataset JSON of hard labels "
                    "that pycocotools loads as ground truth. With --labeled, per-category score "
                    "thresholds and the keypoint threshold are calibrated on the labeled set; "
                    "otherwise one fixed --threshold applies.")
    p.add_argument("--predictions", required=True, type=Path, metavar="OUT", help="the run folder of distill label")
    p.add_argument("--out", required=True, type=Path, metavar="LABELS.json", help="COCO JSON to write")
    p.add_argument("--labeled", type=Path, default=None, metavar="LABELED.json",
                   help="the labeled COCO JSON the teachers were trained on: choose each category's "
                        "threshold so that the mean number of labels per image equals its mean number "
                        "of non-crowd instances per image, and the keypoint threshold so that the mean "
                        "number of visible keypoints per person equals its own (excludes --threshold "
                        "and --keypoint-threshold)")
    p.add_argument("--threshold", type=float, default=None, metavar="T",
                   help="fixed rule: keep detections with score >= T (default: all above the run's "
                        "score floor)")
    p.add_argument("--keypoint-threshold", type=float, default=None, metavar="K",
                   help="fixed rule: keypoints scoring below this get visibility 0 (default 0: all "
                        "visible); with --labeled the calibrated rule chooses it, so it is an error")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.labeled is not None and args.threshold is not None:
        raise UserError("--threshold and --labeled are two different rules: pass one of them")
    if args.labeled is not None and args.keypoint_threshold is not None:
        raise UserError("--keypoint-threshold cannot be combined with --labeled: the calibrated rule "
                        "chooses the keypoint threshold")
    manifest = RunManifest.load(args.predictions)
    if not manifest.complete:
        print(f"warning: the run in {args.predictions} is not complete; selecting its finished shards")
    info = {"description": "generated labels (distill select)", "predictions": str(args.predictions),
            "labeling": manifest.settings.to_dict()}
    if args.labeled is not None:
        data = select_calibrated(args.predictions, manifest, args.labeled, info)
        rule = f"thresholds calibrated on {args.labeled}"
    else:
        data = _select_fixed(args, manifest, info)
        rule = f"score >= {data['info']['thresholds']['score']}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomically(args.out, data, ensure_ascii=False, separators=(",", ":"))
    print(f"wrote {args.out}: {len(data['images'])} images, {len(data['annotations'])} labels ({rule})")
    return 0


def _select_fixed(args: argparse.Namespace, manifest: RunManifest, info: dict[str, Any]) -> dict[str, Any]:
    floor = manifest.settings.labeling.merge.score_floor
    threshold = floor if args.threshold is None else args.threshold
    keypoint = 0.0 if args.keypoint_threshold is None else args.keypoint_threshold
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"--threshold must be in [0, 1], got {threshold}")
    info = {**info, "thresholds": {"rule": "fixed", "score": threshold, "keypoint": keypoint}}
    categories = run_categories(args.predictions, manifest)
    data = select_labels(iter_records(args.predictions), categories,
                         {int(c["id"]): threshold for c in categories}, keypoint, info)
    if not data["images"]:
        raise UserError(f"{args.predictions} holds no records (no finished shard with an image)")
    return data
