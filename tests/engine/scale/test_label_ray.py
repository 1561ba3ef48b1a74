"""`distill label --ray`: the single-box run's records, shards and failures, written by a
Ray Data job on a local 2-CPU cluster; resume after a stop; pool sizing; errors.

The cluster is started once per session (`ray.init(num_cpus=2)`, no dashboard, a small
object store). Skipped where the `scale` extra (Ray Data) is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.errors import UserError
from engine.label.manifest import RunManifest
from engine.label.request import RayPool
from engine.label.run import label
from engine.scale.cluster import size_pool
from tests.engine.label.gauntlet import build_gauntlet
from tests.conftest import REPO_ROOT as REPO
from tests.engine.conftest import assert_same_records, read_run
from tests.engine.conftest import request

SHARD_SIZE = 4


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray Data is the optional `scale` extra (make setup installs it)")
    pytest.importorskip("ray.data", reason="Ray Data is the optional `scale` extra")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024**2, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def mixed_dump(tmp_path_factory) -> tuple[Path, dict[str, str | None]]:
    """Synthetic pictures and the gauntlet of awkward files in one folder:
    ({name: expected failure fragment or None})."""
    from engine.synth.config import SynthConfig
    from engine.synth.dataset import generate_dataset

    root = tmp_path_factory.mktemp("mixed") / "images"
    expected = {f"gauntlet/{name}": reason for name, reason in build_gauntlet(root / "gauntlet").items()}
    generated = tmp_path_factory.mktemp("gen")
    generate_dataset(generated, 6, 11, config=SynthConfig(long_side_range=(96, 160)))
    for path in sorted((generated / "images").iterdir()):
        (root / "synth").mkdir(exist_ok=True)
        (root / "synth" / path.name).write_bytes(path.read_bytes())
        expected[f"synth/{path.name}"] = None
    return root, expected


@pytest.fixture(scope="module")
def local_run(exported, mixed_dump, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "run"
    label(request(exported, mixed_dump[0], out, shard_size=SHARD_SIZE, workers=2))
    return out


def _label_on_ray(exported, images: Path, out: Path, actors: int = 1, **overrides):
    from engine.scale.driver import label_on_ray

    return label_on_ray(request(exported, images, out, shard_size=SHARD_SIZE, **overrides), RayPool(actors=actors))


def test_ray_run_writes_the_local_runs_shards_and_failures(ray_cluster, exported, mixed_dump, local_run, tmp_path):
    root, expected = mixed_dump
    out = tmp_path / "run"
    summary = _label_on_ray(exported, root, out, actors=2)
    records, failures = read_run(out)
    local_records, local_failures = read_run(local_run)
    assert_same_records(records, local_records)
    good = sorted(name for name, reason in expected.items() if reason is None)
    assert sorted(r["file_name"] for r in records) == good
    reasons = {f["file_name"]: f["reason"] for f in failures}
    bad = {name: reason for name, reason in expected.items() if reason is not None}
    assert set(reasons) == set(bad)
    for name, fragment in bad.items():
        assert fragment in reasons[name], (name, reasons[name])
    assert sorted(failures, key=lambda f: f["file_name"]) == sorted(local_failures, key=lambda f: f["file_name"])

    manifest, local_manifest = RunManifest.load(out), RunManifest.load(local_run)
    assert manifest.complete and manifest.settings.difference(local_manifest.settings) is None
    assert manifest.shards == local_manifest.shards  # same names, first files and counts
    assert manifest.categories == local_manifest.categories
    assert manifest.runtime.actors == 2
    assert manifest.runtime.address == ray_cluster.get_runtime_context().gcs_address
    assert summary.images == len(good) and summary.failed == len(bad)
    assert summary.stage_seconds["inference"] > 0


def test_ray_run_stopped_after_two_shards_resumes_without_repeating(ray_cluster, exported, mixed_dump, local_run,
                                                                     tmp_path, monkeypatch):
    from engine.label.shards import RunFolder

    root, _ = mixed_dump
    out = tmp_path / "run"
    real_write = RunFolder.write_shard
    written: list[int] = []

    def write_then_stop(self, index, *args):
        real_write(self, index, *args)
        written.append(index)
        if len(written) == 2:
            raise KeyboardInterrupt  # what Ctrl-C does to the driver, between two shards

    monkeypatch.setattr(RunFolder, "write_shard", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        _label_on_ray(exported, root, out)
    stopped = RunManifest.load(out)
    assert not stopped.complete and sorted(s.index for s in stopped.shards) == sorted(written)

    monkeypatch.setattr(RunFolder, "write_shard", real_write)
    summary = _label_on_ray(exported, root, out, resume=True)
    total = len(read_run(local_run)[0]) + len(read_run(local_run)[1])
    done_before = sum(s.images + s.failures for s in stopped.shards)
    assert summary.skipped == done_before and summary.images + summary.failed == total - done_before
    records, failures = read_run(out)
    assert len({r["file_name"] for r in records}) == len(records)
    assert len({f["file_name"] for f in failures}) == len(failures)
    assert_same_records(records, read_run(local_run)[0])
    manifest = RunManifest.load(out)
    assert manifest.complete and manifest.shards == RunManifest.load(local_run).shards
    assert not [p for p in (out / "shards").iterdir() if p.name.startswith(".")]


def test_a_local_run_resumes_on_ray_and_a_finished_run_relabels_nothing(ray_cluster, exported, mixed_dump,
                                                                        local_run, tmp_path):
    """The settings, not where it ran, decide a run folder: a finished local run resumed
    on Ray sends no shard to the cluster."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(local_run, out)
    summary = _label_on_ray(exported, mixed_dump[0], out, resume=True)
    assert summary.images == summary.failed == 0 and summary.skipped == sum(1 for _ in mixed_dump[1])
    assert read_run(out) == read_run(local_run)


