"""`make real`: a one-line skip naming the missing file, else its steps in order, planned by
`make -n` (nothing runs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_makefile_loop import ROOT, index_of

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

FILES = ("models/yolo11n-pose/yolo11n-pose.onnx", "coco-mini/annotations/person_keypoints.json",
         "coco-unlabeled/person_keypoints_derived.json", "coco-unlabeled/images/")


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True)


def shared_with(root: Path, names: tuple[str, ...]) -> Path:
    """A stand-in for ../shared/data under `root` holding `names` (empty files, or
    folders for names ending in /)."""
    for name in names:
        path = root / name
        if name.endswith("/"):
            path.mkdir(parents=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    return root


def test_skips_in_one_line_naming_the_first_missing_file(tmp_path):
    shared = shared_with(tmp_path / "shared", FILES[:2])  # the model and coco-mini, not coco-unlabeled
    finished = make("real", f"SHARED={shared}", f"REAL={tmp_path / 'real'}")
    assert finished.returncode == 0
    assert finished.stdout.splitlines() == [
        f"make real: skipped: {shared}/coco-unlabeled/person_keypoints_derived.json not found "
        f"(set SHARED or REAL_MODEL)"]
    assert not (tmp_path / "real").exists()


def test_runs_import_plan_label_select_score_gallery_in_order(tmp_path):
    shared = shared_with(tmp_path / "shared", FILES)
    finished = make("-n", "real", f"SHARED={shared}", f"REAL={tmp_path / 'real'}")
    assert finished.returncode == 0, finished.stderr
    lines = [" ".join(line.split()) for line in
             finished.stdout.replace("\\\n", " ").replace(str(tmp_path), "T").splitlines()]
    steps = [index_of(lines, "distill import ultralytics", "--onnx T/shared/models/yolo11n-pose/yolo11n-pose.onnx"),
             index_of(lines, "distill plan-transforms", "--json T/shared/coco-unlabeled/person_keypoints_derived.json",
                      "--partial-labels --objective keypoints", "--out T/real/plan-transforms"),
             index_of(lines, "distill label", "--images T/real/val2017", "--plan T/real/plan-transforms",
                      "--score-floor 0.01 --max-detections 100", "--out T/real/plan"),
             index_of(lines, "distill select", "--labeled T/real/train2017.json", "--out T/real/labels.json"),
             index_of(lines, "distill gallery", "--gt T/real/val2017.json", "--out T/real/gallery")]
    assert steps == sorted(steps)
    prepare = index_of(lines, "benchmarks.real_teacher --out T/real --prepare")
    score = index_of(lines, "benchmarks.real_teacher --out T/real --no-direct --plan T/real/plan-transforms")
    assert prepare < steps[2] < score
