"""`distill plan-transforms --stages`: a staged plan chosen from the cached passes, which
`distill label --plan` then runs exactly as it was scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.label.escalation import Escalation
from engine.label.labeler import LabelSettings
from engine.label.merge import Detections, MergeSettings
from engine.label.views import TransformPlan
from engine.plan.adaptive import StagedPoint, calibrated_threshold, choose_staged, rule_grid
from engine.plan.scoring import SubsetScorer
from engine.plan.search import Point
from tests.engine.plan.conftest import cached_scorer



@pytest.fixture(scope="module")
def labeled(tmp_path_factory) -> Path:
    """Eight small synthetic images with their COCO ground truth."""
    from engine.synth.config import SynthConfig
    from engine.synth.dataset import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("stages-val"), 8, 13, config=SynthConfig(long_side_range=(96, 140)))


def test_calibrated_threshold_keeps_the_labels_count_and_the_grid_covers_every_rule():
    dets = [Detections(np.array([[0, 0, 10, 10], [0, 0, 40, 40]], np.float32), np.array([0.9, 0.2], np.float32),
                       np.array([0, 0])),
            Detections(np.zeros((1, 4), np.float32), np.array([0.5], np.float32), np.array([0]))]
    assert calibrated_threshold(dets, 1.0) == pytest.approx(0.5)  # two detections for two images: 0.9 and 0.5
    assert calibrated_threshold(dets, 10.0) == pytest.approx(0.2)  # as many as there are
    grid = rule_grid(dets, 0.5)
    assert {rule for rule, _ in grid} == {"empty", "small", "uncertain", "disagree"}
    for rule, params in grid:
        Escalation(((96, False),), rule, params)  # every entry is a valid rule
    first, target = Point((0,), 0.1, 0.2, None, 1), Point((0, 1), 1.0, 0.4, None, 2)
    points = [StagedPoint(Escalation(((96, False),), "empty", (("score", s),)), first, target, c, 0.5, ap, None)
              for s, c, ap in ((0.1, 0.2, 0.30), (0.2, 0.25, 0.30), (0.3, 0.5, 0.40))]
    assert choose_staged(points, 0.3, "box") is points[0] and choose_staged(points, 0.6, "box") is points[2]
    assert choose_staged(points, 0.1, "box") is None
    # A staged plan must beat the best fixed plan within the same budget.
    assert choose_staged(points, 0.3, "box", fixed=Point((0,), 0.3, 0.30, None, 1)) is None
    assert choose_staged(points, 0.3, "box", fixed=Point((0,), 0.3, 0.29, None, 1)) is points[0]


def test_first_stages_are_the_best_few_of_the_front_inside_the_target():
    from engine.plan.adaptive import first_stages

    points = [Point((0,), 0.05, 0.20, None, 1), Point((1,), 0.08, 0.25, None, 1), Point((2,), 0.06, 0.19, None, 1),
              Point((0, 1), 0.13, 0.30, None, 2), Point((0, 3), 0.10, 0.40, None, 2), Point((1, 2), 0.11, 0.24, None, 2)]
    # (0, 3) is not inside the target; (2,) and (1, 2) are beaten by cheaper points; (0, 1) is over the budget.
    assert [p.subset for p in first_stages(points, (0, 1, 2), 0.12, "box")] == [(1,), (0,)]
    assert [p.subset for p in first_stages(points, (0, 1, 2), 0.2, "box", count=2)] == [(0, 1), (1,)]
    assert first_stages(points, (0, 1, 2), 0.01, "box") == []


def test_find_stages_on_constructed_passes_picks_a_first_stage_inside_the_target():
    from engine.plan.adaptive import find_stages, image_pixels
    from engine.plan.search import greedy_forward, mark_front
    from tests.engine.plan.test_plan_transforms import _cache, _card, _ground_truth

    plan = TransformPlan.grid((64, 96, 128), max_size=256)
    cache = _cache(np.random.default_rng(3), plan)
    scorer = SubsetScorer(cache, _ground_truth(), _card(), MergeSettings(score_floor=0.05), None, 1)
    cache.pixels = image_pixels(scorer).sum(axis=0)  # the constructed cache's costs, made consistent
    points = greedy_forward(scorer, len(plan.passes), "box", progress=False)
    mark_front(points, "box")
    target = max((p for p in points if len(p.subset) >= 3), key=lambda p: p.box_AP)
    found = find_stages(scorer, points, target, first_budget=0.2, budget=target.cost, objective="box", per_image=3.0)
    assert found.first is (found.chosen or found.tried[0]).first and found.first.cost <= 0.2
    assert {p.escalation.rule for p in found.tried} == {"empty", "small", "uncertain", "disagree"}
    # Targets: the greedy path's plans dearer than the budget (the --budget plan fits it: not staged).
    dearer = {p.subset for p in points if p.on_path and p.cost > target.cost + 1e-12}
    assert {p.target.subset for p in found.tried} == dearer and found.targets == len(dearer) > 1
    for point in found.tried:  # costs lie between the first stage's and the budget; the ends are the fixed plans
        assert point.first.cost <= 0.2 and set(point.first.subset) < set(point.target.subset)
        assert point.first.cost - 1e-9 <= point.cost <= target.cost + 1e-9
        if point.escalated == 1.0:
            assert point.cost == pytest.approx(point.target.cost) and point.box_AP == pytest.approx(point.target.box_AP)
        if point.escalated == 0.0:
            assert point.cost == pytest.approx(point.first.cost) and point.box_AP == pytest.approx(point.first.box_AP)
    best = max(found.tried, key=lambda p: (p.box_AP, -p.cost))
    assert found.fixed is max((p for p in points if p.cost <= target.cost + 1e-12), key=lambda p: (p.box_AP, -p.cost))
    assert found.chosen is (best if best.box_AP > found.fixed.box_AP else None)
    # A dearer target is tried, and the plans that would cost more than the budget are not scored.
    tighter = find_stages(scorer, points, target, first_budget=0.2, budget=0.3, objective="box", per_image=3.0)
    assert tighter.targets > found.targets and all(p.cost <= 0.3 + 1e-9 for p in tighter.tried)
    assert len({p.first.subset for p in tighter.tried}) > 1  # several first stages per target
    lines = found.lines(target.cost, "box")
    assert lines[0].startswith("staged: ") and lines[-2 if found.chosen is None else -1].startswith("     fixed")
    assert any(line.endswith(" <") for line in lines) == (found.chosen is not None)
    assert find_stages(scorer, points, target, first_budget=0.001, budget=1, objective="box", per_image=3.0) is None


def test_label_runs_a_staged_plan_as_the_search_scored_it(exported, labeled, tmp_path, capsys):
    from engine.label.request import Inputs, LabelRequest, Runtime
    from engine.label.run import label
    from engine.plan.adaptive import StagedSearch, image_pixels
    from tests.conftest import assert_cli_error
    from tests.engine.conftest import assert_same_records, read_run

    arguments = ["plan-transforms", "--detector", str(exported["detect"][0]), "--json", str(labeled),
                 "--images", str(labeled.parent / "images"), "--out", str(tmp_path / "plan")]
    assert_cli_error(capsys, main([*arguments, "--stages", "0"]), "plan-transforms", "--stages", "(0, 1]")

    # A staged plan's records, mixed from the cache by the search, are what `distill label --plan` writes.
    with cached_scorer(exported, labeled) as (scorer, full, merge):
        assert (image_pixels(scorer).sum(axis=0) == scorer.cache.pixels).all()
        search = StagedSearch(scorer, (2,), (0, 1, 2, 3), per_image=1.0)  # 128 first, then 96, 96m, 128m
        best = sorted({max((d["score"] for d in r["detections"]), default=0.0) for r in search.first_records})
        escalation = Escalation(((128, False),), "empty", (("score", (best[3] + best[4]) / 2),))
        escalated = search.escalated(escalation)
        expected = [t if e else f for e, t, f in zip(escalated, search.target_records, search.first_records)]
        point = search.score(escalation)
    assert 0 < escalated.sum() < len(escalated) and point.escalated == escalated.mean()
    label(LabelRequest(detector=exported["detect"][0], keypoints=exported["keypoints"][0], out=tmp_path / "run",
                       inputs=Inputs(images=labeled.parent / "images"),
                       labeling=LabelSettings(full, merge, escalation=escalation), runtime=Runtime(progress=False)))
    records, _ = read_run(tmp_path / "run")
    assert_same_records(records, expected)
    assert [r["escalated"] for r in records] == escalated.tolist()
