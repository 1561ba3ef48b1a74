"""The run folder's typed manifest: a run folder written before the manifest was typed
still loads, reopens for resume with equal settings and refuses changed ones; the JSON
is the same; readers get one-line errors for what is not a run's manifest.

fixtures/partial-run-v1 (its README says how it was made): a run of 7 files with shard
size 2, killed after shard 0, by the code of commit 5263a9c.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.label.labeler import LabelSettings
from engine.label.manifest import (LocalRuntime, RayRuntime, RunManifest, RunSettings, RunSummary, ShardEntry,
                                   manifest_path)
from engine.label.merge import MergeSettings
from engine.label.request import Inputs
from engine.label.shards import RunFolder, record_line
from engine.label.views import TransformPlan
from engine.scale.split import split_into_shards

FIXTURE = Path(__file__).parent / "fixtures" / "partial-run-v1"
# What the fixture's flags decide: --scales 64,96 --max-size 160 --score-floor 0.01 --max-detections 20
RUNTIME = LocalRuntime(("OnnxRuntimeBackend",) * 2, ("CPUExecutionProvider",), False, batch_size=4, workers=1,
                       backend_threads=1)
LABELING = LabelSettings(TransformPlan.grid((64, 96), max_size=160), MergeSettings(score_floor=0.01, max_detections=20))


@pytest.fixture
def old_run(tmp_path) -> Path:
    """A copy of the fixture's run folder (resume writes into it)."""
    return Path(shutil.copytree(FIXTURE / "run", tmp_path / "run"))


def settings_like_the_fixture(**changes) -> RunSettings:
    """The settings today's code builds for the fixture's flags: input and models taken
    from the fixture (they name files where it was made), labeling built anew."""
    recorded = RunManifest.load(FIXTURE / "run").settings
    return dataclasses.replace(recorded, **{"labeling": LABELING, **changes})


def test_a_run_from_before_loads_typed():
    manifest = RunManifest.load(FIXTURE / "run")
    assert manifest.settings.labeling == LABELING and manifest.settings.max_pixels == 178956970
    assert manifest.settings.input.images is not None and manifest.settings.input.list_file is None
    assert (manifest.settings.detector.task, manifest.settings.keypoints.task) == ("detect", "keypoints")
    assert manifest.settings.detector.model_name == "tiny" and len(manifest.settings.detector.card_sha256) == 64
    assert manifest.shard_size == 2 and not manifest.complete and manifest.summary is None
    assert manifest.shards == [ShardEntry(0, "shard-000000.jsonl", "broken.jpg", images=1, failures=1)]
    assert [c["name"] for c in manifest.categories] == ["person", "car"]
    assert len(manifest.categories[0]["keypoints"]) == 17
    assert manifest.runtime == RUNTIME


def test_the_json_on_disk_is_the_json_it_always_was():
    on_disk = json.loads(manifest_path(FIXTURE / "run").read_text())
    assert RunManifest.load(FIXTURE / "run").to_dict() == on_disk


def test_a_run_from_before_reopens_for_resume(old_run):
    # A new shard size and runtime: the resumed run keeps its own shard size and start time.
    runtime = LocalRuntime(("OnnxRuntimeBackend",), ("CPUExecutionProvider",), False, 8, 2, 0)
    fresh = RunManifest(settings_like_the_fixture(), shard_size=1000, categories=[{"id": 1, "name": "person"}],
                        runtime=runtime)
    started = RunManifest.load(old_run).started
    folder = RunFolder(old_run, fresh, resume=True)
    assert folder.shard_size == 2 and folder.manifest.started == started
    assert folder.manifest.runtime == runtime and folder.manifest.categories == fresh.categories

    # The input is cut as before: shard 0 (a failure and one record) is done, 1..3 are not.
    _, sources = Inputs(images=FIXTURE / "images").open()
    split = split_into_shards(sources, folder.shard_size, folder.finished())
    assert [row["shard"] for row in split] == [1, 2, 3] and split.skipped == 2
    assert json.loads((old_run / "failures.jsonl").read_text())["file_name"] == "broken.jpg"  # kept

    record = {"file_name": "synth_000001.jpg", "width": 8, "height": 6, "detections": []}
    folder.write_shard(1, record_line(record) + record_line({**record, "file_name": "synth_000002.jpg"}),
                       "synth_000001.jpg", 2, [])
    folder.mark_complete(RunSummary(images=2, skipped=2))
    reread = RunManifest.load(old_run)
    assert [s.index for s in reread.shards] == [0, 1] and reread.complete and reread.summary.skipped == 2
    assert reread.settings.difference(settings_like_the_fixture()) is None


