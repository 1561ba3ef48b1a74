"""A staged plan chosen on the validation set: a cheap first stage for every image, the
passes of a target plan only for the images a rule escalates (engine.label.escalation).

From the cache, never re-inferred. Targets are fixed plans greedy selection tried (its
path's plans dearer than the staged budget, and the `--budget` plan): a target's first
stages are the best few subsets tried that lie inside it, cost at most `first_budget` and
are on the front of those (`first_stages`).
Each subset is merged once, with keypoints, into the records labeling would write; a
staged plan's records are, image by image, the target's where the rule escalates and the
first stage's elsewhere: exactly what `distill label` with the staged plan writes (the
rule sees the same first-stage arrays there). Every rule is tried over a small grid
of parameters read off the first stage's own output (quantiles of its scores and box
sizes, of confident and of faint detections; its calibrated threshold: the score above which it keeps as many detections per
image as the labels hold); the cost of a staged plan is the first stage's padded pixels
for every image plus the second stage's for the escalated ones, relative to the full
plan. Only staged plans within the budget are scored (the escalation decides the cost
before any COCOeval runs). The plan written is the best (objective AP, then cheaper)
within the budget, if it scores above the best fixed plan within the same budget. Why several targets: a staged plan buys a dear target's passes for the
images that need them, so the target worth staging at a budget is dearer than the fixed
plan that fits it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.coco.geometry import box_area
from engine.label.escalation import Escalation
from engine.label.merge import Detections
from engine.label.views import Padding
from engine.plan.scoring import Subset, SubsetScorer
from engine.plan.search import Point, best_within, front_of
from engine.scaling import scaled_size

QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
FIRST_STAGES = 3  # first stages tried per target


@dataclass
class StagedPoint:
    """One staged plan tried: its rule and parameters, its first stage and target (fixed
    plans tried: every image gets `first`, escalated ones the rest of `target`), relative
    cost, the fraction of images escalated, and its scores."""

    escalation: Escalation
    first: Point
    target: Point
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


def first_stages(points: list[Point], target: Subset, first_budget: float, objective: str,
                 count: int = FIRST_STAGES) -> list[Point]:
    """The first stages to try for `target`: among the points tried that are strict subsets
    of it and cost at most `first_budget`, those no cheaper one matches on the objective
    (their Pareto front), the best `count` of them, best first. Several, because the best
    first stage alone is not always the best to stage: a cheaper one leaves more of the
    budget to the escalated images."""
    inside = [p for p in points if set(p.subset) < set(target) and p.cost <= first_budget + 1e-12]
    return sorted(front_of(inside, objective), key=lambda p: (-p.value(objective), p.cost))[:count]


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
    grid = []
    for q in QUANTILES:
        grid.append(("empty", (("score", round(float(np.quantile(best, q)), 5)),)))
    # Small objects among the confident detections, and among faint ones too: a small
    # object the first stage barely sees is the one a larger pass finds.
    for score in (threshold, threshold / 4):
        kept = [d.boxes[d.scores >= score].astype(np.float64) for d in detections]
        sides = np.sqrt(box_area(np.concatenate(kept + [np.zeros((0, 4))])))
        for q in QUANTILES if len(sides) else ():
            grid.append(("small", (("score", round(score, 5)), ("size", round(float(np.quantile(sides, q)), 2)))))
    for width in (0.1, 0.25, 0.5, 0.75, 1.0):
        w = threshold * width
        grid.append(("uncertain", (("low", round(max(threshold - w, 0.0), 5)), ("high", round(threshold + w, 5)))))
    for factor in (0.5, 1.0, 2.0):
        for iou in (0.3, 0.5, 0.7):
            grid.append(("disagree", (("score", round(min(threshold * factor, 0.99), 5)), ("iou", iou))))
    return grid


class StagedSearch:
    """Staged plans of `first` + the rest of `target` (subsets of the cache's passes) over
    `scorer`'s validation images; `per_image`: the labels' mean instances per image.
    `memo`, shared by the searches of one run: merged records by subset and escalation
    masks by rule (they depend on the first stage only), so that trying many targets
    merges each subset once."""

    def __init__(self, scorer: SubsetScorer, first: Subset, target: Subset, per_image: float,
                 memo: dict | None = None) -> None:
        self.scorer = scorer
        self.memo = {} if memo is None else memo
        self.first, self.target = tuple(sorted(first)), tuple(sorted(target))
        self.first_detections, self.first_records = self._merged(self.first)
        self.target_records = self._merged(self.target)[1]
        pixels = self.memo.get("pixels")
        if pixels is None:
            pixels = self.memo["pixels"] = image_pixels(scorer)
        total = float(pixels.sum())
        self.first_cost = pixels[:, list(self.first)].sum() / total
        second = [p for p in self.target if p not in self.first]
        self.second_cost = pixels[:, second].sum(axis=1) / total  # (I,) per escalated image
        self.threshold = calibrated_threshold(self.first_detections, per_image)
        passes = scorer.cache.plan.passes
        self.first_passes = tuple(passes[p] for p in self.first)

    def _merged(self, subset: Subset) -> tuple[list[Detections], list[dict]]:
        """(merged detections, records with keypoints) of `subset`, once per memo."""
        key = ("merged", subset)
        if key not in self.memo:
            detections = self.scorer.detections(subset)
            self.memo[key] = detections, self.scorer.records(detections, self.scorer.has_keypoints)
        return self.memo[key]

    def escalated(self, escalation: Escalation) -> np.ndarray:
        """`(I,)` bool: the images `escalation` escalates."""
        key = ("escalated", escalation)
        if key not in self.memo:
            candidates = self.scorer.cache.candidates
            self.memo[key] = np.array([escalation.escalates(d, [candidates[i][p] for p in self.first])
                                       for i, d in enumerate(self.first_detections)], bool)
        return self.memo[key]

    def cost(self, chosen: np.ndarray) -> float:
        """Mean detector cost, relative to the full plan's, when the images `chosen` escalate."""
        return float(self.first_cost + self.second_cost[chosen].sum())

    def score(self, escalation: Escalation, first: Point | None = None, target: Point | None = None) -> StagedPoint:
        """The staged plan of `escalation` scored; `first` and `target`: the points tried
        for the two subsets (None: made here, unscored)."""
        chosen = self.escalated(escalation)
        records = [t if e else f for e, t, f in zip(chosen, self.target_records, self.first_records)]
        score = self.scorer.score_records(records, self.scorer.has_keypoints)
        first = first or Point(self.first, float(self.first_cost), float("nan"), None, len(self.first))
        target = target or Point(self.target, self.cost(np.ones(len(chosen), bool)), float("nan"), None,
                                 len(self.target))
        return StagedPoint(escalation, first, target, self.cost(chosen), float(chosen.mean()) if len(chosen) else 0.0,
                           score.box_AP, score.keypoint_AP)

    def search(self, first: Point, target: Point, budget: float = 1.0) -> list[StagedPoint]:
        """Every rule of the grid whose staged plan costs at most `budget` (the others are
        not scored: COCOeval is the search's cost), scored."""
        tried = []
        for rule, params in rule_grid(self.first_detections, self.threshold):
            escalation = Escalation(self.first_passes, rule, params)
            if self.cost(self.escalated(escalation)) <= budget + 1e-12:
                tried.append(self.score(escalation, first, target))
        return tried


def choose_staged(points: list[StagedPoint], budget: float, objective: str,
                  fixed: Point | None = None) -> StagedPoint | None:
    """The best staged plan (then the cheapest) costing at most `budget`, if it scores
    above `fixed` (the best fixed plan within the budget: a staged plan that does not
    beat it only adds a rule); None if none does."""
    best = best_within(points, budget, objective)
    if best is None or (fixed is not None and best.value(objective) <= fixed.value(objective)):
        return None
    return best


@dataclass
class StagedChoice:
    """What the staged search found: every staged plan tried (over every target) and the
    one chosen within the budget (None: none fits)."""

    tried: list[StagedPoint]
    chosen: StagedPoint | None
    targets: int  # fixed plans tried as targets
    fixed: Point | None = None  # the best fixed plan within the budget, which a staged plan must beat

    @property
    def first(self) -> Point | None:
        """The chosen plan's first stage (else the first one tried; None: none was)."""
        point = self.chosen or (self.tried[0] if self.tried else None)
        return point.first if point else None

    def summary(self) -> dict:
        """For plan.json's "chosen" (informational)."""
        if self.chosen is None:
            return {}
        c = self.chosen
        part = lambda p: {"cost": round(p.cost, 5), "box_AP": p.box_AP, "keypoint_AP": p.keypoint_AP}  # noqa: E731
        return {"cost": round(c.cost, 5), "escalated": round(c.escalated, 4), "box_AP": c.box_AP,
                "keypoint_AP": c.keypoint_AP, "first_stage": part(c.first), "target": part(c.target)}

    def lines(self, budget: float, objective: str) -> list[str]:
        """The best staged plan of each rule within `budget` (by `objective`), and the one chosen."""
        from engine.plan.report import pass_name

        passes = lambda point: " ".join(pass_name(p) for p in point.escalation.first)  # noqa: E731
        lines = [f"staged: {len(self.tried)} staged plans within {budget:g} tried over {self.targets} targets "
                 f"(first stages of cost <= --first-budget inside each; escalated images get the target's "
                 f"other passes)",
                 f"{'rule':>10} {'params':<26} {'first':<14} {'target':>13} {'cost':>6} {'escal.':>6} "
                 f"{'box AP':>7} {'kp AP':>7}"]
        for rule in sorted({p.escalation.rule for p in self.tried}):
            mine = [p for p in self.tried if p.escalation.rule == rule]
            point = self.chosen if self.chosen in mine else max(mine, key=lambda p: (p.value(objective), -p.cost))
            params = " ".join(f"{k}={v:g}" for k, v in point.escalation.params)
            kp = "-" if point.keypoint_AP is None else f"{point.keypoint_AP:.3f}"
            target = f"{len(point.target.subset)}p {point.target.cost:.3f}"
            mark = " <" if point is self.chosen else ""
            lines.append(f"{rule:>10} {params:<26} {passes(point):<14} {target:>13} {point.cost:>6.3f} "
                         f"{point.escalated:>6.2f} {point.box_AP:>7.3f} {kp:>7}{mark}")
        fixed = self.fixed
        if fixed is not None:
            kp = "-" if fixed.keypoint_AP is None else f"{fixed.keypoint_AP:.3f}"
            lines.append(f"{'fixed':>10} {'(best fixed plan within ' + format(budget, 'g') + ')':<41} {'':>13} "
                         f"{fixed.cost:>6.3f} {'-':>6} {fixed.box_AP:>7.3f} {kp:>7}")
        if self.chosen is None:
            lines.append(f"no staged plan within {budget:g} beats the best fixed plan within it: plan.json stays "
                         "the fixed plan" if self.tried else
                         f"no staged plan costs at most {budget:g}: plan.json stays the fixed plan")
        return lines


def targets_of(points: list[Point], chosen: Point, budget: float) -> list[Point]:
    """The fixed plans to stage: the greedy path's points dearer than `budget` (a target
    that fits it would be labeled whole) and `chosen` (the --budget plan) if it is too;
    just `chosen` when none is."""
    dearer = [p for p in points if p.on_path and p.cost > budget + 1e-12]
    if chosen.cost > budget + 1e-12 and chosen not in dearer:
        dearer.append(chosen)
    return dearer or [chosen]


def find_stages(scorer: SubsetScorer, points: list[Point], chosen: Point, first_budget: float,
                budget: float, objective: str, per_image: float) -> StagedChoice | None:
    """Staged plans of every target (`targets_of`), each with its first stages
    (`first_stages`), and the best one within `budget`; None when no target has a first
    stage that fits."""
    memo: dict = {}
    tried: list[StagedPoint] = []
    targets = 0
    for target in targets_of(points, chosen, budget):
        firsts = first_stages(points, target.subset, first_budget, objective)
        for first in firsts:
            for point in (first, target):
                if point.keypoint_AP is None and scorer.has_keypoints:
                    point.keypoint_AP = scorer.score(point.subset, with_keypoints=True).keypoint_AP
            search = StagedSearch(scorer, first.subset, target.subset, per_image, memo)
            tried += search.search(first, target, budget)
        targets += bool(firsts)
    if not targets:
        return None
    fixed = best_within(points, budget, objective)
    if fixed is not None and fixed.keypoint_AP is None and scorer.has_keypoints:
        fixed.keypoint_AP = scorer.score(fixed.subset, with_keypoints=True).keypoint_AP
    return StagedChoice(tried, choose_staged(tried, budget, objective, fixed), targets, fixed)
