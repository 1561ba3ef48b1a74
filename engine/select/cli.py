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
import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from engine.atomic import write_json_atomically
from engine.errors import UserError
from engine.label.shards import read_manifest
from engine.select.coco import select_labels
from engine.select.predictions import iter_records
from engine.select.thresholds import category_histograms, count_threshold, keypoint_threshold


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
    manifest = read_manifest(args.predictions)
    if not manifest.get("complete"):
        print(f"warning: the run in {args.predictions} is not complete; selecting its finished shards")
    info = {"description": "generated labels (distill select)", "predictions": str(args.predictions),
            "labeling": manifest["settings"]}
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


def _select_fixed(args: argparse.Namespace, manifest: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    floor = manifest["settings"]["labeling"]["merge"]["score_floor"]
    threshold = floor if args.threshold is None else args.threshold
    keypoint = 0.0 if args.keypoint_threshold is None else args.keypoint_threshold
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"--threshold must be in [0, 1], got {threshold}")
    info = {**info, "thresholds": {"rule": "fixed", "score": threshold, "keypoint": keypoint}}
    data = select_labels(iter_records(args.predictions), _run_categories(args.predictions, manifest),
                         threshold, keypoint, info)
    if not data["images"]:
        raise UserError(f"{args.predictions} holds no records (no finished shard with an image)")
    return data


# ---- the labeled set -------------------------------------------------------------------
@dataclass
class LabeledStatistics:
    """What the calibrated rule needs of the labeled set: `images` (all of them, with or
    without annotations), non-crowd `instances` per category id, the `person` category
    (the one with "keypoints"), and over its non-crowd `people` with visible keypoints
    the total number `visible` of those keypoints."""

    images: int
    instances: Counter
    person: int | None
    people: int
    visible: int


def _read_labeled(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--labeled {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read --labeled {path}: {error}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(key), list) for key in ("images", "annotations")):
        raise UserError(f"--labeled {path} is not a COCO dataset (no 'images' and 'annotations' lists)")
    if not isinstance(data.get("categories"), list) or not data["categories"]:
        raise UserError(f"--labeled {path} has no 'categories' list: the category ids cannot be matched")
    if not data["images"]:
        raise UserError(f"--labeled {path} lists no images: there is no mean per image to match")
    return data


def labeled_statistics(data: dict[str, Any], path: Path) -> LabeledStatistics:
    """Counts of a COCO dataset dict `data` read from `path` (named in errors)."""
    try:
        person = next((int(c["id"]) for c in data["categories"] if c.get("keypoints")), None)
        instances, people, visible = Counter(), 0, 0
        for annotation in data["annotations"]:
            if annotation.get("iscrowd", 0):
                continue
            category = int(annotation["category_id"])
            instances[category] += 1
            if category == person:
                count = annotation.get("num_keypoints")
                if count is None:
                    count = sum(1 for v in annotation.get("keypoints", [])[2::3] if v > 0)
                if count > 0:
                    people, visible = people + 1, visible + int(count)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise UserError(f"--labeled {path}: a category or annotation is not COCO ({error!r})") from None
    return LabeledStatistics(len(data["images"]), instances, person, people, visible)


def _run_categories(out: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    categories = manifest.get("categories")
    if not isinstance(categories, list):
        raise UserError(f"the run in {out} records no categories in its manifest; label it again")
    return categories


def _check_categories(run: list[dict[str, Any]], labeled: list[dict[str, Any]], out: Path, path: Path) -> None:
    """UserError unless the run and the labeled set share category ids with equal names.
    Ids on one side only are allowed: a run category absent from the labeled set simply
    gets no labels, a labeled category the run never predicts none either."""
    try:
        labeled_names = {int(c["id"]): c.get("name") for c in labeled}
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"--labeled {path}: a category is not COCO ({error!r})") from None
    run_names = {int(c["id"]): c["name"] for c in run}
    shared = sorted(run_names.keys() & labeled_names.keys())
    if not shared:
        raise UserError(f"--labeled {path} shares no category id with the run in {out} (labeled ids "
                        f"{sorted(labeled_names)[:10]}, run ids {sorted(run_names)[:10]})")
    differ = [i for i in shared if run_names[i] != labeled_names[i]]
    if differ:
        detail = "; ".join(f"{i} is {run_names[i]!r} in the run, {labeled_names[i]!r} in {path.name}"
                           for i in differ[:5])
        raise UserError(f"the run in {out} is from another label set than --labeled {path}: category ids "
                        f"{differ} differ ({detail}{'; ...' if len(differ) > 5 else ''})")


# ---- the calibrated rule -----------------------------------------------------------------
def _category_pass(out: Path) -> tuple[dict[int, np.ndarray], int]:
    """Pass 1: ({category id: `(BINS,)` int64 score histogram}, number of records)."""
    images = 0

    def scores() -> Iterator[tuple[int, float]]:
        nonlocal images
        for record in iter_records(out):
            images += 1
            for detection in record["detections"]:
                yield detection["category_id"], detection["score"]

    histograms = category_histograms(scores())
    return histograms, images


