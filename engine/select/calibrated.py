"""The calibrated rule over a labeling run: two streamed passes over its shards
(category score histograms; keypoint score histograms of the selected people) give the
thresholds (engine.select.thresholds); the labels are a third pass, written by the
command (engine/select/cli.py) as one file or as shards; then the report and the
printed table."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import UserError
from engine.label.manifest import RunManifest
from engine.select.coco import LabelMaker
from engine.select.labeled import LabeledStatistics, check_categories, labeled_statistics, read_labeled
from engine.select.predictions import iter_records, run_categories
from engine.select.thresholds import category_histograms, count_threshold, keypoint_threshold


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


@dataclass
class Calibration:
    """The calibrated rule's outcome over a run: per-category score `thresholds` (None:
    nothing kept), the `keypoint` threshold (None: no keypoint visible), and what the
    report needs (the labeled set's statistics, the run's number of `images`)."""

    categories: list[dict[str, Any]]
    thresholds: dict[int, float | None]
    keypoint: float | None
    stats: LabeledStatistics
    labeled_ids: set[int]
    labeled_path: Path
    images: int

    def maker(self) -> LabelMaker:
        # no keypoint threshold means, as for a category, that none is kept: all get v=0
        return LabelMaker(self.thresholds, math.inf if self.keypoint is None else self.keypoint)

    def report(self, maker: LabelMaker) -> dict[str, Any]:
        """`info["thresholds"]`; the generated numbers are those `maker` labeled."""
        stats, images = self.stats, self.images
        rows = {}
        for category in self.categories:
            cid = int(category["id"])
            rows[str(cid)] = {
                "name": category["name"],
                "labeled_per_image": stats.instances[cid] / stats.images if cid in self.labeled_ids else None,
                "threshold": self.thresholds[cid],
                "generated_per_image": maker.counts[cid] / images,
                "count": maker.counts[cid],
            }
        visible, people = maker.visible.get(stats.person, (0, 0))
        return {"rule": "calibrated", "labeled": str(self.labeled_path), "categories": rows,
                "keypoint": {"labeled_mean_visible": stats.visible / stats.people if stats.people else None,
                             "threshold": self.keypoint,
                             "generated_mean_visible": visible / people if people else None}}

    def print_table(self, report: dict[str, Any]) -> None:
        _print_table(report, self.labeled_ids - set(self.thresholds))


def calibrate(out: Path, manifest: RunManifest, labeled_path: Path) -> Calibration:
    """The thresholds of the run in `out` (its `manifest`) calibrated on the labeled COCO
    file `labeled_path`: passes 1 and 2 over the shards, each holding `(BINS,)` int64
    histograms only (800 kB a category), so memory does not grow with the predictions."""
    categories = run_categories(out, manifest)
    labeled = read_labeled(labeled_path)
    check_categories(categories, labeled, out)
    stats = labeled_statistics(labeled)
    labeled_ids = set(labeled.categories)
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
    return Calibration(categories, thresholds, keypoint, stats, labeled_ids, labeled_path, images)


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
