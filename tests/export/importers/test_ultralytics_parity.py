"""Parity with the tool that made the model: a YOLO11n-pose built by Ultralytics from its
own yaml (seeded random weights, nothing downloaded), exported with `dynamic=True`,
imported, and run through `distill label` in one pass at its native size merged by plain
NMS at Ultralytics' thresholds gives Ultralytics' own `predict` boxes and keypoints to
within a pixel.

`ultralytics` is a test-only dependency that cannot live in the project's virtualenv
(it pulls PyPI's torchvision, a CUDA build that does not load beside the CPU torch, and
opencv-python over opencv-python-headless), so the reference predictions come from
ultralytics_reference.py run by another Python: $DISTILL_ULTRALYTICS_PYTHON, or this
one where it has ultralytics (docs/import.md makes such a virtualenv).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.coco.geometry import box_iou
from tests.engine.conftest import read_run

REFERENCE = Path(__file__).with_name("ultralytics_reference.py")
# Landscape, portrait and 4:3 photos: each pads differently to a multiple of 32.
PHOTOS = ("000000000139.jpg", "000000000802.jpg", "000000009483.jpg")
PIXEL = 1.0


def ultralytics_python() -> str | None:
    given = os.environ.get("DISTILL_ULTRALYTICS_PYTHON")
    if given:
        return given
    return sys.executable if importlib.util.find_spec("ultralytics") else None


@pytest.fixture(scope="module")
def reference(coco_mini, tmp_path_factory) -> tuple[Path, list[Path]]:
    python = ultralytics_python()
    if python is None:
        pytest.skip("ultralytics is not installed: set DISTILL_ULTRALYTICS_PYTHON to a Python that has it "
                    "(docs/import.md)")
    out = tmp_path_factory.mktemp("ultralytics")
    images = [coco_mini / "images" / name for name in PHOTOS]
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(out / "config")}
    result = subprocess.run([python, str(REFERENCE), "--out", str(out), *map(str, images)], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return out, images


def test_one_native_pass_is_ultralytics_predict(reference, tmp_path):
    out, images = reference
    teacher = tmp_path / "teacher.onnx"
    # Random weights put a thousand anchors of a photo above 0.25, and Ultralytics' NMS
    # takes up to 30,000 candidates: keep them all (a trained model needs the default).
    assert main(["import", "ultralytics", "--onnx", str(out / "model.onnx"), "--out", str(teacher),
                 "--topk", "30000"]) == 0
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"{path}\n" for path in images))
    # Ultralytics' predict: longer side 640, conf 0.25, IoU 0.7, at most 300 detections.
    assert main(["label", "--detector", str(teacher), "--list", str(listing), "--out", str(tmp_path / "run"),
                 "--scales", "640", "--max-size", "640", "--no-flip", "--vote-threshold", "-1",
                 "--nms-threshold", "0.7", "--score-floor", "0.25", "--max-detections", "300",
                 "--no-progress"]) == 0
    records, _ = read_run(tmp_path / "run")
    predictions = json.loads((out / "predictions.json").read_text())
    compared = 0
    for record in records:
        want = predictions[Path(record["file_name"]).name]
        got = record["detections"]
        assert len(got) == len(want["boxes"]) > 0, record["file_name"]
        boxes = np.array([d["bbox"] for d in got], np.float64)
        boxes[:, 2:] += boxes[:, :2]  # xyxy
        labels = np.array([d["category_id"] for d in got])
        for box, score, cls, points in zip(want["boxes"], want["scores"], want["classes"], want["keypoints"]):
            # The model's names are '0'..'79', not COCO's: category ids 1..80 in order.
            iou = np.where(labels == cls + 1, box_iou(np.array([box]), boxes)[0], -1)
            match = got[int(iou.argmax())]
            np.testing.assert_allclose(boxes[int(iou.argmax())], box, atol=PIXEL)
            assert match["score"] == pytest.approx(score, abs=1e-3)
            mine = np.array(match["keypoints"]).reshape(-1, 3)
            np.testing.assert_allclose(mine[:, :2], np.array(points)[:, :2], atol=PIXEL)
            np.testing.assert_allclose(mine[:, 2], np.array(points)[:, 2], atol=1e-3)
            compared += 1
    assert compared > 100
