"""`distill select --predictions OUT --out LABELS.json [--threshold T]`.

Today: every prediction above the run's score floor, or above one fixed `--threshold`.
Per-category thresholds calibrated on a labeled set slot in here as another rule.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "select", help="turn a labeling run's predictions into a COCO labels file",
        description="Read OUT/shards (distill label) and write a COCO dataset JSON of hard labels "
                    "that pycocotools loads as ground truth.")
    p.add_argument("--predictions", required=True, type=Path, help="the run folder of distill label")
    p.add_argument("--out", required=True, type=Path, help="COCO JSON to write")
    p.add_argument("--threshold", type=float, default=None,
                   help="keep detections with score >= T (default: all above the run's score floor)")
    p.add_argument("--keypoint-threshold", type=float, default=0.0,
                   help="keypoints scoring below this get visibility 0 (default 0: all visible)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.label.shards import read_manifest
    from engine.atomic import write_json_atomically
    from engine.select.coco import select_labels
    from engine.select.predictions import iter_records

    manifest = read_manifest(args.predictions)
    floor = manifest["settings"]["labeling"]["merge"]["score_floor"]
    threshold = floor if args.threshold is None else args.threshold
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"--threshold must be in [0, 1], got {threshold}")
    if not manifest.get("complete"):
        print(f"warning: the run in {args.predictions} is not complete; selecting its finished shards")
    info = {"description": "generated labels (distill select)", "predictions": str(args.predictions),
            "thresholds": {"rule": "fixed", "score": threshold, "keypoint": args.keypoint_threshold},
            "labeling": manifest["settings"]}
    data = select_labels(iter_records(args.predictions), manifest["categories"], threshold,
                         args.keypoint_threshold, info)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomically(args.out, data, ensure_ascii=False, separators=(",", ":"))
    print(f"wrote {args.out}: {len(data['images'])} images, {len(data['annotations'])} labels "
          f"(score >= {threshold})")
    return 0
