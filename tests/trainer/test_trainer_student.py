"""The student side of distillation: the 6:4 batch sampler and training on generated labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.errors import UserError
from trainer.data.coco import load_annotations
from trainer.data.keypoints import KeypointDataset
from trainer.config import tiny_keypoints
from trainer.data.mixing import MixedBatchSampler, check_ratio
from trainer.train import TrainOptions, train


def take(sampler, count: int) -> list[list[int]]:
    batches = []
    for batch in sampler:
        batches.append(batch)
        if len(batches) == count:
            return batches


@pytest.mark.parametrize("batch_size", [2, 5, 8, 16])
def test_labeled_fraction_is_ratio_and_every_batch_has_a_labeled_item(batch_size):
    labeled, generated = 30, 500
    batches = take(MixedBatchSampler(labeled, generated, batch_size, 0.6, seed=batch_size), 1000)
    assert all(len(b) == batch_size for b in batches)
    is_labeled = np.array([[i < labeled for i in b] for b in batches])
    assert is_labeled.any(axis=1).all()
    assert abs(is_labeled.mean() - 0.6) <= 0.02
    # Both streams are covered: every labeled item is used, and generated ones in range.
    flat = np.concatenate(batches)
    assert set(flat[flat < labeled]) == set(range(labeled))
    assert flat.max() < labeled + generated


def test_other_ratios_are_met_in_expectation():
    batches = take(MixedBatchSampler(10, 10, 4, 0.35, seed=1), 2000)
    fraction = np.mean([[i < 10 for i in b] for b in batches])
    assert abs(fraction - 0.35) <= 0.02
    single = take(MixedBatchSampler(10, 10, 1, 0.6, seed=2), 2000)
    assert abs(np.mean([b[0] < 10 for b in single]) - 0.6) <= 0.03


def test_ranks_split_the_global_batch_and_start_skips_batches():
    whole = take(MixedBatchSampler(7, 40, 6, 0.6, seed=3), 20)
    ranks = [take(MixedBatchSampler(7, 40, 6, 0.6, seed=3, rank=r, world=3), 20) for r in range(3)]
    for number, batch in enumerate(whole):
        parts = [ranks[r][number] for r in range(3)]
        assert all(len(p) == 2 for p in parts)
        assert sorted(sum(parts, [])) == sorted(batch)
    resumed = take(MixedBatchSampler(7, 40, 6, 0.6, seed=3, start=5), 15)
    assert resumed == whole[5:]


@pytest.mark.parametrize("ratio, batch, message", [
    (0.0, 4, r"--ratio must be in \(0, 1\]"),
    (1.5, 4, r"--ratio must be in \(0, 1\]"),
    (0.3, 2, "cannot put a labeled item in every minibatch"),
])
def test_bad_ratio_is_a_user_error(ratio, batch, message):
    with pytest.raises(UserError, match=message):
        check_ratio(ratio, batch)


def pseudo_labels(source_json, out_path, hide_joints: int) -> dict:
    """A generated-label file made from ground truth, with the last `hide_joints` joints
    of every person at v=0 (as `distill select` writes keypoints under its threshold)."""
    data = json.loads(source_json.read_text())
    for ann in data["annotations"]:
        if "keypoints" in ann:
            points = ann["keypoints"]
            for joint in range(17 - hide_joints, 17):
                points[3 * joint:3 * joint + 3] = [0, 0, 0]
            ann["num_keypoints"] = sum(1 for v in points[2::3] if v)
        ann["score"] = 0.9
    out_path.write_text(json.dumps(data))
    return data


def test_generated_keypoints_at_v0_carry_no_loss(synth_small, tmp_path):
    pseudo = tmp_path / "pseudo.json"
    pseudo_labels(synth_small["val_json"], pseudo, hide_joints=5)
    dataset = KeypointDataset(load_annotations(pseudo, synth_small["val_images"]), str(synth_small["val_images"]),
                              tiny_keypoints(), train=False)
    assert len(dataset)
    for index in range(len(dataset)):
        _, heatmaps, weights, _ = dataset[index]
        assert weights[12:].sum() == 0 and heatmaps[12:].abs().sum() == 0


def student_options(data, task, out, pseudo, **kw) -> TrainOptions:
    base = dict(task=task, train_json=str(data["train_json"]), train_images=str(data["train_images"]),
                model="tiny", iters=2, batch_size=4, out=str(out), workers=0, threads=2, checkpoint_every=0,
                pseudo_json=str(pseudo), pseudo_images=str(data["val_images"]))
    base.update(kw)
    return TrainOptions(**base)


@pytest.mark.parametrize("task", ["detect", "keypoints"])
def test_student_trains_on_both_sets_with_a_longer_schedule(synth_small, tmp_path, task):
    pseudo = tmp_path / "pseudo.json"
    pseudo_labels(synth_small["val_json"], pseudo, hide_joints=3)
    metrics = train(student_options(synth_small, task, tmp_path / "student", pseudo, schedule_scale=1.5))
    assert metrics["iterations"] == 3 and metrics["schedule_scale"] == 1.5
    assert metrics["generated"]["ratio"] == 0.6 and metrics["generated"]["items"] > 0
    assert np.isfinite(metrics["final_loss"])
    ckpt = torch.load(tmp_path / "student" / "model.pt", map_location="cpu", weights_only=True)
    assert ckpt["iteration"] == 3 and ckpt["scheduler"] == {"iteration": 3}


def test_student_resumes_in_the_mixed_stream(synth_small, tmp_path):
    pseudo = tmp_path / "pseudo.json"
    pseudo_labels(synth_small["val_json"], pseudo, hide_joints=0)
    train(student_options(synth_small, "keypoints", tmp_path / "run", pseudo, iters=2))
    resumed = train(student_options(synth_small, "keypoints", tmp_path / "run", pseudo, iters=4, resume=True))
    assert resumed["start_iteration"] == 2 and resumed["iterations"] == 4


def test_generated_labels_with_foreign_categories_are_refused(synth_small, tmp_path):
    pseudo = tmp_path / "pseudo.json"
    data = pseudo_labels(synth_small["val_json"], pseudo, hide_joints=0)
    data["categories"].append({"id": 999, "name": "unicorn"})
    pseudo.write_text(json.dumps(data))
    with pytest.raises(UserError, match="categories not in the labeled set: 999:unicorn"):
        train(student_options(synth_small, "detect", tmp_path / "run", pseudo))


def test_pseudo_json_needs_its_images(synth_small, tmp_path):
    options = student_options(synth_small, "detect", tmp_path / "run", "x.json", pseudo_images=None)
    with pytest.raises(UserError, match="--pseudo-json and --pseudo-images go together"):
        train(options)


def test_config_overrides_change_fields_and_reject_mistakes():
    from trainer.config import override_config, tiny_detector

    config = override_config(tiny_detector(), ["train_min_sizes=[160,192]", "test_min_size=192", "base_lr=1"])
    assert config.train_min_sizes == (160, 192) and config.test_min_size == 192 and config.base_lr == 1.0
    assert tiny_detector().train_min_sizes == (256, 288, 320, 352)  # the named config is untouched
    for bad, message in [("nope=1", "KEY one of"), ("backbone={}", "KEY one of"), ("test_min_size", "KEY one of"),
                         ("test_min_size=abc", "not a JSON value"), ("test_min_size=1.5", "expected a int"),
                         ("train_min_sizes=[]", "non-empty list"), ("train_min_sizes=160", "non-empty list")]:
        with pytest.raises(UserError, match=message):
            override_config(tiny_detector(), [bad])


def test_overrides_travel_in_the_checkpoint(synth_small, tmp_path):
    train(TrainOptions(task="detect", train_json=str(synth_small["train_json"]),
                       train_images=str(synth_small["train_images"]), model="tiny", iters=1, batch_size=2,
                       out=str(tmp_path / "run"), workers=0, threads=2, checkpoint_every=0,
                       overrides=("train_min_sizes=[128]", "test_min_size=144")))
    ckpt = torch.load(tmp_path / "run" / "model.pt", map_location="cpu", weights_only=True)
    assert ckpt["config"]["train_min_sizes"] == [128] and ckpt["config"]["test_min_size"] == 144


def test_init_fine_tunes_from_a_checkpoint_and_scratch_does_not(synth_small, tmp_path, capsys):
    """With LR 0 a step changes nothing (GroupNorm detector: no running statistics), so the
    saved weights are exactly where training started: the --init checkpoint's, or random.
    Through `distill train`, so that the flag's way from the command line is tested too."""
    from engine.cli import main as distill

    def run(out, *flags):
        assert distill(["train", "--task", "detect", "--model", "tiny", "--train-json", str(synth_small["train_json"]),
                        "--train-images", str(synth_small["train_images"]), "--iters", "1", "--batch-size", "2",
                        "--out", str(tmp_path / out), "--workers", "0", "--threads", "2", "--checkpoint-every", "0",
                        "--set", "train_min_sizes=[128]", *flags]) == 0
        return torch.load(tmp_path / out / "model.pt", map_location="cpu", weights_only=True)["state_dict"]

    teacher = run("teacher", "--seed", "5")
    capsys.readouterr()
    tuned = run("tuned", "--init", str(tmp_path / "teacher" / "model.pt"), "--lr", "0", "--seed", "6")
    printed = capsys.readouterr().out
    scratch = run("scratch", "--lr", "0", "--seed", "6")
    assert all(torch.equal(tuned[k], teacher[k]) for k in teacher)
    assert not all(torch.equal(scratch[k], teacher[k]) for k in teacher)
    assert f"--init: loaded {len(teacher)}/{len(teacher)} tensors" in printed
    recorded = json.loads((tmp_path / "tuned" / "metrics.json").read_text())["init"]
    assert recorded == str(tmp_path / "teacher" / "model.pt")