def test_actors_that_cannot_open_the_models_fail_the_job_in_one_line(ray_cluster, exported, mixed_dump, tmp_path,
                                                                      monkeypatch):
    """Models the driver can open but the actors cannot (on a cluster: not at the same
    path on the worker nodes): a one-line UserError, not a hang or a Ray traceback."""
    import shutil

    import engine.scale.driver as driver

    detector = tmp_path / "detector.onnx"
    shutil.copy(exported["detect"][0], detector)
    real_split = driver.split_into_shards

    def split_then_remove_the_model(*args, **kwargs):
        detector.unlink()  # after the driver's own check, before any actor starts
        return real_split(*args, **kwargs)

    monkeypatch.setattr(driver, "split_into_shards", split_then_remove_the_model)
    with pytest.raises(UserError, match=r"the Ray job failed \(ActorDiedError\): .*model file not found: .*"
                                        r"detector\.onnx; shards written so far are kept, --resume continues$"):
        _label_on_ray(exported, mixed_dump[0], tmp_path / "run", detector=detector)


def test_cli_label_with_ray(ray_cluster, exported, mixed_dump, local_run, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["label", "--detector", str(exported["detect"][0]), "--keypoints", str(exported["keypoints"][0]),
                 "--images", str(mixed_dump[0]), "--out", str(out), "--scales", "96,128", "--max-size", "256",
                 "--score-floor", "0.001", "--shard-size", str(SHARD_SIZE), "--ray", "--actors", "1",
                 "--actor-cpus", "1", "--no-progress"])
    assert code == 0
    assert "labeled" in capsys.readouterr().out
    assert_same_records(read_run(out)[0], read_run(local_run)[0])


def test_a_staged_plan_on_ray_writes_the_local_runs_records_and_counts_the_escalated(ray_cluster, exported,
                                                                                      mixed_dump, tmp_path):
    import dataclasses

    from engine.label.escalation import Escalation
    from engine.label.labeler import LabelSettings
    from engine.label.merge import MergeSettings
    from engine.label.views import TransformPlan, parse_scales
    from tests.engine.conftest import FLOOR, SCALES
    from tests.engine.label.test_staged_plans import middle_best_score

    # Images whose first stage keeps no detection above the middle best score get every pass: about half.
    first = LabelSettings(TransformPlan(((128, False),), 256), MergeSettings(score_floor=FLOOR))
    label(dataclasses.replace(request(exported, mixed_dump[0], tmp_path / "first", shard_size=SHARD_SIZE),
                              labeling=first))
    escalation = Escalation(first.plan.passes, "empty", (("score", middle_best_score(read_run(tmp_path / "first")[0])),))
    labeling = dataclasses.replace(first, plan=TransformPlan.grid(parse_scales(SCALES), max_size=256),
                                   escalation=escalation)
    local = dataclasses.replace(request(exported, mixed_dump[0], tmp_path / "local", shard_size=SHARD_SIZE),
                                labeling=labeling)
    local_summary = label(local)
    summary = _label_on_ray(exported, mixed_dump[0], tmp_path / "ray", labeling=labeling)
    records = read_run(tmp_path / "ray")[0]
    assert_same_records(records, read_run(tmp_path / "local")[0])
    escalated = sum(r["escalated"] for r in records)
    assert 0 < escalated < len(records)
    assert summary.escalated == local_summary.escalated == escalated
    assert RunManifest.load(tmp_path / "ray").summary.escalated == escalated


