"""Staged plans (engine.label.escalation) through `distill label` on the tiny teachers: a
rule that escalates every image gives the full plan's records, one that escalates none
the first stage's, a mixed one each image the records of the stage it got; resume after
SIGKILL gives the uninterrupted run's records."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from engine.coco.geometry import box_iou
from engine.label.escalation import Escalation
from engine.label.labeler import LabelSettings
from engine.label.manifest import RunManifest
from engine.label.merge import Detections, MergeSettings
from engine.label.plan_file import read_plan_file, read_staged_plan, write_plan_file
from engine.label.run import label
from engine.label.detect import Candidates
from engine.label.views import TransformPlan, parse_scales
from engine.remerge.candidates import ShardCandidates, candidates_path
from tests.conftest import REPO_ROOT
from tests.engine.conftest import (FLOOR, SCALES, assert_same_records, killed_after_two_shards, labeling_command,
                                   read_run, request)

FULL = TransformPlan.grid(parse_scales(SCALES), max_size=256)
FIRST = ((128, False), (128, True))


def staged(rule: str, **params: float) -> LabelSettings:
    escalation = Escalation(FIRST, rule, tuple(params.items()))
    return LabelSettings(FULL, MergeSettings(score_floor=FLOOR), escalation=escalation)


def run(exported, dump, out: Path, labeling: LabelSettings, **fields) -> list[dict]:
    label(dataclasses.replace(request(exported, dump, out, **fields), labeling=labeling))
    return read_run(out)[0]


@pytest.fixture(scope="module")
def full_records(exported, dump, tmp_path_factory) -> list[dict]:
    return run(exported, dump, tmp_path_factory.mktemp("full") / "run",
               LabelSettings(FULL, MergeSettings(score_floor=FLOOR)))


@pytest.fixture(scope="module")
def first_records(exported, dump, tmp_path_factory) -> list[dict]:
    return run(exported, dump, tmp_path_factory.mktemp("first") / "run",
               LabelSettings(TransformPlan(FIRST, 256), MergeSettings(score_floor=FLOOR)))


def middle_best_score(records: list[dict]) -> float:
    """A score that about half the images' best detection stays under."""
    best = sorted({max((d["score"] for d in r["detections"]), default=0.0) for r in records})
    return (best[len(best) // 2 - 1] + best[len(best) // 2]) / 2



# ---- the rules, on arrays ---------------------------------------------------------------
def test_rules_decide_from_one_image_arrays():
    dets = Detections(np.array([[0, 0, 10, 10], [50, 50, 90, 90]], np.float32), np.array([0.9, 0.3], np.float32),
                      np.array([0, 1]))
    agree = Candidates(dets.boxes.copy(), dets.scores.copy(), dets.labels.copy())
    shifted = Candidates(dets.boxes + np.float32(6), dets.scores.copy(), dets.labels.copy())
    def decide(rule, parts=(agree, agree), **params):
        return Escalation(FIRST, rule, tuple(params.items())).escalates(dets, list(parts))

    assert decide("empty", score=0.95) and not decide("empty", score=0.9)
    assert decide("small", score=0.5, size=10.5) and not decide("small", score=0.5, size=10)
    assert not decide("small", score=0.2, size=10)  # 10 px is not < 10; the 40 px box is large
    assert decide("uncertain", low=0.25, high=0.35) and not decide("uncertain", low=0.35, high=0.85)
    assert not decide("disagree", score=0.2, iou=0.5)
    assert decide("disagree", (agree, shifted), score=0.2, iou=0.5)  # the 10 px box moved 6 px: IoU 16/184
    assert not decide("disagree", (agree, shifted), score=0.5, iou=0.08)
    np.testing.assert_allclose(box_iou(dets.boxes, dets.boxes + 5),
                               [[25 / 175, 0], [0, 35 * 35 / (2 * 1600 - 35 * 35)]])


def test_escalation_and_plan_file_checks(tmp_path):
    with pytest.raises(ValueError, match="takes the parameters score, iou"):
        Escalation(FIRST, "disagree", (("score", 0.3),))
    with pytest.raises(ValueError, match="unknown escalation rule"):
        Escalation(FIRST, "sometimes", ())
    with pytest.raises(ValueError, match="some, not all"):
        LabelSettings(TransformPlan(FIRST, 256), escalation=Escalation(FIRST, "empty", (("score", 0.5),)))
    settings = staged("disagree", iou=0.6, score=0.3)
    assert LabelSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    assert "escalation" not in LabelSettings(FULL).to_dict()
    write_plan_file(tmp_path / "plan.json", FULL, {"budget": 0.3}, settings.escalation)
    assert read_staged_plan(tmp_path) == (FULL, settings.escalation)
    assert read_plan_file(tmp_path) == FULL  # every pass: what a TensorRT engine must take
    document = json.loads((tmp_path / "plan.json").read_text())
    document["stages"]["first"] = [[s, f] for s, f in FULL.passes]
    (tmp_path / "plan.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="some, not all"):
        read_staged_plan(tmp_path)
    document["stages"] = {"first": [[128, False]], "rule": "empty", "params": "high"}
    (tmp_path / "plan.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="malformed stages"):
        read_staged_plan(tmp_path)


# ---- through the pipeline ---------------------------------------------------------------
def test_escalating_every_image_gives_the_full_plans_records(exported, dump, full_records, tmp_path):
    records = run(exported, dump, tmp_path / "all", staged("empty", score=1.5))  # no score reaches 1.5
    assert_same_records(records, full_records)
    assert all(r["escalated"] is True for r in records)
    assert RunManifest.load(tmp_path / "all").summary.escalated == len(records)


def test_escalating_no_image_gives_the_first_stages_records(exported, dump, first_records, tmp_path):
    records = run(exported, dump, tmp_path / "none", staged("small", score=0.0, size=0.0))  # no side is < 0
    assert_same_records(records, first_records)
    assert all(r["escalated"] is False for r in records)
    manifest = RunManifest.load(tmp_path / "none")
    assert manifest.summary.escalated == 0 and manifest.settings.labeling.escalation.rule == "small"


@pytest.mark.parametrize("batch_size, workers", [(8, 2), (2, 1)])
def test_a_mixed_rule_gives_each_image_the_records_of_its_stages(exported, dump, full_records, first_records,
                                                                 tmp_path, batch_size, workers):
    middle = middle_best_score(first_records)
    records = run(exported, dump, tmp_path / "mixed", staged("empty", score=middle), keep_candidates=True,
                  batch_size=batch_size, workers=workers)
    escalated = [r["escalated"] for r in records]
    assert 0 < sum(escalated) < len(records)
    for record, full, first in zip(records, full_records, first_records):
        assert record["escalated"] == (max((d["score"] for d in first["detections"]), default=0.0) < middle)
        assert_same_records([record], [full if record["escalated"] else first])
    # kept candidates say which passes ran: the second stage's only for escalated images
    out = tmp_path / "mixed"
    ran = []
    for entry in RunManifest.load(out).shards:
        shard = ShardCandidates(candidates_path(out, entry.file))
        ran += [tuple(shard.ran(i)) for i in range(len(shard.names))]
    first_only = tuple(p in FIRST for p in FULL.passes)
    assert ran == [(True,) * len(FULL.passes) if e else first_only for e in escalated]


def test_resume_of_a_staged_run_after_sigkill_equals_an_uninterrupted_one(exported, dump, first_records, tmp_path):
    write_plan_file(tmp_path / "plan.json", FULL, {},
                    Escalation(FIRST, "empty", (("score", middle_best_score(first_records)),)))
    base = labeling_command(exported, dump, tmp_path / "x")
    for flag, value in (("--scales", SCALES), ("--max-size", "256")):  # the plan file fixes them
        at = base.index(flag)
        del base[at:at + 2]
    command = lambda out: [*(str(out) if part == str(tmp_path / "x") else part for part in base),  # noqa: E731
                           "--plan", str(tmp_path / "plan.json"), "--keep-candidates"]
    subprocess.run(command(tmp_path / "whole"), cwd=REPO_ROOT, check=True, capture_output=True)
    partial = killed_after_two_shards(command(tmp_path / "killed"), tmp_path / "killed")
    assert not partial.complete
    subprocess.run([*command(tmp_path / "killed"), "--resume"], cwd=REPO_ROOT, check=True, capture_output=True)
    whole, killed = read_run(tmp_path / "whole")[0], read_run(tmp_path / "killed")[0]
    assert_same_records(killed, whole)
    assert [r["escalated"] for r in killed] == [r["escalated"] for r in whole]
    assert 0 < sum(r["escalated"] for r in whole) < len(whole)
    manifest = RunManifest.load(tmp_path / "killed")
    for entry in manifest.shards:  # every finished shard has its candidates, for exactly its images
        lines = (tmp_path / "killed" / "shards" / entry.file).read_text().splitlines()
        names = [json.loads(line)["file_name"] for line in lines]
        assert ShardCandidates(candidates_path(tmp_path / "killed", entry.file)).names == names
