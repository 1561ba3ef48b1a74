"""A staged plan chosen on the validation set: a cheap first stage for every image, the
passes of a target plan only for the images a rule escalates (engine.label.escalation).

From the cache, never re-inferred: the target (the fixed plan chosen for `--budget`) and
a first stage (the best subset tried that lies inside the target and costs at most
`first_budget`) are each merged once, with keypoints, into the records labeling would
write; a staged plan's records are, image by image, the target's where the rule escalates
and the first stage's elsewhere: exactly what `distill label` with the staged plan writes
(the rule sees the same first-stage arrays there). Every rule is tried over a small grid
of parameters read off the first stage's own output (quantiles of its scores and box
sizes, its calibrated threshold: the score above which it keeps as many detections per
image as the labels hold); the cost of a staged plan is the first stage's padded pixels
for every image plus the second stage's for the escalated ones, relative to the full
plan. The plan written is the best (objective AP, then cheaper) within `stage_budget`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.coco.evaluate import score_labels
from engine.label.escalation import Escalation
from engine.label.merge import Detections
from engine.label.views import Padding
from engine.plan.scoring import Score, Subset, SubsetScorer, near_labeled_objects
from engine.plan.search import Point
from engine.scaling import scaled_size
from engine.select.coco import select_labels

QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class StagedPoint:
    """One staged plan tried: its rule and parameters, relative cost, the fraction of
    images escalated, and its scores."""

    escalation: Escalation
    cost: float
    escalated: float
    box_AP: float
    keypoint_AP: float | None

    def value(self, objective: str) -> float:
        return self.box_AP if objective == "box" else (self.keypoint_AP or 0.0)


def image_pixels(scorer: SubsetScorer) -> np.ndarray:
    """`(I, P)` int64 padded pixels of each image's view for each pass of the cache's plan
    (summed over the images: the cache's `pixels`)."""
    cache, padding = scorer.cache, Padding.of(scorer.card)
    out = np.zeros((len(cache.images), len(cache.plan.passes)), np.int64)
    for i, image in enumerate(cache.images):
        height, width = image.shape[:2]
        for p, (scale, _) in enumerate(cache.plan.passes):
            out[i, p] = np.prod(padding.padded_shape(*scaled_size(height, width, scale, cache.plan.max_size)))
    return out


def first_stage(points: list[Point], target: Subset, first_budget: float, objective: str) -> Point | None:
    """The best point tried (then the cheapest) that is a strict subset of `target` and
    costs at most `first_budget`; None when none is."""
    inside = [p for p in points if set(p.subset) < set(target) and p.cost <= first_budget + 1e-12]
    return max(inside, key=lambda p: (p.value(objective), -p.cost)) if inside else None


def calibrated_threshold(detections: list[Detections], per_image: float) -> float:
    """The score above which `detections` keep `per_image` detections per image on average
    (the labels' mean), all categories together."""
    scores = np.sort(np.concatenate([d.scores for d in detections] + [np.zeros(0, np.float32)]))[::-1]
    if not len(scores):
        return 0.5
    keep = int(round(per_image * len(detections)))
    return float(scores[min(max(keep, 1), len(scores)) - 1])


def rule_grid(detections: list[Detections], threshold: float) -> list[tuple[str, tuple[tuple[str, float], ...]]]:
    """(rule, params) to try, from the first stage's merged `detections` and its calibrated
    `threshold`."""
    best = np.array([d.scores.max() if len(d.scores) else 0.0 for d in detections], np.float64)
    confident = [d.boxes[d.scores >= threshold].astype(np.float64) for d in detections]
    boxes = np.concatenate(confident + [np.zeros((0, 4))])
    sides = np.sqrt(np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0))
    grid = []
    for q in QUANTILES:
        grid.append(("empty", (("score", round(float(np.quantile(best, q)), 5)),)))
        if len(sides):
            grid.append(("small", (("score", round(threshold, 5)), ("size", round(float(np.quantile(sides, q)), 2)))))
    for width in (0.1, 0.25, 0.5, 0.75, 1.0):
        w = threshold * width
        grid.append(("uncertain", (("low", round(max(threshold - w, 0.0), 5)), ("high", round(threshold + w, 5)))))
    for factor in (0.5, 1.0, 2.0):
        for iou in (0.3, 0.5, 0.7):
            grid.append(("disagree", (("score", round(min(threshold * factor, 0.99), 5)), ("iou", iou))))
    return grid


