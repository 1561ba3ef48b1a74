"""Bad input to `distill train` / `distill eval`: one line on stderr, exit status 2."""

from __future__ import annotations

import json

import pytest

from engine.cli import main as distill


def _train_args(json_path, images, out, model="tiny", task="detect"):
    return ["train", "--task", task, "--train-json", str(json_path), "--train-images", str(images),
            "--model", model, "--iters", "1", "--batch-size", "1", "--out", str(out), "--workers", "0"]


def _one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if line.startswith(f"distill {command}: error:")]
    assert len(err) == 1, err
    return err[0]


def test_missing_annotation_file(tmp_path, capsys):
    assert distill(_train_args(tmp_path / "nope.json", tmp_path, tmp_path / "out")) == 2
    assert "nope.json does not exist" in _one_error_line(capsys, "train")


def test_malformed_json(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert distill(_train_args(bad, tmp_path, tmp_path / "out")) == 2
    assert "cannot read" in _one_error_line(capsys, "train")


def test_not_a_coco_file(tmp_path, capsys):
    bad = tmp_path / "items.json"
    bad.write_text(json.dumps({"items": [1, 2]}))
    assert distill(_train_args(bad, tmp_path, tmp_path / "out")) == 2
    assert "is not a COCO dataset" in _one_error_line(capsys, "train")


@pytest.mark.parametrize("task", ["detect", "keypoints"])
def test_image_listed_but_absent(tiny_coco_without_image, tmp_path, capsys, task):
    path = tiny_coco_without_image
    assert distill(_train_args(path, tmp_path / "images", tmp_path / "out", task=task)) == 2
    assert "absent" in _one_error_line(capsys, "train")


def test_unknown_model(tiny_coco, tmp_path, capsys):
    assert distill(_train_args(tiny_coco, tiny_coco.parent / "images", tmp_path / "out", model="r18")) == 2
    assert "unknown model 'r18'" in _one_error_line(capsys, "train")


def test_unknown_task(tiny_coco, tmp_path, capsys):
    assert distill(_train_args(tiny_coco, tiny_coco.parent / "images", tmp_path / "out", task="segment")) == 2
    assert "unknown task" in _one_error_line(capsys, "train")


def test_resume_without_checkpoint(tiny_coco, tmp_path, capsys):
    assert distill(_train_args(tiny_coco, tiny_coco.parent / "images", tmp_path / "empty") + ["--resume"]) == 2
    assert "no checkpoint" in _one_error_line(capsys, "train")


def test_eval_missing_and_corrupt_checkpoint(tiny_coco, tmp_path, capsys):
    args = ["eval", "--json", str(tiny_coco), "--images", str(tiny_coco.parent / "images")]
    assert distill(args + ["--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "checkpoint not found" in _one_error_line(capsys, "eval")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"definitely not a zip archive")
    assert distill(args + ["--checkpoint", str(corrupt)]) == 2
    assert "cannot read checkpoint" in _one_error_line(capsys, "eval")
    # A JSON file passed as a checkpoint: torch's "weights only" text is not shown.
    not_torch = tmp_path / "labels.json"
    not_torch.write_text("{}")
    assert distill(args + ["--checkpoint", str(not_torch)]) == 2
    line = _one_error_line(capsys, "eval")
    assert "not a PyTorch file" in line and "weights_only" not in line


def test_command_module_and_crops_do_not_import_torch():
    import subprocess
    import sys

    code = "import sys, trainer.cli, engine.crops; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
