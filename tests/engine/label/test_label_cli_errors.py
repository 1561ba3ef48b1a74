"""`distill label` from the outside: one-line errors, a torch-free box, real photos.

1. Every mistake a user can make on the command line ends the process with exactly one
   line on stderr ("distill label: error: ..."), a non-zero status and no traceback.
2. `engine` (every module of it) imports, and `distill label` runs, in a process where
   `import torch` fails; asking for `--backend torch` there is a one-line error.
3. On real photos (../shared/data): teachers trained a few steps on coco-mini, exported
   to ONNX, label a list of coco-unlabeled images; `distill select` turns the run into a
   COCO file that pycocotools loads, and COCOeval runs against the derived keypoints.

Each case runs `python -m engine.cli label` as a subprocess (same interpreter, repository
root as cwd), so the test sees what a user sees: the exit status and stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.label.manifest import RunManifest, manifest_path
from tests.conftest import REPO_ROOT

SUBPROCESS_TIMEOUT = 300
ERROR_PREFIX = "distill label: error:"


# ---- helpers ------------------------------------------------------------------------
def run_distill(*args, env: dict | None = None, timeout: float = SUBPROCESS_TIMEOUT) -> subprocess.CompletedProcess:
    """`python -m engine.cli ARGS` in the repository root; stdout and stderr captured."""
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], cwd=REPO_ROOT,
                          capture_output=True, text=True, env=env, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The process failed with exactly one non-empty stderr line, the CLI's error line,
    containing every fragment; returns that line."""
    assert result.returncode != 0, f"expected a failure, got exit 0\nstdout:\n{result.stdout}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{result.stderr}"
    line = lines[0]
    assert line.startswith(ERROR_PREFIX), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def small_images(out_dir: Path, count: int, seed: int) -> Path:
    """A folder of `count` small synthetic JPEGs (long side 96..160 px)."""
    from engine.synth.config import SynthConfig
    from engine.synth.dataset import generate_dataset

    generate_dataset(out_dir, count, seed, config=SynthConfig(long_side_range=(96, 160)))
    return out_dir / "images"


def image_names(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))


def shard_records(out: Path) -> list[dict]:
    records = []
    for entry in RunManifest.load(out).shards:
        with open(out / "shards" / entry.file, encoding="utf-8") as f:
            records += [json.loads(line) for line in f]
    return records


# ---- fixtures -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def images_dir(tmp_path_factory) -> Path:
    return small_images(tmp_path_factory.mktemp("label-cli-data"), 3, seed=11)


@pytest.fixture(scope="module")
def models(exported) -> tuple[Path, Path]:
    """(detector .onnx, keypoint .onnx): the session's tiny exported models."""
    return Path(exported["detect"][0]), Path(exported["keypoints"][0])


@pytest.fixture(scope="module")
def finished_run(models, images_dir, tmp_path_factory) -> Path:
    """A complete labeling run, made in-process (no subprocess start to pay)."""
    from engine.label.labeler import LabelSettings
    from engine.label.merge import MergeSettings
    from engine.label.request import Inputs, LabelRequest, Runtime
    from engine.label.run import label
    from engine.label.views import TransformPlan

    out = tmp_path_factory.mktemp("label-cli-run") / "run"
    labeling = LabelSettings(TransformPlan.grid((96,), flip=False), MergeSettings(score_floor=0.001, max_detections=5))
    label(LabelRequest(detector=models[0], out=out, inputs=Inputs(images=images_dir), labeling=labeling,
                       runtime=Runtime(workers=1, progress=False)))
    assert RunManifest.load(out).complete
    return out


def label_args(detector: Path, images: Path, out: Path, *extra) -> list:
    return ["label", "--detector", detector, "--images", images, "--out", out, "--scales", "96",
            "--no-flip", "--score-floor", "0.001", "--no-progress", *extra]