def _keypoint_pass(out: Path, person: int, threshold: float) -> tuple[np.ndarray | None, int]:
    """Pass 2: (`(BINS,)` int64 histogram of the keypoint scores of the people with
    score >= `threshold`, or None when there is none; their number)."""
    people = 0

    def scores() -> Iterator[tuple[int, float]]:
        nonlocal people
        for record in iter_records(out):
            for detection in record["detections"]:
                if detection["category_id"] == person and "keypoints" in detection \
                        and detection["score"] >= threshold:
                    people += 1
                    for score in detection["keypoints"][2::3]:
                        yield 0, score

    histogram = category_histograms(scores()).get(0)
    return histogram, people


def select_calibrated(out: Path, manifest: dict[str, Any], labeled_path: Path,
                      info: dict[str, Any]) -> dict[str, Any]:
    """COCO dict of the run in `out` (its `manifest`) under thresholds calibrated on the
    labeled COCO file `labeled_path`; prints the thresholds as a table."""
    categories = _run_categories(out, manifest)
    labeled = _read_labeled(labeled_path)
    _check_categories(categories, labeled["categories"], out, labeled_path)
    stats = labeled_statistics(labeled, labeled_path)
    labeled_ids = {int(c["id"]) for c in labeled["categories"]}
    del labeled  # the labeled set can be large; only its counts are needed from here on

    histograms, images = _category_pass(out)
    if images == 0:
        raise UserError(f"{out} holds no records (no finished shard with an image)")
    thresholds: dict[int, float | None] = {}
    for category in categories:
        cid = int(category["id"])
        histogram = histograms.get(cid)
        # T_c = (instances / labeled images) * unlabeled images, exact
        target = Fraction(stats.instances[cid] * images, stats.images)
        known = cid in labeled_ids and histogram is not None
        thresholds[cid] = count_threshold(histogram, target) if known else None

    person_threshold = thresholds.get(stats.person)
    target_visible = Fraction(stats.visible, stats.people) if stats.people else None
    keypoint = None
    if person_threshold is not None and target_visible is not None:
        histogram, people = _keypoint_pass(out, stats.person, person_threshold)
        if histogram is not None:
            keypoint = keypoint_threshold(histogram, people, target_visible)

    # no keypoint threshold means, as for a category, that none is kept: all get v=0
    data = select_labels(iter_records(out), categories, thresholds,
                         math.inf if keypoint is None else keypoint, info)
    data["info"]["thresholds"] = _report(data, categories, thresholds, keypoint, stats, labeled_ids,
                                         labeled_path, images)
    _print_table(data["info"]["thresholds"], labeled_ids - set(thresholds))
    return data


def _report(data: dict[str, Any], categories: list[dict[str, Any]], thresholds: dict[int, float | None],
            keypoint: float | None, stats: LabeledStatistics, labeled_ids: set[int], labeled_path: Path,
            images: int) -> dict[str, Any]:
    """`info["thresholds"]`; the generated numbers are counted in the labels written."""
    counts = Counter(a["category_id"] for a in data["annotations"])
    rows = {}
    for category in categories:
        cid = int(category["id"])
        rows[str(cid)] = {
            "name": category["name"],
            "labeled_per_image": stats.instances[cid] / stats.images if cid in labeled_ids else None,
            "threshold": thresholds[cid],
            "generated_per_image": counts[cid] / images,
            "count": counts[cid],
        }
    people = [a["num_keypoints"] for a in data["annotations"]
              if a["category_id"] == stats.person and "keypoints" in a]
    return {"rule": "calibrated", "labeled": str(labeled_path), "categories": rows,
            "keypoint": {"labeled_mean_visible": stats.visible / stats.people if stats.people else None,
                         "threshold": keypoint,
                         "generated_mean_visible": sum(people) / len(people) if people else None}}


def _print_table(report: dict[str, Any], labeled_only: set[int]) -> None:
    def number(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    print(f"{'category':<24} {'labeled/img':>11} {'threshold':>9} {'generated/img':>13} {'count':>8}")
    for cid, row in report["categories"].items():
        print(f"{cid + ' ' + row['name']:<24} {number(row['labeled_per_image'], 4):>11} "
              f"{number(row['threshold'], 5):>9} {number(row['generated_per_image'], 4):>13} {row['count']:>8}")
    k = report["keypoint"]
    print(f"keypoints: labeled mean visible {number(k['labeled_mean_visible'], 3)}, threshold "
          f"{number(k['threshold'], 5)}, generated mean visible {number(k['generated_mean_visible'], 3)}")
    if labeled_only:
        print(f"note: labeled category ids {sorted(labeled_only)} are not predicted by the run (no labels)")
