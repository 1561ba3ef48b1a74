"""The labeled set, as far as calibrated selection needs it: its counts, and whether its
categories are the labeling run's."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.coco.read import CocoSet, keypoint_category, load_coco
from engine.errors import UserError


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


def read_labeled(path: Path) -> CocoSet:
    """The labeled COCO file `path`, every entry checked (`engine.coco.read.load_coco`),
    with at least one image; a one-line UserError otherwise."""
    labeled = load_coco(path)
    if not labeled.images:
        raise UserError(f"{path} lists no images: there is no mean per image to match")
    return labeled


def labeled_statistics(labeled: CocoSet) -> LabeledStatistics:
    """Counts of the labeled set (see LabeledStatistics)."""
    person = keypoint_category(labeled.categories.values())
    instances, people, visible = Counter(), 0, 0
    for annotation in labeled.data["annotations"]:
        if annotation.get("iscrowd", 0):
            continue
        category = annotation["category_id"]
        instances[category] += 1
        if category == person:
            count = annotation.get("num_keypoints")
            if count is None:
                count = sum(1 for v in annotation.get("keypoints", [])[2::3] if v > 0)
            if count > 0:
                people, visible = people + 1, visible + count
    return LabeledStatistics(len(labeled.images), instances, person, people, visible)


def check_categories(run: list[dict[str, Any]], labeled: CocoSet, out: Path) -> None:
    """UserError unless the run and the labeled set share category ids with equal names.
    Ids on one side only are allowed: a run category absent from the labeled set simply
    gets no labels, a labeled category the run never predicts none either."""
    path = labeled.path
    labeled_names = {cid: c["name"] for cid, c in labeled.categories.items()}
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
