"""`distill train` of a student (labeled + generated, the mixed sampler) SIGKILLed at
random steps and resumed, again and again: its final weights must equal an uninterrupted
run's. Augmentation is off (tests/faults/train_plain.py says why); one thread, so in
practice bit for bit.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time

import pytest
import torch

from engine.errors import UserError
from tests.conftest import REPO_ROOT
from tests.faults.conftest import row
from trainer.checkpoint import load_checkpoint
from trainer.data.mixing import MixedBatchSampler

KIND = "SIGKILL of distill train at a random step"


def train_command(data, pseudo, out, iters: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tests.faults.train_plain", "train", "--task", "keypoints", "--model", "tiny",
            "--train-json", str(data["train_json"]), "--train-images", str(data["train_images"]),
            "--pseudo-json", str(pseudo), "--pseudo-images", str(data["val_images"]),
            "--iters", str(iters), "--batch-size", "4", "--lr", "0.1", "--set", "warmup_iters=0",
            "--checkpoint-every", "1", "--workers", "0", "--threads", "1", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def pseudo(synth_small, tmp_path_factory):
    """Generated labels: the validation set's ground truth with a score on every label."""
    data = json.loads(synth_small["val_json"].read_text())
    for ann in data["annotations"]:
        ann["score"] = 0.9
    path = tmp_path_factory.mktemp("pseudo") / "pseudo.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def uninterrupted(synth_small, pseudo, tmp_path_factory):
    """iters -> (the final checkpoint of an uninterrupted run of that many iterations,
    seconds a step), each run once."""
    runs = {}

    def run(iters: int):
        if iters not in runs:
            out = tmp_path_factory.mktemp("uninterrupted") / "run"
            process = subprocess.Popen(train_command(synth_small, pseudo, out, iters), cwd=REPO_ROOT,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            while process.poll() is None and not (out / "last.pt").exists():
                time.sleep(0.01)
            first = time.perf_counter()
            assert process.wait(timeout=600) == 0, process.stderr.read().decode()
            runs[iters] = load_checkpoint(out / "model.pt"), (time.perf_counter() - first) / iters
        return runs[iters]

    return run


def checkpoint_iteration(out) -> int:
    try:
        return int(load_checkpoint(out / "last.pt")["iteration"])
    except UserError:  # none yet
        return 0


@pytest.mark.parametrize("kills, iters", [(2, 12), pytest.param(20, 100, marks=pytest.mark.faults_long)])
def test_student_killed_at_random_steps_ends_like_an_uninterrupted_one(synth_small, pseudo, uninterrupted, tmp_path,
                                                                      kills, iters):
    expected, step_seconds = uninterrupted(iters)
    rng, out, injected, steps_at_kills = random.Random(kills), tmp_path / "run", 0, []
    while injected < kills:
        before = checkpoint_iteration(out)
        command = train_command(synth_small, pseudo, out, iters, *(["--resume"] if before else []))
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Once this process has saved its first step, kill it within about a step (a
        # random moment of it: the forward, the backward, the checkpoint's save).
        while process.poll() is None and checkpoint_iteration(out) <= before:
            time.sleep(0.01)
        assert process.poll() is None, process.stderr.read().decode()
        time.sleep(rng.uniform(0, 1) * step_seconds)
        process.kill()
        process.wait()
        injected += 1
        row(KIND).injected += 1
        steps_at_kills.append(checkpoint_iteration(out))
    start = time.perf_counter()
    done = subprocess.run(train_command(synth_small, pseudo, out, iters, "--resume"), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
    row(KIND).recover.append(time.perf_counter() - start)
    assert done.returncode == 0, done.stderr
    assert steps_at_kills == sorted(steps_at_kills) and steps_at_kills[-1] < iters, steps_at_kills
    assert sorted(p.name for p in out.iterdir()) == ["last.pt", "metrics.json", "model.pt"]
    got = load_checkpoint(out / "model.pt")
    assert got["iteration"] == iters and got["scheduler"] == expected["scheduler"]
    different = [name for name, tensor in expected["state_dict"].items()
                 if not torch.allclose(got["state_dict"][name].double(), tensor.double(), rtol=1e-5, atol=1e-7)]
    r = row(KIND)
    r.completed += 1
    assert not different, (f"{len(different)} tensors differ from the uninterrupted run's after kills at steps "
                           f"{steps_at_kills}, e.g. {different[:3]}")


def test_the_mixed_sampler_starts_at_its_first_batch_and_resumes_at_the_next():
    """Against the global stream itself, not against another sampler (an off-by-one in
    `start` shifts both alike): the uninterrupted sampler yields global batch 0 first, and
    one resumed after 5 batches yields global batch 5 first."""
    sampler = MixedBatchSampler(7, 40, 6, 0.6, seed=3)
    stream = sampler.global_batches()
    batches = [next(stream) for _ in range(8)]
    assert next(iter(sampler)) == batches[0]
    assert next(iter(MixedBatchSampler(7, 40, 6, 0.6, seed=3, start=5))) == batches[5]
