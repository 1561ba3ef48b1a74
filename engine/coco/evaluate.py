"""COCO evaluation with pycocotools, quiet, under one key naming.

Every statistic of COCOeval's summary is returned as `box_<stat>` for boxes (`box_AP`,
`box_AP50`, ..., `box_AR100`) and `keypoint_<stat>` for keypoints (`keypoint_AP`, ...,
`keypoint_AR`): the trainer's `metrics.json`, `distill eval`, the scores of generated
labels and `plan-transforms` all use these keys. Files written before the keys were
unified name them `bbox_*` and `keypoints_*`; `get_metric` reads both.

A person's keypoint result is scored by its box score times `instance_score` of its
keypoint scores, the same in the trainer's evaluation and for generated labels.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.coco.read import keypoint_category, load_coco, read_coco

if TYPE_CHECKING:
    from pycocotools.coco import COCO

# COCOeval.summarize's statistics, in the order of its `stats` array.
BOX_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
KEYPOINT_STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
_KEYS = {"bbox": ("box_", BOX_STATS), "keypoints": ("keypoint_", KEYPOINT_STATS)}
# The prefixes metrics files had before the keys were unified (the trainer wrote
# bbox_AP and keypoints_AP): a run folder of an earlier version still reports.
_OLD_PREFIXES = {"box_": "bbox_", "keypoint_": "keypoints_"}


def coco_api(data: dict[str, Any]) -> COCO:
    """pycocotools' COCO over the dataset dict `data` (held, not copied), indexed
    without its chatter on stdout."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def run_cocoeval(gt: COCO, results: list[dict[str, Any]], iou_type: str, cat_ids: list[int] | None = None,
                 quiet: bool = True) -> dict[str, float]:
    """COCOeval's summary of `results` (COCO result dicts) against `gt`, as {key: value}
    named as in the module docstring; `iou_type` is "bbox" or "keypoints". `cat_ids`
    restricts the evaluation (keypoints: the person category only, since other
    categories' annotations carry no `num_keypoints`). No results gives zeros (COCO's
    loadRes refuses []). `quiet=False` lets COCOeval print its table."""
    from pycocotools.cocoeval import COCOeval

    prefix, names = _KEYS[iou_type]
    if not results:
        return {prefix + name: 0.0 for name in names}
    with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
        evaluator = COCOeval(gt, gt.loadRes(results), iou_type)
        if cat_ids is not None:
            evaluator.params.catIds = cat_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {prefix + name: float(value) for name, value in zip(names, evaluator.stats)}


def instance_score(peaks: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """`(N,)` float32 mean of each person's confident keypoint scores `peaks` `(N, J)`
    (all of them when none is above `threshold`)."""
    confident = peaks > threshold
    total = np.where(confident, peaks, 0).sum(1)
    count = confident.sum(1)
    return np.where(count > 0, total / np.maximum(count, 1), peaks.mean(1)).astype(np.float32)


def score_labels(gt: COCO, labels: dict[str, Any]) -> dict[str, float]:
    """Box and keypoint statistics of a labels dataset dict (`distill select`'s output,
    scores kept) read as detection results against `gt`: box AP over the ground truth's
    categories, keypoint AP over people (zeros when `gt` has no keypoint category).
    Images are matched by `file_name`."""
    ids = {image["file_name"]: image["id"] for image in gt.dataset["images"]}
    names = {image["id"]: image["file_name"] for image in labels["images"]}
    known = set(gt.getCatIds())
    person = keypoint_category(gt.dataset["categories"])
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
    scores = run_cocoeval(gt, boxes, "bbox", sorted(known))
    scores.update(run_cocoeval(gt, people, "keypoints", [person]))  # no people: zeros
    return scores


def score_label_file(labels: Path, gt: Path) -> dict[str, float]:
    """`score_labels` of the labels file `labels` (read leniently) against the
    ground-truth file `gt` (read strictly)."""
    return score_labels(coco_api(load_coco(gt).data), read_coco(labels))


def get_metric(metrics: Mapping[str, Any], key: str) -> float | None:
    """`metrics[key]` (`box_AP`, `keypoint_AR`, ...), or the same statistic under its
    old name in a file written before the keys were unified; None when neither is there."""
    if key in metrics:
        return metrics[key]
    for prefix, old in _OLD_PREFIXES.items():
        if key.startswith(prefix):
            return metrics.get(old + key[len(prefix):])
    return None
