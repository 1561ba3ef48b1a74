"""Greedy forward selection over the passes, the Pareto front, the plan within a budget.

Trying every subset of 18 passes is 262,143 ensembles; greedy forward selection tries
18 + 17 + ... + 1 = 171: start from no pass, add at each step the pass whose subset
scores best (ties: the cheaper one, then plan order), until the full plan. Every subset
tried is kept as a point (cost, AP); the front is the points no other point beats on
both, and the plan for a budget is the best point whose cost fits in it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tqdm import tqdm

from engine.errors import UserError
from engine.plan.scoring import Subset, SubsetScorer

OBJECTIVES = ("box", "keypoints")


@dataclass
class Point:
    """One subset tried: its relative cost, scores, and where greedy met it."""

    subset: Subset
    cost: float
    box_AP: float
    keypoint_AP: float | None
    step: int  # the greedy step (its number of passes)
    on_path: bool = False  # chosen at its step
    on_front: bool = False

    def value(self, objective: str) -> float:
        return self.box_AP if objective == "box" else (self.keypoint_AP or 0.0)


def greedy_forward(scorer: SubsetScorer, passes: int, objective: str, progress: bool = True) -> list[Point]:
    """Every subset greedy forward selection tries, in the order it tries them; the path
    points carry keypoint AP too when a keypoint stage is present."""
    with_keypoints = objective == "keypoints"
    points: list[Point] = []
    chosen: Subset = ()
    total = passes * (passes + 1) // 2
    with tqdm(total=total, desc="subsets", unit="subset", disable=not progress, dynamic_ncols=True) as bar:
        for step in range(1, passes + 1):
            tried = []
            for p in range(passes):
                if p in chosen:
                    continue
                subset = tuple(sorted(chosen + (p,)))
                score = scorer.score(subset, with_keypoints)
                tried.append(Point(subset, scorer.cost(subset), score.box_AP, score.keypoint_AP, step))
                bar.update(1)
            best = max(tried, key=lambda point: (point.value(objective), -point.cost))
            best.on_path = True
            if best.keypoint_AP is None and scorer.has_keypoints:
                best.keypoint_AP = scorer.score(best.subset, with_keypoints=True).keypoint_AP
            chosen = best.subset
            points += tried
    return points


def front_of(points: list, objective: str) -> list:
    """By cost, the points (anything with `cost` and `value(objective)`) that no other
    point matches or beats on both cost and AP with one of them strictly better."""
    front = []
    for point in sorted(points, key=lambda p: (p.cost, -p.value(objective))):
        if not front or point.value(objective) > front[-1].value(objective):
            front.append(point)
    return front


def mark_front(points: list[Point], objective: str) -> list[Point]:
    """Marks and returns `front_of(points)`."""
    front = front_of(points, objective)
    for point in front:
        point.on_front = True
    return front


def best_within(points: list, budget: float, objective: str):
    """The best point (then the cheapest) whose cost is within `budget`; None if none is."""
    fitting = [p for p in points if p.cost <= budget + 1e-12]
    return max(fitting, key=lambda p: (p.value(objective), -p.cost)) if fitting else None


def choose(points: list[Point], budget: float, objective: str) -> Point:
    """The best point whose cost is within `budget` (a fraction of the full plan's);
    among equals, the cheapest. UserError (about the budget's value) when nothing fits."""
    best = best_within(points, budget, objective)
    if best is None:
        cheapest = min(p.cost for p in points)
        raise UserError(f"no subset of the passes fits a budget of {budget:g} of the full plan's detector cost "
                        f"(the cheapest pass costs {cheapest:.3f})")
    return best
