"""The loop's make targets, planned by `make -n` (nothing runs): what each round builds
from what, in which order."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def plan(tmp_path: Path, *goals: str) -> list[str]:
    """The commands `make -n` would run for `goals` with RUN under `tmp_path`; the venv
    stamp is declared up to date so that setup is not part of the plan."""
    run = tmp_path / "run"
    finished = subprocess.run(
        ["make", "-n", "--no-print-directory", f"RUN={run}", "-o", ".venv/.installed-train-export-plots", "-o", ".venv/.numba-warm", *goals],
        cwd=ROOT, capture_output=True, text=True, check=True)
    commands = finished.stdout.replace("\\\n", " ").replace(str(run), "RUN")  # join continued lines
    return [" ".join(line.split()) for line in commands.splitlines()]


def index_of(lines: list[str], *parts: str) -> int:
    return next(i for i, line in enumerate(lines) if all(p in line for p in parts))


def test_round_two_is_taught_by_round_one_students(tmp_path):
    lines = plan(tmp_path, "student", "ROUND=2")
    first = index_of(lines, "distill export onnx", "--checkpoint RUN/teacher-detector/model.pt", "RUN/round1/detector.onnx")
    second = index_of(lines, "distill export onnx", "--checkpoint RUN/round1/student-detector/model.pt",
                      "RUN/round2/detector.onnx")
    select = index_of(lines, "distill select", "--predictions RUN/round1/labels", "--labeled RUN/data/train/annotations.json")
    student = index_of(lines, "distill train --task detect", "--pseudo-json RUN/round1/generated.json",
                       "--pseudo-images RUN/data/unlabeled/images", "--ratio 0.6", "--schedule-scale 1 --pseudo-json",
                       "--out RUN/round1/student-detector")
    final = index_of(lines, "distill train --task keypoints", "--pseudo-json RUN/round2/generated.json")
    assert first < select < student < second < final
    assert not any("val-tta" in line for line in lines)  # the table is not part of `student`


def test_loop_runs_rounds_in_order_and_tables_each(tmp_path):
    lines = plan(tmp_path, "loop", "ROUNDS=2")
    assert any("for round in $(seq 1 2)" in line for line in lines)
    assert any("student gallery report ROUND=$round" in line for line in lines)


def test_gallery_shows_the_rounds_labels_beside_their_labeling_run(tmp_path):
    lines = plan(tmp_path, "gallery", "ROUND=2")
    gallery = index_of(lines, "distill gallery", "--labels RUN/round2/generated.json",
                       "--images RUN/data/unlabeled/images", "--predictions RUN/round2/labels",
                       "--out RUN/round2/gallery")
    assert gallery > index_of(lines, "distill select", "--predictions RUN/round2/labels")


def test_report_compares_like_with_like(tmp_path):
    lines = plan(tmp_path, "report")
    tta = index_of(lines, "distill label", "--images RUN/data/val/images", "--out RUN/round1/val-tta")
    assert "--scales 160:224:32" in lines[tta]
    index_of(lines, "distill eval --checkpoint RUN/teacher-keypoints/model.pt", "--detector RUN/teacher-detector/model.pt")
    student = index_of(lines, "distill eval --checkpoint RUN/round1/student-keypoints/model.pt",
                       "--detector RUN/round1/student-detector/model.pt")
    report = index_of(lines, "engine.select.report", "--tta RUN/round1/val-tta.json",
                      "--supervised RUN/teacher-detector/metrics.json RUN/teacher-keypoints/keypoints-e2e.json",
                      "--student RUN/round1/student-detector/metrics.json RUN/round1/student-keypoints/keypoints-e2e.json")
    assert tta < report and student < report


def test_later_rounds_compare_with_the_supervised_baseline_and_their_teacher(tmp_path):
    lines = plan(tmp_path, "report", "ROUND=2")
    index_of(lines, "engine.select.report", "--round 2",
             "--supervised RUN/teacher-detector/metrics.json RUN/teacher-keypoints/keypoints-e2e.json",
             "--teacher RUN/round1/student-detector/metrics.json RUN/round1/student-keypoints/keypoints-e2e.json",
             "--student RUN/round2/student-detector/metrics.json")
    index_of(lines, "distill eval --checkpoint RUN/teacher-keypoints/model.pt")


def test_interrupted_steps_resume(tmp_path):
    run = tmp_path / "run"
    (run / "round1" / "student-detector").mkdir(parents=True)
    (run / "round1" / "student-detector" / "last.pt").write_bytes(b"")
    (run / "round1" / "labels").mkdir()
    (run / "round1" / "labels" / "manifest.json").write_text("{}")
    lines = plan(tmp_path, "student")
    assert "--resume" in lines[index_of(lines, "distill label", "--out RUN/round1/labels")]
    assert "--resume" in lines[index_of(lines, "distill train --task detect", "--out RUN/round1/student-detector")]
    assert "--resume" not in lines[index_of(lines, "distill train --task keypoints", "--out RUN/round1/student-keypoints")]
    assert "--resume" not in lines[index_of(lines, "distill train --task detect", "--out RUN/teacher-detector")]
