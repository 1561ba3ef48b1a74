"""Staged plans: a cheap first stage for every image, more passes only where a rule says so.

A staged plan (`LabelSettings.escalation`) runs the passes `first` (a subset of the
plan's) for every image and merges them; a rule looks at that merged output and the
first stage's own candidates and decides whether the image is *escalated*: then the
plan's other passes run for it too and every pass's candidates are merged together, in
plan order, exactly as a fixed plan of all the passes would merge them. Rules, each with
its parameters (`distill plan-transforms` chooses one and its values on a labeled set):

    empty      no detection scores >= score                          (params: score)
    small      a detection scoring >= score has sqrt(w h) < size px   (params: score, size)
    uncertain  a detection scores in [low, high): near the           (params: low, high)
               calibrated threshold, where the label is undecided
    disagree   a detection scoring >= score is not found, with the    (params: score, iou)
               same category and IoU >= iou, among the candidates
               scoring >= score of every first-stage pass

Each rule is a plain function of one image's arrays, so it gives the same answer in the
labeling pipeline, in `distill remerge` and in `distill plan-transforms`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.coco.geometry import box_area, box_iou
from engine.label.detect import Candidates
from engine.label.merge import Detections
from engine.label.views import Pass


def _empty(detections: Detections, parts: list[Candidates], score: float) -> bool:
    return not bool((detections.scores >= score).any())


def _small(detections: Detections, parts: list[Candidates], score: float, size: float) -> bool:
    return bool((np.sqrt(box_area(detections.boxes[detections.scores >= score])) < size).any())


def _uncertain(detections: Detections, parts: list[Candidates], low: float, high: float) -> bool:
    return bool(((detections.scores >= low) & (detections.scores < high)).any())


def _disagree(detections: Detections, parts: list[Candidates], score: float, iou: float) -> bool:
    confident = detections.scores >= score
    boxes, labels = detections.boxes[confident], detections.labels[confident]
    if not len(boxes):
        return False
    for part in parts:
        keep = part.scores >= score
        overlap = box_iou(boxes, part.boxes[keep])
        same = labels[:, None] == part.labels[keep][None]
        if not ((overlap >= iou) & same).any(axis=1).all():
            return True
    return False


RULES: dict[str, tuple[Callable[..., bool], tuple[str, ...]]] = {
    "empty": (_empty, ("score",)),
    "small": (_small, ("score", "size")),
    "uncertain": (_uncertain, ("low", "high")),
    "disagree": (_disagree, ("score", "iou")),
}


@dataclass(frozen=True)
class Escalation:
    """The stages of a staged plan: `first`, the passes every image gets (canonical order,
    as TransformPlan keeps them); `rule`, one of RULES; `params`, its parameters as
    (name, value) pairs in the rule's order. The escalation passes are the plan's others."""

    first: tuple[Pass, ...]
    rule: str
    params: tuple[tuple[str, float], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "first", tuple(sorted((int(s), bool(f)) for s, f in self.first)))
        if not self.first:
            raise ValueError("the first stage needs at least one pass")
        if self.rule not in RULES:
            raise ValueError(f"unknown escalation rule {self.rule!r}: choose from {', '.join(RULES)}")
        given = dict(self.params)
        names = RULES[self.rule][1]
        if set(given) != set(names):
            raise ValueError(f"rule {self.rule!r} takes the parameters {', '.join(names)}, got {sorted(given)}")
        object.__setattr__(self, "params", tuple((name, float(given[name])) for name in names))

    def escalates(self, detections: Detections, parts: list[Candidates]) -> bool:
        """Whether an image whose first stage gave `parts` (one `Candidates` per first-stage
        pass) and merged into `detections` gets the other passes."""
        return RULES[self.rule][0](detections, parts, *(value for _, value in self.params))

    def to_dict(self) -> dict:
        return {"first": [[s, f] for s, f in self.first], "rule": self.rule, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: dict) -> "Escalation":
        """The inverse of `to_dict` (KeyError, TypeError or ValueError on a malformed dict)."""
        first = []
        for item in data["first"]:
            scale, mirrored = item
            if not isinstance(mirrored, bool) or isinstance(scale, bool) or int(scale) != scale:
                raise ValueError(f"a pass is [shorter side, mirrored], got {item!r}")
            first.append((int(scale), mirrored))
        params = data["params"]
        if not isinstance(params, dict):
            raise TypeError("params is an object of numbers")
        return cls(tuple(first), str(data["rule"]), tuple(params.items()))
