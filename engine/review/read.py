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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.coco_file import read_coco_dataset
from engine.errors import UserError
from engine.select.predictions import iter_records

# Score histograms for the plots count scores in steps of 1 / PLOT_BINS: bin k holds the
# scores in [k, k+1) / PLOT_BINS, so #(scores >= k / PLOT_BINS) is exact on that grid.
PLOT_BINS = 1000


@dataclass
class LabelSet:
    """A COCO labels file, indexed. `annotations` maps every image id (also those
    without labels) to its labels; `thresholds` is `info["thresholds"]` or None."""

    path: Path
    images: dict[int, dict[str, Any]]
    categories: dict[int, dict[str, Any]]
    annotations: dict[int, list[dict[str, Any]]]
    thresholds: dict[str, Any] | None
    ids_by_file: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ids_by_file = {image["file_name"]: image_id for image_id, image in self.images.items()}


def _index(data: dict[str, Any], path: Path, flag: str) -> tuple[dict, dict, dict]:
    """({image id: image}, {category id: category}, {image id: [annotations]}) of a COCO
    dict, checking every field the gallery uses. The dicts of `data` are normalized in
    place (ids to int, boxes to floats), not copied: a label set of a million
    annotations is held once."""
    try:
        images = {}
        for image in data["images"]:
            image.update(file_name=str(image["file_name"]), width=int(image["width"]), height=int(image["height"]))
            images[int(image["id"])] = image
        categories = {}
        for category in data["categories"]:
            category["name"] = str(category.get("name", category["id"]))
            categories[int(category["id"])] = category
        annotations: dict[int, list[dict[str, Any]]] = {image_id: [] for image_id in images}
        for annotation in data["annotations"]:
            bbox = [float(v) for v in annotation["bbox"]]
            if len(bbox) != 4:
                raise ValueError(f"annotation {annotation.get('id')} has a bbox of {len(bbox)} numbers")
            image_id, category_id = int(annotation["image_id"]), int(annotation["category_id"])
            if image_id not in images:
                raise ValueError(f"annotation {annotation.get('id')} refers to image id {image_id}, not listed")
            if category_id not in categories:
                raise ValueError(f"annotation {annotation.get('id')} has category id {category_id}, not listed")
            annotation.update(bbox=bbox, category_id=category_id)
            annotations[image_id].append(annotation)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        detail = error.args[0] if isinstance(error, ValueError) and error.args else repr(error)
        raise UserError(f"{flag} {path} is not COCO: {detail}") from None
    return images, categories, annotations


def load_labels(path: Path) -> LabelSet:
    """The labels file `path`: UserError when it is missing, not COCO or lists no image."""
    data = read_coco_dataset(path, "--labels")
    images, categories, annotations = _index(data, path, "--labels")
    if not images:
        raise UserError(f"--labels {path} lists no images")
    info = data.get("info")
    thresholds = info.get("thresholds") if isinstance(info, dict) else None
    return LabelSet(path, images, categories, annotations, thresholds if isinstance(thresholds, dict) else None)


def category_records(labels: LabelSet) -> dict[int, dict[str, Any]]:
    """{category id: its row of `info["thresholds"]["categories"]`} (the calibrated rule's
    threshold, labeled_per_image, ...) for the categories of the labels that have one."""
    rows = (labels.thresholds or {}).get("categories")
    if not isinstance(rows, dict):
        return {}
    return {cid: row for cid in labels.categories if isinstance(row := rows.get(str(cid)), dict)}


def category_thresholds(labels: LabelSet) -> dict[int, float | None]:
    """{category id: score threshold} from `info["thresholds"]`: the calibrated rule's
    per-category thresholds (None: the category got no labels), the fixed rule's one
    score for every category; {} when the file records none."""
    recorded = labels.thresholds or {}
    if recorded.get("rule") == "fixed" and isinstance(recorded.get("score"), (int, float)):
        return {cid: float(recorded["score"]) for cid in labels.categories}
    return {cid: None if row["threshold"] is None else float(row["threshold"])
            for cid, row in category_records(labels).items() if "threshold" in row}


def keypoint_threshold(labels: LabelSet) -> float | None:
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


def load_ground_truth(path: Path, labels: LabelSet) -> GroundTruth:
    """The COCO file `path` matched to `labels` by file_name; UserError when it shares no
    image with them or names a shared category id differently."""
    data = read_coco_dataset(path, "--gt")
    images, categories, annotations = _index(data, path, "--gt")
    renamed = [f"{cid} is '{labels.categories[cid]['name']}' in the labels, '{c['name']}' in the ground truth"
               for cid, c in categories.items()
               if cid in labels.categories and c["name"] != labels.categories[cid]["name"]]
    if renamed:
        raise UserError(f"--gt {path} is from another label set: category {renamed[0]}")
    by_image, ignored = {}, 0
    for gt_id, image in images.items():
        label_id = labels.ids_by_file.get(image["file_name"])
        if label_id is None:
            continue
        kept = [a for a in annotations[gt_id] if a["category_id"] in labels.categories]
        ignored += len(annotations[gt_id]) - len(kept)
        by_image[label_id] = kept
    if not by_image:
        first = next(iter(images.values()), {}).get("file_name")
        raise UserError(f"--gt {path} shares no file_name with --labels {labels.path} "
                        f"(ground truth lists {len(images)} images, e.g. {first!r})")
    return GroundTruth(path, by_image, ignored)


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


def read_predictions(out: Path, labels: LabelSet, thresholds: dict[int, float | None],
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
