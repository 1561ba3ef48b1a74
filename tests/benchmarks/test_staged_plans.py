"""benchmarks/staged_plans.py on the tiny teachers: rows re-decided from one kept-candidates
run equal fresh labeling runs, and their costs are the padded pixels of the passes that ran."""

from __future__ import annotations

import json

import pytest

from benchmarks.real_teacher import teacher_padding
from benchmarks.staged_plans import detector_pixels, main, records_of
from engine.cli import main as distill
from engine.label.escalation import Escalation
from engine.label.plan_file import write_plan_file
from engine.label.views import TransformPlan


def test_staged_plans_rows_are_remerged_labeled_and_costed(exported, tmp_path, capsys):
    from engine.synth.config import SynthConfig
    from engine.synth.dataset import generate_dataset

    gt = generate_dataset(tmp_path / "data", 6, 7, config=SynthConfig(long_side_range=(96, 140)))
    detector, keypoints = exported["detect"][0], exported["keypoints"][0]
    models = ["--detector", str(detector), "--keypoints", str(keypoints), "--images", str(tmp_path / "data" / "images"),
              "--score-floor", "0.05", "--shard-size", "2", "--no-progress"]
    assert distill(["label", *models, "--scales", "96,128", "--max-size", "256", "--keep-candidates",
                    "--out", str(tmp_path / "full")]) == 0
    assert distill(["label", *models, "--scales", "128", "--max-size", "256", "--no-flip",
                    "--out", str(tmp_path / "one")]) == 0
    first = ((128, False),)
    best = sorted(max((d["score"] for d in r["detections"]), default=0.0) for r in records_of(tmp_path / "one"))
    write_plan_file(tmp_path / "mirrored.json", TransformPlan(((128, False), (128, True)), 256), {})
    write_plan_file(tmp_path / "staged.json", TransformPlan.grid((96, 128), max_size=256), {},
                    Escalation(first, "empty", (("score", (best[2] + best[3]) / 2),)))
    assert main(["--full", str(tmp_path / "full"), "--gt", str(gt), "--detector", str(detector),
                 "--keypoints", str(keypoints), "--out", str(tmp_path / "rows"), "--label",
                 "--row", f"one={tmp_path / 'one'}", "--row", f"mirrored={tmp_path / 'mirrored.json'}",
                 "--row", f"staged={tmp_path / 'staged.json'}"]) == 0
    rows = {r["name"]: r for r in json.loads((tmp_path / "rows" / "results.json").read_text())}
    assert list(rows) == ["full", "one", "mirrored", "staged"]
    assert rows["full"]["cost"] == 1.0 and rows["full"]["passes"] == 4
    padding = teacher_padding(detector)
    full = detector_pixels(tmp_path / "full", padding)
    assert rows["one"]["cost"] == pytest.approx(detector_pixels(tmp_path / "one", padding) / full)
    assert rows["mirrored"]["cost"] == pytest.approx(2 * rows["one"]["cost"])  # a mirror costs its original
    staged = rows["staged"]
    assert 0 < staged["escalated"] < 1
    assert rows["one"]["cost"] < staged["cost"] < 1.0
    for name in ("mirrored", "staged"):
        assert rows[name]["remerge_equals_label"] is True and rows[name]["images_per_second"] > 0
        assert 0.0 <= rows[name]["box_AP"] <= 1.0
    assert rows["one"]["remerge_equals_label"] is None
    assert capsys.readouterr().out.splitlines()[-5].split()[:2] == ["row", "passes"]
