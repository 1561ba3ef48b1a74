"""What the gallery shows, read and indexed: the labels (the COCO file `distill select`
writes), optionally the ground truth of the same images (matched by `file_name`) and,
from a labeling run, the predictions just under their category's threshold together
with every category's score histogram (for the threshold plots).

The predictions are streamed (engine.select.predictions.iter_records): only the few
near-threshold detections are kept, so memory does not grow with the run.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.coco.read import CocoSet
from engine.errors import UserError
from engine.select.predictions import iter_records

# Score histograms for the plots count scores in steps of 1 / PLOT_BINS: bin k holds the
# scores in [k, k+1) / PLOT_BINS, so #(scores >= k / PLOT_BINS) is exact on that grid.
PLOT_BINS = 1000


def category_records(labels: CocoSet) -> dict[int, dict[str, Any]]:
    """{category id: its row of `info["thresholds"]["categories"]`} (the calibrated rule's
    threshold, labeled_per_image, ...) for the categories of the labels that have one."""
    rows = (labels.thresholds or {}).get("categories")
    if not isinstance(rows, dict):
        return {}
    return {cid: row for cid in labels.categories if isinstance(row := rows.get(str(cid)), dict)}


def category_thresholds(labels: CocoSet) -> dict[int, float | None]:
    """{category id: score threshold} from `info["thresholds"]`: the calibrated rule's
    per-category thresholds (None: the category got no labels), the fixed rule's one
    score for every category; {} when the file records none."""
    recorded = labels.thresholds or {}
    if recorded.get("rule") == "fixed" and isinstance(recorded.get("score"), (int, float)):
        return {cid: float(recorded["score"]) for cid in labels.categories}
    return {cid: None if row["threshold"] is None else float(row["threshold"])
            for cid, row in category_records(labels).items() if "threshold" in row}


def keypoint_threshold(labels: CocoSet) -> float | None:
    """The keypoint score threshold the labels were selected with, or None."""
    recorded = labels.thresholds or {}
    value = recorded.get("keypoint")
    if isinstance(value, dict):  # calibrated: {"threshold", "labeled_mean_visible", ...}
        value = value.get("threshold")
    return float(value) if isinstance(value, (int, float)) else None


@dataclass
class GroundTruth:
    """Ground truth re-keyed to the labels' image ids: `by_image` holds the GT annotations
    of every labeled image that the GT file lists (also an empty list)."""

    path: Path
    by_image: dict[int, list[dict[str, Any]]]
    ignored: int  # GT annotations of categories the labels do not have


def match_ground_truth(gt: CocoSet, labels: CocoSet) -> GroundTruth:
    """The ground truth `gt` matched to `labels` by file_name; UserError when it shares
    no image with them or names a shared category id differently."""
    renamed = [f"{cid} is '{labels.categories[cid]['name']}' in the labels, '{c['name']}' in the ground truth"
               for cid, c in gt.categories.items()
               if cid in labels.categories and c["name"] != labels.categories[cid]["name"]]
    if renamed:
        raise UserError(f"{gt.path} is from another label set than {labels.path}: category {renamed[0]}")
    by_image, ignored = {}, 0
    for gt_id, image in gt.images.items():
        label_id = labels.ids_by_file.get(image["file_name"])
        if label_id is None:
            continue
        kept = [a for a in gt.annotations[gt_id] if a["category_id"] in labels.categories]
        ignored += len(gt.annotations[gt_id]) - len(kept)
        by_image[label_id] = kept
    if not by_image:
        first = next(iter(gt.images.values()), {}).get("file_name")
        raise UserError(f"{gt.path} shares no file_name with {labels.path} "
                        f"(ground truth lists {len(gt.images)} images, e.g. {first!r})")
    return GroundTruth(gt.path, by_image, ignored)


@dataclass
class NearThreshold:
    """What the gallery needs from a labeling run.

    by_image: {labels' image id: [detections with threshold - band <= score < threshold]}
    counts: {category id: its number of those detections}
    histograms: {category id: `(PLOT_BINS,)` int64 count of all its scores per bin}
    records: images in the run (also those the labels do not list).
    """

    by_image: dict[int, list[dict[str, Any]]]
    counts: Counter
    histograms: dict[int, np.ndarray]
    records: int


def score_bin(score: float) -> int:
    """Histogram bin of a score (scores are clipped into [0, 1]; 1.0 joins the last bin).
    The tiny epsilon keeps a score that sits on a grid point (0.123) in its own bin
    despite binary rounding (0.123 * 1000 = 122.99999...)."""
    return min(PLOT_BINS - 1, max(0, math.floor(score * PLOT_BINS + 1e-6)))


def read_predictions(out: Path, labels: CocoSet, thresholds: dict[int, float | None],
                     band: float) -> NearThreshold:
    """Stream the run in `out` once: the detections within `band` under their category's
    threshold (a category without a threshold has none) and every category's histogram."""
    by_image: dict[int, list[dict[str, Any]]] = {}
    counts: Counter = Counter()
    bins: dict[int, array] = {}  # 2 bytes a detection: a run of millions stays small
    records = 0
    for record in iter_records(out):
        records += 1
        image_id = labels.ids_by_file.get(record.get("file_name"))
        for detection in record.get("detections", []):
            cid, score = int(detection["category_id"]), float(detection["score"])
            bins.setdefault(cid, array("H")).append(score_bin(score))
            threshold = thresholds.get(cid)
            if image_id is not None and threshold is not None and threshold - band <= score < threshold:
                by_image.setdefault(image_id, []).append({**detection, "category_id": cid})
                counts[cid] += 1
    histograms = {cid: np.bincount(np.frombuffer(values, np.uint16), minlength=PLOT_BINS)
                  for cid, values in bins.items()}
    if records == 0:
        raise UserError(f"--predictions {out} holds no records (no finished shard with an image)")
    return NearThreshold(by_image, counts, histograms, records)
