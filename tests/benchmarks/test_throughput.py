"""benchmarks/throughput.py runs end to end on the tiny models and reports what it claims.

Timings are never asserted (they depend on the machine); the test checks the run's
structure: every path measured on the same images, the stage table, the JSON, and the
last line's format.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from benchmarks.throughput import main


def test_throughput_benchmark_measures_every_path(exported, tmp_path, capsys):
    from engine.synth.config import SynthConfig
    from engine.synth.dataset import generate_dataset

    generate_dataset(tmp_path / "data", 3, 5, config=SynthConfig(long_side_range=(96, 128)))
    shutil.copy(tmp_path / "data" / "annotations.json", tmp_path / "data" / "images" / "notes.txt")  # not an image
    assert main(["--detector", str(exported["detect"][0]), "--keypoints", str(exported["keypoints"][0]),
                 "--images", str(tmp_path / "data" / "images"), "--count", "2", "--scales", "96,128",
                 "--max-detections", "5", "--out", str(tmp_path / "bench")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"pipeline/raw=\d+\.\d\d pipeline/naive=\d+\.\d\d", lines[-1])
    assert lines[0].startswith("2 images from") and "4 passes (96,128 x mirror)" in lines[0]
    result = json.loads((tmp_path / "bench" / "throughput.json").read_text())
    assert set(result["images_per_second"]) == {"raw", "pipeline", "naive"}
    assert all(rate > 0 for rate in result["images_per_second"].values())
    assert set(result["pipeline_stage_seconds"]) == {"discover", "decode", "views", "inference", "ensemble",
                                                     "keypoints", "write"}
    assert set(result["scaling_images_per_second"]) == {"decode", "views", "ensemble"}
    for values in result["scaling_images_per_second"].values():
        assert sorted(values) == [str(t) for t in range(1, len(values) + 1)] and len(values) >= 1
    assert result["pipeline_over_raw"] == pytest.approx(
        result["images_per_second"]["pipeline"] / result["images_per_second"]["raw"])
    assert (tmp_path / "bench" / "throughput.png").stat().st_size > 0