# ---- 1. one-line errors ---------------------------------------------------------------
def test_junk_detector_file(images_dir, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    result = run_distill(*label_args(junk, images_dir, tmp_path / "out"))
    assert_one_line_error(result, "cannot load ONNX model", "junk.onnx")
    assert not manifest_path(tmp_path / "out").exists()


def test_missing_images_folder(models, tmp_path):
    missing = tmp_path / "no-such-folder"
    result = run_distill(*label_args(models[0], missing, tmp_path / "out"))
    assert_one_line_error(result, "image folder not found", "no-such-folder")


def test_empty_images_folder(models, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image\n")  # no image names at all
    result = run_distill(*label_args(models[0], empty, tmp_path / "out"))
    assert_one_line_error(result, "no images found", "empty")


def test_unwritable_out(models, images_dir, tmp_path):
    # Running as root, chmod does not stop writes: a path below a regular file does.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_distill(*label_args(models[0], images_dir, blocker / "out"))
    assert_one_line_error(result, "cannot write to the run folder", "a-file")


def test_keypoint_model_as_detector(models, images_dir, tmp_path):
    result = run_distill(*label_args(models[1], images_dir, tmp_path / "out"))
    assert_one_line_error(result, "--detector needs a 'detect' model", "'keypoints'")


@pytest.mark.parametrize("scales", ["96,abc", "0"])
def test_bad_scales(models, images_dir, tmp_path, scales):
    args = label_args(models[0], images_dir, tmp_path / "out")
    args[args.index("--scales") + 1] = scales
    assert_one_line_error(run_distill(*args), "argument --scales", repr(scales))


def test_existing_run_without_resume(models, images_dir, finished_run):
    before = manifest_path(finished_run).read_bytes()
    result = run_distill(*label_args(models[0], images_dir, finished_run))
    assert_one_line_error(result, "already holds a labeling run", "--resume")
    assert manifest_path(finished_run).read_bytes() == before  # the refused run touched nothing


# ---- 2. a box without torch ---------------------------------------------------------
IMPORT_EVERYTHING = r"""
import importlib, json, pkgutil, sys
try:
    import torch
except ImportError as error:
    assert "blocked" in str(error), error
else:
    raise SystemExit(f"torch imported from {torch.__file__}: the blocker is not in effect")

def fail(name):
    raise SystemExit(f"cannot import {name}: {sys.exc_info()[1]!r}")

import engine
names = ["engine"]
for info in pkgutil.walk_packages(engine.__path__, "engine.", onerror=fail):
    importlib.import_module(info.name)
    names.append(info.name)
assert "torch" not in sys.modules
print(json.dumps(names))
"""


def engine_module_names() -> set[str]:
    """Every module of the engine package, from the files on disk."""
    names = set()
    for path in (REPO_ROOT / "engine").rglob("*.py"):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.fixture(scope="module")
def torchless_env(tmp_path_factory) -> dict:
    blocker = tmp_path_factory.mktemp("blocker")
    (blocker / "torch").mkdir()
    (blocker / "torch" / "__init__.py").write_text('raise ImportError("torch is blocked for this test")\n')
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(blocker), str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def test_engine_imports_without_torch(torchless_env):
    result = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING], cwd=REPO_ROOT, capture_output=True,
                            text=True, env=torchless_env, timeout=SUBPROCESS_TIMEOUT)
    assert result.returncode == 0, result.stderr + result.stdout
    imported = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert imported == engine_module_names()
    assert {"engine.label.pipeline", "engine.backends.torch_backend", "engine.cli"} <= imported


def test_label_runs_without_torch(models, images_dir, torchless_env, tmp_path):
    detector, keypoints = models
    out = tmp_path / "out"
    result = run_distill("label", "--detector", detector, "--keypoints", keypoints, "--images", images_dir,
                         "--out", out, "--scales", "96", "--no-flip", "--score-floor", "0.001", "--no-progress",
                         env=torchless_env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    manifest = RunManifest.load(out)
    assert manifest.complete
    names = image_names(images_dir)
    assert sum(entry.images for entry in manifest.shards) == len(names)
    assert all(entry.failures == 0 for entry in manifest.shards)
    records = shard_records(out)
    assert sorted(record["file_name"] for record in records) == names
    people = [d for r in records for d in r["detections"] if d["category_id"] == 1]
    assert people and all(len(d["keypoints"]) == 17 * 3 for d in people)


def test_torch_backend_without_torch(models, images_dir, torchless_env, tmp_path):
    args = label_args(models[0], images_dir, tmp_path / "out", "--backend", "torch")
    assert_one_line_error(run_distill(*args, env=torchless_env), "needs PyTorch")


# ---- 3. real photos -------------------------------------------------------------------
UNLABELED_IMAGES = 24


def _start(*args, log: Path) -> subprocess.Popen:
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, "-m", "engine.cli", *map(str, args)], cwd=REPO_ROOT,
                                stdout=f, stderr=subprocess.STDOUT)


