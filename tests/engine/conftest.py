"""Helpers and fixtures shared by the engine's test packages: a small image dump, and
writing a labeling run by hand or reading a finished one back."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.label.decode import DEFAULT_MAX_PIXELS
from engine.label.labeler import LabelSettings
from engine.label.manifest import ModelEntry, RunInput, RunManifest, RunSettings, RunSummary, manifest_path
from engine.label.merge import MergeSettings
from engine.label.request import Inputs, LabelRequest, Runtime
from engine.label.shards import RunFolder, record_line
from engine.label.views import TransformPlan, parse_scales
from tests.conftest import REPO_ROOT


def read_run(out: Path) -> tuple[list[dict], list[dict]]:
    """(records in shard order, failures) of a finished run, from the manifest's list."""
    records = []
    for entry in RunManifest.load(out).shards:
        lines = (out / "shards" / entry.file).read_text(encoding="utf-8").splitlines()
        records += [json.loads(line) for line in lines]
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    return records, failures


def write_run(out: Path, records: list[dict], categories: list[dict], shard_size: int) -> Path:
    """A finished labeling run of `records` in `out`, written by the engine's run folder:
    shards of `shard_size`, the COCO `categories`; settings of a teacher made up for the
    test, with the default labeling settings (score floor 0.05)."""
    teacher = ModelEntry("detect", "0" * 64, "", "written by the test")
    settings = RunSettings(RunInput(images=out / "images"), teacher, None, LabelSettings(), DEFAULT_MAX_PIXELS)
    folder = RunFolder(out, RunManifest(settings, shard_size, categories=categories), resume=False)
    for index, start in enumerate(range(0, len(records), shard_size)):
        chunk = records[start:start + shard_size]
        folder.write_shard(index, "".join(record_line(r) for r in chunk), chunk[0]["file_name"], len(chunk), [])
    folder.mark_complete(RunSummary(images=len(records)))
    return out


def assert_same_records(a: list[dict], b: list[dict]) -> None:
    assert [r["file_name"] for r in a] == [r["file_name"] for r in b]
    for ra, rb in zip(a, b):
        assert (ra["width"], ra["height"]) == (rb["width"], rb["height"]), ra["file_name"]
        assert len(ra["detections"]) == len(rb["detections"]), ra["file_name"]
        for da, db in zip(ra["detections"], rb["detections"]):
            assert da["category_id"] == db["category_id"]
            assert da["score"] == pytest.approx(db["score"], abs=1e-4)
            np.testing.assert_allclose(da["bbox"], db["bbox"], atol=0.05)
            assert ("keypoints" in da) == ("keypoints" in db)
            if "keypoints" in da:
                np.testing.assert_allclose(da["keypoints"], db["keypoints"], atol=0.05)


@pytest.fixture(scope="session")
def dump(tmp_path_factory) -> Path:
    """Ten small synthetic images in two sub-folders."""
    from engine.synth.config import SynthConfig
    from engine.synth.dataset import generate_dataset

    root = tmp_path_factory.mktemp("dump")
    generate_dataset(root / "gen", 10, 7, config=SynthConfig(long_side_range=(96, 160)))
    images = sorted((root / "gen" / "images").iterdir())
    folder = root / "images"
    for i, path in enumerate(images):
        target = folder / ("a" if i < 5 else "b") / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    return folder




# ---- the labeling tests' run: the tiny teachers at two small scales -------------------------
SCALES = "96,128"
FLOOR = 0.001  # the 3-step tiny detector scores low; a low floor keeps records non-trivial


def request(exported, images: Path, out: Path, plan: TransformPlan | None = None, batch_size: int = 8,
            workers: int = 2, **fields) -> LabelRequest:
    """The test run's request: the tiny teachers, scales SCALES, floor FLOOR, 4 images a
    shard; `fields`: other LabelRequest fields (keypoints, resume)."""
    labeling = LabelSettings(plan or TransformPlan.grid(parse_scales(SCALES), max_size=256),
                             MergeSettings(score_floor=FLOOR))
    return LabelRequest(**{"detector": exported["detect"][0], "keypoints": exported["keypoints"][0], "out": out,
                           "inputs": Inputs(images=images), "labeling": labeling,
                           "runtime": Runtime(batch_size=batch_size, workers=workers, progress=False), "shard_size": 4,
                           **fields})


def labeling_command(exported, images: Path | str, out: Path, *extra: str) -> list[str]:
    """`distill label` as a subprocess on the tiny teachers, two images a shard (so that a
    kill lands between shards)."""
    return [sys.executable, "-m", "engine.cli", "label", "--detector", str(exported["detect"][0]),
            "--keypoints", str(exported["keypoints"][0]), "--images", str(images), "--out", str(out),
            "--scales", SCALES, "--max-size", "256", "--score-floor", str(FLOOR), "--shard-size", "2",
            "--batch-size", "2", "--workers", "1", "--no-progress", *extra]


def killed_after_two_shards(command: list[str], out: Path) -> RunManifest:
    """Run `command`, SIGKILL it once its manifest lists two finished shards; the manifest
    it left."""
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        # The manifest is replaced atomically: once there, it is always whole.
        if manifest_path(out).exists() and len(RunManifest.load(out).shards) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed: " + process.stderr.read().decode()
    process.send_signal(signal.SIGKILL)
    process.wait()
    return RunManifest.load(out)
