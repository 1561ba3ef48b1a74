"""How `distill label` shares the CPU between its two models: the rule, and that taking
turns changes how fast a run goes, never what it writes."""

from __future__ import annotations

import json

from engine.label.run import TURNS_ABOVE_PIXELS, LabelRequest, inference_policy, label
from engine.label.views import TransformPlan

SMALL = TransformPlan.grid((160, 192, 224))           # 0.23 Mpx per image: split the cores
LARGE = TransformPlan.grid((1000, 1100), flip=False)  # 2.21 Mpx per image: take turns


def test_policy_rule():
    assert sum(s * s for s, _ in LARGE.passes) >= TURNS_ABOVE_PIXELS > sum(s * s for s, _ in SMALL.passes)
    assert inference_policy(None, True, LARGE) == (0, True)
    threads, turns = inference_policy(None, True, SMALL)
    assert threads >= 1 and not turns
    assert inference_policy(None, False, LARGE) == (0, False)  # a detector alone: every core
    assert inference_policy(3, True, LARGE) == (3, False)       # --backend-threads wins, no turns


def test_taking_turns_writes_the_same_records(exported, tmp_path):
    from engine.synth.config import SynthConfig
    from engine.synth.dataset import generate_dataset
    from tests.engine.conftest import assert_same_records, read_run

    generate_dataset(tmp_path / "data", 2, 4, config=SynthConfig(long_side_range=(96, 128)))
    runs = {}
    for name, threads in (("turns", None), ("split", 1)):
        out = tmp_path / name
        label(LabelRequest(detector=exported["detect"][0], keypoints=exported["keypoints"][0],
                           images=tmp_path / "data" / "images", out=out, plan=LARGE, score_floor=0.001,
                           max_detections=40, backend_threads=threads, progress=False))
        runtime = json.loads((out / "manifest.json").read_text())["runtime"]
        assert runtime["models_take_turns"] is (threads is None)
        runs[name] = read_run(out)[0]
    assert any(d.get("keypoints") for r in runs["turns"] for d in r["detections"])  # both models ran
    assert_same_records(runs["turns"], runs["split"])