class StagedSearch:
    """Staged plans of `first` + the rest of `target` (subsets of the cache's passes) over
    `scorer`'s validation images; `per_image`: the labels' mean instances per image."""

    def __init__(self, scorer: SubsetScorer, first: Subset, target: Subset, per_image: float) -> None:
        self.scorer = scorer
        self.first, self.target = tuple(sorted(first)), tuple(sorted(target))
        with_keypoints = scorer.has_keypoints
        self.first_detections = scorer.detections(self.first)
        self.first_records = scorer.records(self.first_detections, with_keypoints)
        self.target_records = scorer.records(scorer.detections(self.target), with_keypoints)
        pixels = image_pixels(scorer)
        total = float(pixels.sum())
        self.first_cost = pixels[:, list(self.first)].sum() / total
        second = [p for p in self.target if p not in self.first]
        self.second_cost = pixels[:, second].sum(axis=1) / total  # (I,) per escalated image
        self.threshold = calibrated_threshold(self.first_detections, per_image)
        passes = scorer.cache.plan.passes
        self.first_passes = tuple(passes[p] for p in self.first)

    def escalated(self, escalation: Escalation) -> np.ndarray:
        """`(I,)` bool: the images `escalation` escalates."""
        candidates = self.scorer.cache.candidates
        return np.array([escalation.escalates(d, [candidates[i][p] for p in self.first])
                         for i, d in enumerate(self.first_detections)], bool)

    def score(self, escalation: Escalation) -> StagedPoint:
        chosen = self.escalated(escalation)
        records = [t if e else f for e, t, f in zip(chosen, self.target_records, self.first_records)]
        score = self._score(records)
        cost = float(self.first_cost + self.second_cost[chosen].sum())
        return StagedPoint(escalation, cost, float(chosen.mean()) if len(chosen) else 0.0, score.box_AP,
                           score.keypoint_AP)

    def search(self) -> list[StagedPoint]:
        return [self.score(Escalation(self.first_passes, rule, params))
                for rule, params in rule_grid(self.first_detections, self.threshold)]

    def _score(self, records: list[dict]) -> Score:
        scorer = self.scorer
        # As SubsetScorer scores a subset: every prediction above the floor.
        labels = select_labels(records, scorer.categories, {c["id"]: 0.0 for c in scorer.categories}, 0.0, {})
        if scorer.partial:
            labels = near_labeled_objects(labels, scorer.gt)
        metrics = score_labels(scorer.gt, labels)
        return Score(metrics["box_AP"], metrics["keypoint_AP"] if scorer.has_keypoints else None)


def choose_staged(points: list[StagedPoint], budget: float, objective: str) -> StagedPoint | None:
    """The best staged plan (then the cheapest) costing at most `budget`; None if none does."""
    fitting = [p for p in points if p.cost <= budget + 1e-12]
    return max(fitting, key=lambda p: (p.value(objective), -p.cost)) if fitting else None


@dataclass
class StagedChoice:
    """What the staged search found: the first stage (a point tried), every staged plan
    tried, the one chosen within the budget (None: none fits)."""

    first: Point
    tried: list[StagedPoint]
    chosen: StagedPoint | None

    def summary(self) -> dict:
        """For plan.json's "chosen" (informational)."""
        if self.chosen is None:
            return {}
        c = self.chosen
        return {"cost": round(c.cost, 5), "escalated": round(c.escalated, 4), "box_AP": c.box_AP,
                "keypoint_AP": c.keypoint_AP, "first_stage": {"cost": round(self.first.cost, 5),
                                                              "box_AP": self.first.box_AP,
                                                              "keypoint_AP": self.first.keypoint_AP}}

    def lines(self, budget: float, target: Point) -> list[str]:
        """The best staged plan of each rule, and the one chosen."""
        from engine.plan.report import pass_name

        first = " ".join(pass_name(p) for p in (self.chosen or self.tried[0]).escalation.first)
        lines = [f"staged: first stage {first} (cost {self.first.cost:.3f}, box AP {self.first.box_AP:.3f}), "
                 f"escalated images get the chosen plan (cost {target.cost:.3f}, box AP {target.box_AP:.3f})",
                 f"{'rule':>10} {'params':<28} {'cost':>6} {'escal.':>6} {'box AP':>7} {'kp AP':>7}"]
        for rule in sorted({p.escalation.rule for p in self.tried}):
            mine = [p for p in self.tried if p.escalation.rule == rule and p.cost <= budget + 1e-12]
            for point in sorted(mine, key=lambda p: (-p.box_AP, p.cost))[:1] or []:
                params = " ".join(f"{k}={v:g}" for k, v in point.escalation.params)
                kp = "-" if point.keypoint_AP is None else f"{point.keypoint_AP:.3f}"
                mark = " <" if point is self.chosen else ""
                lines.append(f"{rule:>10} {params:<28} {point.cost:>6.3f} {point.escalated:>6.2f} "
                             f"{point.box_AP:>7.3f} {kp:>7}{mark}")
        if self.chosen is None:
            lines.append(f"no staged plan costs at most {budget:g}: plan.json stays the fixed plan")
        return lines


def find_stages(scorer: SubsetScorer, points: list[Point], target: Point, first_budget: float,
                budget: float, objective: str, per_image: float) -> StagedChoice | None:
    """The staged plans of `target` (the chosen fixed plan) with the best first stage
    within `first_budget`; None when no first stage fits (or the target has one pass)."""
    first = first_stage(points, target.subset, first_budget, objective)
    if first is None:
        return None
    if first.keypoint_AP is None and scorer.has_keypoints:
        first.keypoint_AP = scorer.score(first.subset, with_keypoints=True).keypoint_AP
    search = StagedSearch(scorer, first.subset, target.subset, per_image)
    tried = search.search()
    return StagedChoice(first, tried, choose_staged(tried, budget, objective))
