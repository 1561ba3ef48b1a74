"""`distill select`: a labeling run's predictions into hard labels, a COCO file.

    distill select --predictions OUT --labeled LABELED.json --out PSEUDO.json   # calibrated
    distill select --predictions OUT --out LABELS.json [--threshold T]          # fixed

Calibrated (the paper's rule, DESIGN.md Labels): per category, the score threshold that
gives the run as many labels per image as LABELED.json has non-crowd instances per
image; for people, the keypoint threshold that leaves a selected person as many visible
keypoints as a labeled person has (engine/select/thresholds.py states the exact rule).
The shards are streamed three times (category score histograms; keypoint score
histograms of the people above the person threshold; the labels): the thresholds take
memory that does not grow with the predictions (fixed-size histograms, 0 bytes a
detection), the single file memory that grows with the labels kept.

    distill select ... --out LABELS --shards

writes the labels as a folder instead (engine/select/sharded.py): one COCO file per
labeling shard, index.json with the counts, thresholds and categories, and the offset
tables that `distill train --pseudo-json LABELS` reads them through. It holds one shard
at a time, so its memory does not grow with the run; its files, concatenated, are the
single file.

Fixed: every prediction with score >= T (default: the run's score floor).

Both rules record their thresholds in the output's `info["thresholds"]`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.atomic import write_json_atomically
from engine.errors import UserError
from engine.label.manifest import RunManifest
from engine.select.calibrated import calibrate
from engine.select.coco import LabelMaker, coco_info, collect_labels
from engine.select.predictions import iter_records, iter_shards, run_categories
from engine.select.sharded import ShardedLabelsWriter


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "select", help="turn a labeling run's predictions into a COCO labels file",
        description="Read OUT/shards (distill label) and write a COCO dataset JSON of hard labels "
                    "that pycocotools loads as ground truth. With --labeled, per-category score "
                    "thresholds and the keypoint threshold are calibrated on the labeled set; "
                    "otherwise one fixed --threshold applies.")
    p.add_argument("--predictions", required=True, type=Path, metavar="OUT", help="the run folder of distill label")
    p.add_argument("--out", required=True, type=Path, metavar="LABELS.json", help="COCO JSON to write (with --shards: "
                   "a folder)")
    p.add_argument("--shards", action="store_true",
                   help="write the labels as a folder: one COCO file per labeling shard plus index.json (counts, "
                        "thresholds, categories) and the offset tables distill train --pseudo-json reads them "
                        "through; memory stays that of one shard (for dumps; the files concatenated are the single "
                        "file)")
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
    if args.shards and args.out.suffix == ".json":
        raise UserError(f"--shards writes a folder: --out {args.out} names a .json file")
    manifest = RunManifest.load(args.predictions)
    if not manifest.complete:
        print(f"warning: the run in {args.predictions} is not complete; selecting its finished shards")
    info = {"description": "generated labels (distill select)", "predictions": str(args.predictions),
            "labeling": manifest.settings.to_dict()}
    categories = run_categories(args.predictions, manifest)
    calibration = None
    if args.labeled is not None:
        calibration = calibrate(args.predictions, manifest, args.labeled)
        maker, report_of = calibration.maker(), calibration.report
        rule = f"thresholds calibrated on {args.labeled}"
    else:
        score = manifest.settings.labeling.merge.score_floor if args.threshold is None else args.threshold
        if not 0.0 <= score <= 1.0:
            raise UserError(f"--threshold must be in [0, 1], got {score}")
        keypoint = 0.0 if args.keypoint_threshold is None else args.keypoint_threshold
        maker = LabelMaker({int(c["id"]): score for c in categories}, keypoint)
        fixed = {"rule": "fixed", "score": score, "keypoint": keypoint}
        report_of = lambda _: fixed  # noqa: E731 - the fixed rule's report is known before labeling
        rule = f"score >= {score}"

    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.shards:
        report = _write_shards(args, categories, maker, info, report_of)
    else:
        images, annotations = collect_labels(iter_records(args.predictions), maker)
        if not images:
            raise UserError(f"{args.predictions} holds no records (no finished shard with an image)")
        report = report_of(maker)
        data = {"info": coco_info({**info, "thresholds": report}), "images": images, "annotations": annotations,
                "categories": categories}
        write_json_atomically(args.out, data, ensure_ascii=False, separators=(",", ":"))
    if calibration is not None:
        calibration.print_table(report)
    shape = f" in {len(manifest.shards)} shards" if args.shards else ""
    print(f"wrote {args.out}: {maker.images} images, {maker.annotations} labels{shape} ({rule})")
    return 0


def _write_shards(args: argparse.Namespace, categories: list[dict[str, Any]], maker: LabelMaker,
                  info: dict[str, Any], report_of: Callable[[LabelMaker], dict[str, Any]]) -> dict[str, Any]:
    """The labels as sharded labels in the folder args.out, a labeling shard at a time;
    their `info["thresholds"]` (`report_of` the maker after labeling)."""
    writer = ShardedLabelsWriter(args.out, categories)
    for entry, records in iter_shards(args.predictions):
        writer.add_shard(Path(entry.file).stem + ".json", [maker.label(record) for record in records])
    if maker.images == 0:
        writer.discard()
        raise UserError(f"{args.predictions} holds no records (no finished shard with an image)")
    report = report_of(maker)
    writer.finish(coco_info({**info, "thresholds": report}))
    return report
