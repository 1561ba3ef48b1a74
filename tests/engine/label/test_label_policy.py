"""How `distill label` shares the CPU between its two models: the rule, and that taking
turns changes how fast a run goes, never what it writes."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

from engine.label.labeler import LabelSettings, TakingTurns
from engine.label.manifest import RunManifest
from engine.label.merge import MergeSettings
from engine.label.request import Inputs, LabelRequest, Runtime
from engine.label.run import TURNS_ABOVE_PIXELS, inference_policy, label
from engine.label.views import TransformPlan

SMALL = TransformPlan.grid((160, 192, 224))           # 0.23 Mpx per image: split the cores
LARGE = TransformPlan.grid((1000, 1100), flip=False)  # 2.21 Mpx per image: take turns


def test_policy_rule():
    assert sum(s * s for s, _ in LARGE.passes) >= TURNS_ABOVE_PIXELS > sum(s * s for s, _ in SMALL.passes)
    assert inference_policy(_request(True, LARGE)) == (0, True)
    threads, turns = inference_policy(_request(True, SMALL))
    assert threads >= 1 and not turns
    assert inference_policy(_request(False, LARGE)) == (0, False)  # a detector alone: every core
    given = replace(_request(True, LARGE), runtime=Runtime(backend_threads=3))
    assert inference_policy(given) == (3, False)                   # backend_threads given wins, no turns


def test_taking_turns_writes_the_same_records(exported, tmp_path):
    from engine.synth.config import SynthConfig
    from engine.synth.dataset import generate_dataset
    from tests.engine.conftest import assert_same_records, read_run

    generate_dataset(tmp_path / "data", 2, 4, config=SynthConfig(long_side_range=(96, 128)))
    runs = {}
    for name, threads in (("turns", None), ("split", 1)):
        out = tmp_path / name
        label(LabelRequest(detector=exported["detect"][0], keypoints=exported["keypoints"][0], out=out,
                           inputs=Inputs(images=tmp_path / "data" / "images"),
                           labeling=LabelSettings(LARGE, MergeSettings(score_floor=0.001, max_detections=40)),
                           runtime=Runtime(backend_threads=threads, progress=False)))
        assert RunManifest.load(out).runtime.models_take_turns is (threads is None)
        runs[name] = read_run(out)[0]
    assert any(d.get("keypoints") for r in runs["turns"] for d in r["detections"])  # both models ran
    assert_same_records(runs["turns"], runs["split"])


def _request(keypoints: bool, plan: TransformPlan) -> LabelRequest:
    """A request as the policy sees it: whether there is a keypoint model, the plan."""
    return LabelRequest(detector=Path("det.onnx"), out=Path("out"), inputs=Inputs(images=Path("images")),
                        keypoints=Path("kp.onnx") if keypoints else None, labeling=LabelSettings(plan=plan))


def test_policy_uses_the_cores_it_is_given(monkeypatch):
    # A scale-out actor passes its share of the machine's cores; the policy must size the
    # sessions from that share in every branch, not from the machine (64 cores here).
    monkeypatch.setattr("engine.label.run.os.cpu_count", lambda: 64)
    assert inference_policy(_request(False, SMALL), cores=6) == (6, False)
    assert inference_policy(_request(True, LARGE), cores=6) == (6, True)
    assert inference_policy(_request(True, SMALL), cores=6) == (3, False)
    assert inference_policy(_request(True, SMALL)) == (32, False)  # no share given: the machine's


class _Overlap:
    """The most `infer` calls in progress at once among the models that share it."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self.guard = threading.Lock()


class _CountingModel:
    """An active model that counts into `overlap`; each call sleeps, so calls from two
    threads overlap unless something keeps them apart."""

    card = None

    def __init__(self, overlap: _Overlap) -> None:
        self.overlap = overlap

    def infer(self, feed):
        with self.overlap.guard:
            self.overlap.now += 1
            self.overlap.most = max(self.overlap.most, self.overlap.now)
        time.sleep(0.02)
        with self.overlap.guard:
            self.overlap.now -= 1
        return {}


def _call_together(models: list, calls: int = 5) -> None:
    """Each of `models` called `calls` times from its own thread, the threads started together."""
    start = threading.Barrier(len(models))

    def run(model) -> None:
        start.wait()
        for _ in range(calls):
            model.infer({})

    threads = [threading.Thread(target=run, args=(m,)) for m in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_taking_turns_never_runs_two_models_at_once():
    lock, taking_turns, unwrapped = threading.Lock(), _Overlap(), _Overlap()
    _call_together([TakingTurns(_CountingModel(taking_turns), lock) for _ in range(2)])
    assert taking_turns.most == 1
    # the same two models unwrapped do overlap: the count would see a missing lock
    _call_together([_CountingModel(unwrapped) for _ in range(2)])
    assert unwrapped.most == 2