def _wait_all(processes: dict[str, tuple[subprocess.Popen, Path]]) -> None:
    try:
        for name, (process, log) in processes.items():
            code = process.wait(timeout=SUBPROCESS_TIMEOUT)
            assert code == 0, f"{name} failed ({code}):\n{log.read_text()[-3000:]}"
    finally:
        for process, _ in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def test_label_and_select_real_photos(coco_mini, coco_unlabeled, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    # Teachers: a few steps each, trained side by side, then exported side by side.
    annotations = coco_mini / "annotations"
    common = ["--model", "tiny", "--iters", "10", "--train-images", coco_mini / "images",
              "--workers", "0", "--threads", "1", "--checkpoint-every", "0"]
    _wait_all({
        "train detect": (_start("train", "--task", "detect", "--batch-size", "2", "--out", tmp_path / "det",
                                "--train-json", annotations / "instances_80cls.json", *common,
                                log=tmp_path / "det.log"), tmp_path / "det.log"),
        "train keypoints": (_start("train", "--task", "keypoints", "--batch-size", "8", "--out", tmp_path / "kp",
                                   "--train-json", annotations / "person_keypoints.json", *common,
                                   log=tmp_path / "kp.log"), tmp_path / "kp.log"),
    })
    _wait_all({
        f"export {task}": (_start("export", "onnx", "--checkpoint", tmp_path / task / "model.pt",
                                  "--out", tmp_path / f"{task}.onnx", "--no-parity",
                                  log=tmp_path / f"{task}-export.log"), tmp_path / f"{task}-export.log")
        for task in ("det", "kp")
    })

    # A list of the first images, relative to the list file's folder.
    (tmp_path / "images").symlink_to(coco_unlabeled / "images", target_is_directory=True)
    names = sorted(p.name for p in (coco_unlabeled / "images").iterdir() if p.suffix.lower() == ".jpg")
    names = names[:UNLABELED_IMAGES]
    list_file = tmp_path / "list.txt"
    list_file.write_text("".join(f"images/{name}\n" for name in names))

    out = tmp_path / "predictions"
    result = run_distill("label", "--detector", tmp_path / "det.onnx", "--keypoints", tmp_path / "kp.onnx",
                         "--list", list_file, "--out", out, "--scales", "256,320", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    labels_path = tmp_path / "labels.json"
    result = run_distill("select", "--predictions", out, "--out", labels_path)
    assert result.returncode == 0, result.stderr

    # pycocotools loads it as ground truth.
    labels = COCO(str(labels_path))
    assert len(labels.getImgIds()) == UNLABELED_IMAGES
    assert sorted(image["file_name"] for image in labels.dataset["images"]) == [f"images/{n}" for n in names]
    category_ids = set(labels.getCatIds())
    annotations = labels.dataset["annotations"]
    assert annotations, "the teachers produced no labels at all"
    assert all(a["category_id"] in category_ids for a in annotations)
    people = [a for a in annotations if a["category_id"] == 1]
    assert people, "no person labels: the keypoint stage went untested"
    assert all(len(a["keypoints"]) == 17 * 3 for a in people)
    assert len(labels.loadCats(1)[0]["keypoints"]) == 17

    # COCOeval of the generated keypoints against the derived partial ground truth, on the
    # images both files hold (the number means nothing after 10 iterations: it must run).
    truth = COCO(str(coco_unlabeled / "person_keypoints_derived.json"))
    truth_id = {image["file_name"]: image["id"] for image in truth.dataset["images"]}
    results = []
    for a in people:
        name = Path(labels.imgs[a["image_id"]]["file_name"]).name
        if name in truth_id:
            results.append({"image_id": truth_id[name], "category_id": 1, "keypoints": a["keypoints"],
                            "score": a["score"]})
    overlap = sorted({truth_id[n] for n in names if n in truth_id})
    assert overlap and results
    evaluation = COCOeval(truth, truth.loadRes(results), "keypoints")
    evaluation.params.imgIds = overlap
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert len(evaluation.stats) == 10 and np.all(np.isfinite(evaluation.stats))