@pytest.mark.parametrize("changes, message", [
    ({"labeling": dataclasses.replace(LABELING, merge=MergeSettings(score_floor=0.02, max_detections=20))},
     "labeling.merge.score_floor was 0.01, now 0.02"),
    ({"labeling": dataclasses.replace(LABELING, keypoint_flip=False)}, "labeling.keypoint_flip was true, now false"),
    ({"max_pixels": 1000}, "max_pixels was 178956970, now 1000"),
    ({"keypoints": None}, 'keypoints was {"task": "keypoints", '),
])
def test_a_run_from_before_refuses_changed_settings(old_run, changes, message):
    before = manifest_path(old_run).read_bytes()
    fresh = RunManifest(dataclasses.replace(settings_like_the_fixture(), **changes), shard_size=2)
    with pytest.raises(UserError, match="settings differ") as refused:
        RunFolder(old_run, fresh, resume=True)
    assert message in str(refused.value)
    assert manifest_path(old_run).read_bytes() == before


def test_batch_size_is_no_setting(old_run):
    """Records do not depend on the batch size: another one resumes, and the manifest
    records it under the runtime only."""
    runtime = dataclasses.replace(RUNTIME, batch_size=3)
    folder = RunFolder(old_run, RunManifest(settings_like_the_fixture(), shard_size=2, runtime=runtime), resume=True)
    assert folder.manifest.runtime.batch_size == 3 and "batch_size" not in json.dumps(folder.manifest.settings.to_dict())


def test_ray_runtime_keeps_its_json():
    runtime = RayRuntime("127.0.0.1:6379", 2, 1.0, 0.0, "auto", 8)
    data = runtime.to_dict()
    assert data == {"ray": {"address": "127.0.0.1:6379", "actors": 2, "actor_cpus": 1.0, "actor_gpus": 0.0},
                    "backend": "auto", "batch_size": 8}
    manifest = RunManifest(settings_like_the_fixture(), shard_size=2, runtime=runtime)
    assert RunManifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest


def test_settings_in_a_labels_files_info():
    settings = settings_like_the_fixture()
    assert RunSettings.from_info({"labeling": settings.to_dict()}, "labels.json") == settings
    assert RunSettings.from_info({"description": "ground truth"}, "gt.json") is None
    assert RunSettings.from_info(None, "gt.json") is None
    with pytest.raises(UserError, match=r"labels\.json: info\[\"labeling\"\] .*missing field 'keypoints'"):
        RunSettings.from_info({"labeling": {"detector": {}}}, "labels.json")


def test_what_is_not_a_runs_manifest_is_refused_in_one_line(tmp_path):
    with pytest.raises(UserError, match="holds no labeling run"):
        RunManifest.load(tmp_path)
    path = manifest_path(tmp_path)
    for text, message in (("{", "cannot read"), (json.dumps({"format": "other"}), "not a distill predictions manifest"),
                          (json.dumps({"format": "distill-predictions-v1", "shard_size": 2}),
                           "missing field 'settings'")):
        path.write_text(text)
        with pytest.raises(UserError, match=message):
            RunManifest.load(tmp_path)
    data = json.loads(manifest_path(FIXTURE / "run").read_text())
    data["settings"]["labeling"]["merge"]["scoring"] = "best"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="unknown scoring 'best'"):
        RunManifest.load(tmp_path)