def test_student_trains_under_torchrun_with_two_processes(synth_small, tmp_path):
    """Two gloo ranks on the CPU: each takes its half of every mixed global minibatch."""
    import shutil
    import socket
    import subprocess
    import sys
    from pathlib import Path

    bin_dir = Path(sys.executable).parent
    torchrun, distill = shutil.which("torchrun", path=str(bin_dir)), shutil.which("distill", path=str(bin_dir))
    if torchrun is None or distill is None:
        pytest.skip("torchrun or the distill entry point is not installed beside this Python")
    pseudo = tmp_path / "pseudo.json"
    pseudo_labels(synth_small["val_json"], pseudo, hide_joints=2)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    finished = subprocess.run(
        [torchrun, "--nproc_per_node=2", f"--master_port={port}", distill, "train", "--task", "keypoints",
         "--model", "tiny", "--iters", "2", "--batch-size", "4", "--workers", "0", "--threads", "1",
         "--checkpoint-every", "0", "--train-json", str(synth_small["train_json"]),
         "--train-images", str(synth_small["train_images"]), "--pseudo-json", str(pseudo),
         "--pseudo-images", str(synth_small["val_images"]), "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["iterations"] == 2 and metrics["generated"]["items"] > 0
    assert torch.load(tmp_path / "ddp" / "model.pt", map_location="cpu", weights_only=True)["iteration"] == 2