@pytest.mark.parametrize("extra, message", [
    (["--actors", "2"], "--actors only apply with --ray"),
    (["--actor-gpus", "1"], "--actor-gpus only apply with --ray"),
    (["--ray", "--workers", "2"], "--workers does not apply with --ray"),
    (["--ray", "--actors", "0"], "argument --actors: must be >= 1"),
])
def test_cli_refuses_scale_out_options_out_of_place(exported, tmp_path, capsys, extra, message):
    try:
        code = main(["label", "--detector", str(exported["detect"][0]), "--images", str(tmp_path), "--out",
                     str(tmp_path / "out"), *extra])
    except SystemExit as exit_:  # a flag's value refused while parsing
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_pool_larger_than_the_cluster_is_refused_before_out_is_made(ray_cluster, exported, mixed_dump, tmp_path,
                                                                        capsys):
    code = main(["label", "--detector", str(exported["detect"][0]), "--images", str(mixed_dump[0]),
                 "--out", str(tmp_path / "out"), "--ray", "--actors", "3"])
    assert code == 2
    assert capsys.readouterr().err.strip() == ("distill label: error: 3 actor(s) of 1 CPU need 3 CPUs; "
                                               "the cluster has 2")
    assert not (tmp_path / "out").exists()


def test_the_driver_feeds_rows_a_bounded_window_at_a_time(ray_cluster):
    """The driver's memory stays flat in the input's size: the walk is never more than the
    window (plus the row in hand) ahead of the results written back."""
    import numpy as np

    from engine.scale.cluster import ActorPool
    from engine.scale.driver import labeled_rows

    class Echo:  # local: pickled by value for the actors (tests/ is no package)
        def __call__(self, batch):
            return {"shard": np.asarray(batch["shard"])}

    walked: list[int] = []

    def rows():
        for shard in range(12):
            walked.append(shard)
            yield {"shard": shard, "names": "[]", "problems": "{}"}

    returned = []
    for row in labeled_rows(rows(), Echo, {}, ActorPool(actors=1, cpus=1.0, gpus=0.0), window=3):
        returned.append(int(row["shard"]))
        assert len(walked) <= len(returned) + 3, (walked, returned)
    assert sorted(returned) == list(range(12))


def test_pool_sizes():
    # Without GPUs: 1-CPU actors on every CPU but one, never fewer than one actor.
    assert (size_pool({"CPU": 2.0}, None, None, None).actors, size_pool({"CPU": 2.0}, None, None, None).cpus) == (1, 1)
    assert size_pool({"CPU": 16.0}, None, None, None).actors == 15
    assert size_pool({"CPU": 16.0}, None, 4, None).actors == 3
    # With GPUs: one actor per GPU, sharing the CPUs but one.
    pool = size_pool({"CPU": 33.0, "GPU": 4.0}, None, None, None)
    assert (pool.actors, pool.cpus, pool.gpus, pool.threads) == (4, 8.0, 1.0, 8)
    assert size_pool({"CPU": 2.0}, 2, 0.5, None).threads == 1
    for resources, actors, cpus, gpus, message in (
            ({"CPU": 2.0}, 1, None, 1.0, "need 1 GPUs; the cluster has 0"),
            ({"CPU": 2.0}, 3, None, None, "need 3 CPUs; the cluster has 2"),
            ({"CPU": 2.0}, None, 0.0, None, "--actor-cpus must be > 0"),
            ({"CPU": 2.0}, None, None, -1.0, "--actor-gpus >= 0")):
        with pytest.raises(UserError, match=message):
            size_pool(resources, actors, cpus, gpus)


def test_without_ray_a_ray_run_is_one_line_and_the_engine_still_imports(exported, tmp_path):
    blocker = tmp_path / "blocker"
    (blocker / "ray").mkdir(parents=True)
    (blocker / "ray" / "__init__.py").write_text('raise ImportError("ray is blocked for this test")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(REPO)])}
    images = tmp_path / "images"
    images.mkdir()
    import cv2
    import numpy as np

    cv2.imwrite(str(images / "a.png"), np.zeros((32, 32, 3), np.uint8))
    result = subprocess.run([sys.executable, "-m", "engine.cli", "label", "--detector", str(exported["detect"][0]),
                             "--images", str(images), "--out", str(tmp_path / "out"), "--ray"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == ("distill label: error: --ray needs Ray Data: "
                                     "pip install 'distill[scale]' (or make setup)")
    imported = subprocess.run([sys.executable, "-c", "import engine.scale.driver, engine.label.cli"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr
