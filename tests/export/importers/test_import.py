"""`distill import`: each family's graph (built in tests/export/importers/graphs.py with
exactly that family's signature) wrapped, compared with its own outputs decoded by hand,
and run through `distill label`; every wrong description refused in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from engine.cli import main
from engine.coco.schema import PERSON_CATEGORY_ID
from engine.ensemble import ensemble_detections
from engine.modelcard import ModelCard, card_from_metadata
from engine.scaling import round_up, scaled_size
from tests.conftest import REPO_ROOT, assert_cli_error
from tests.engine.conftest import read_run
from tests.export.importers import graphs

MEAN, STD = ",".join(map(str, graphs.MEAN)), ",".join(map(str, graphs.STD))
# family: (graph builder, `distill import` arguments, keypoints per candidate)
FAMILIES = {
    "ultralytics-detect": (lambda: graphs.ultralytics_graph(pose=False), ["ultralytics"], 0),
    "ultralytics-pose": (lambda: graphs.ultralytics_graph(pose=True), ["ultralytics"], graphs.JOINTS),
    "ultralytics-end2end": (lambda: graphs.ultralytics_graph(pose=True, end2end=True), ["ultralytics"],
                            graphs.JOINTS),
    "mmdeploy": (graphs.mmdeploy_graph, ["onnx", "--dets", "dets", "--labels", "labels", "--mean", MEAN,
                                         "--std", STD, "--post-nms"], 0),
    "tf-od-api": (graphs.tf_od_graph, ["onnx", "--layout", "NHWC", "--resizes", "--boxes", "detection_boxes:0",
                                       "--box-format", "yxyx", "--normalized", "--scores", "detection_scores:0",
                                       "--labels", "detection_classes:0", "--num-detections", "num_detections:0",
                                       "--label-map", "coco-ids", "--post-nms"], 0),
}


def card_of(path: Path) -> ModelCard:
    return card_from_metadata({p.key: p.value for p in onnx.load(str(path)).metadata_props}, str(path))


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def imported(tmp_path: Path, family: str, *extra: str) -> Path:
    build, args, _ = FAMILIES[family]
    source = save(build(), tmp_path / f"{family}.onnx")
    out = tmp_path / f"{family}-teacher.onnx"
    assert main(["import", *args, "--onnx", str(source), "--out", str(out), *extra]) == 0
    return out


def raw_candidates(family: str, model: onnx.ModelProto, view: np.ndarray):
    """The raw graph on `view` `(1, 3, H, W)` uint8 RGB, fed as the family's own
    preprocessing would, decoded by hand (graphs.decode_*)."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    pixels = view.astype(np.float32)
    if family.startswith("ultralytics"):
        out = session.run(None, {"images": pixels / 255})[0][0]
        return graphs.decode_ultralytics(out, pose=family != "ultralytics-detect", end2end=family.endswith("end2end"))
    if family == "mmdeploy":
        mean, std = (np.asarray(v, np.float32).reshape(1, 3, 1, 1) for v in (graphs.MEAN, graphs.STD))
        dets, labels = session.run(None, {"input": (pixels - mean) / std})
        return graphs.decode_mmdeploy(dets[0], labels[0])
    boxes, scores, classes, count = session.run(None, {"image_tensor:0": view.transpose(0, 2, 3, 1).copy()})
    return graphs.decode_tf(boxes[0], scores[0], classes[0], count[0], *view.shape[2:])


def smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    """`(H, W, 3)` uint8 RGB: coarse random colours smoothly upsampled, so that the toy
    graphs' pooled cells (and so their boxes, scores and classes) differ."""
    coarse = np.random.default_rng(seed).integers(0, 256, (height // 24 + 2, width // 24 + 2, 3), dtype=np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)


@pytest.mark.parametrize("family", FAMILIES)
def test_wrapped_graph_gives_its_own_outputs_decoded_by_hand(tmp_path, family):
    teacher = imported(tmp_path, family, "--topk", "7")
    view = smooth_image(96, 160, 1).transpose(2, 0, 1)[None].copy()
    session = ort.InferenceSession(str(teacher), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, {"images": view})))
    boxes, scores, labels, keypoints = graphs.top(raw_candidates(family, FAMILIES[family][0](), view), 7)
    kept = got["scores"][0] > 0
    assert kept.sum() == len(scores) >= 2
    np.testing.assert_allclose(got["scores"][0][kept], scores, rtol=1e-5)
    np.testing.assert_allclose(got["boxes"][0][kept], boxes, atol=1e-3)
    np.testing.assert_array_equal(got["labels"][0][kept], labels)
    assert got["labels"].dtype == np.int32 and got["boxes"].dtype == np.float32
    assert ("keypoints" in got) == (keypoints is not None)
    if keypoints is not None:
        np.testing.assert_allclose(got["keypoints"][0][kept], keypoints, atol=1e-3)


def _view(image: np.ndarray, scale: int, max_size: int, card: ModelCard) -> tuple[np.ndarray, tuple, tuple]:
    """The view a card asks for, made here by hand: (pixels (1, 3, Hp, Wp), (h, w), (top, left))."""
    h, w = scaled_size(*image.shape[:2], scale, max_size)
    resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    hp, wp = round_up(h, card.pad_multiple), round_up(w, card.pad_multiple)
    top, left = ((hp - h) // 2, (wp - w) // 2) if card.pad_position == "center" else (0, 0)
    canvas = np.full((hp, wp, 3), card.pad_value, np.uint8)
    canvas[top:top + h, left:left + w] = resized
    return canvas.transpose(2, 0, 1)[None].copy(), (h, w), (top, left)


def expected_record(family: str, image: np.ndarray, card: ModelCard, scale: int, max_size: int) -> list[dict]:
    """One pass at `scale`, decoded by hand, mapped back, plain NMS at 0.5 (boxes clipped to
    the image before it, or after it where the card says so): the detections `distill
    label` must write."""
    view, (h, w), (top, left) = _view(image, scale, max_size, card)
    boxes, scores, labels, keypoints = graphs.top(raw_candidates(family, FAMILIES[family][0](), view), 1000)
    height, width = image.shape[:2]
    fx, fy = width / w, height / h
    boxes = (boxes - [left, top, left, top]) * [fx, fy, fx, fy]
    edges = [width, height, width, height]
    if not card.clip_after_merge:
        boxes = np.clip(boxes, 0, edges)
    floor = scores > 0.05
    boxes, scores = boxes[floor].astype(np.float32), scores[floor].astype(np.float32)
    kept_boxes, kept_scores, kept_labels = ensemble_detections(boxes, scores, labels[floor], nms_threshold=0.5,
                                                               vote_threshold=None)
    items = []
    for box, score, label in zip(kept_boxes, kept_scores, kept_labels):
        row = np.flatnonzero((boxes == box).all(1) & (scores == score))[0]
        box = np.clip(box, 0, edges)
        item = {"bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": float(score),
                "category_id": card.categories[label]["id"]}
        if keypoints is not None and item["category_id"] == PERSON_CATEGORY_ID:  # only people have a schema
            points = keypoints[floor][row].copy()
            points[:, 0] = np.clip((points[:, 0] - left) * fx, 0, width)
            points[:, 1] = np.clip((points[:, 1] - top) * fy, 0, height)
            item["keypoints"] = points.reshape(-1).tolist()
        items.append(item)
    return items


@pytest.mark.parametrize("family", FAMILIES)
def test_distill_label_runs_the_imported_teacher(tmp_path, family):
    teacher = imported(tmp_path, family)
    card = card_of(teacher)
    folder = tmp_path / "images"
    folder.mkdir()
    images = {"wide.png": smooth_image(150, 230, 2), "tall.png": smooth_image(210, 140, 3)}
    for name, image in images.items():
        cv2.imwrite(str(folder / name), image[:, :, ::-1])
    out = tmp_path / "run"
    assert main(["label", "--detector", str(teacher), "--images", str(folder), "--out", str(out), "--scales", "160",
                 "--max-size", "400", "--no-flip", "--vote-threshold", "-1", "--no-progress", "--workers", "1"]) == 0
    records, failures = read_run(out)
    assert not failures and sum(len(r["detections"]) for r in records) > 0
    for record in records:
        want = expected_record(family, images[record["file_name"]], card, 160, 400)
        got = record["detections"]
        assert len(got) == len(want), record["file_name"]
        for g, e in zip(got, want):
            assert g["category_id"] == e["category_id"]
            assert g["score"] == pytest.approx(e["score"], abs=2e-5)
            np.testing.assert_allclose(g["bbox"], e["bbox"], atol=0.02)
            assert ("keypoints" in g) == ("keypoints" in e)
            if "keypoints" in e:
                np.testing.assert_allclose(g["keypoints"], e["keypoints"], atol=0.02)


def test_top_down_heatmap_model_is_a_keypoint_teacher(tmp_path):
    source = save(graphs.heatmap_graph(), tmp_path / "hrnet.onnx")
    teacher = tmp_path / "keypoints.onnx"
    assert main(["import", "onnx", "--task", "keypoints", "--onnx", str(source), "--out", str(teacher),
                 "--channels", "BGR", "--mean", MEAN, "--std", STD, "--heatmaps", "output"]) == 0
    crops = np.stack([smooth_image(*graphs.HEATMAP_CROP, seed) for seed in range(3)]).transpose(0, 3, 1, 2)
    wrapped = ort.InferenceSession(str(teacher), providers=["CPUExecutionProvider"]).run(None, {"crops": crops})[0]
    raw = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    mean, std = (np.asarray(v, np.float32).reshape(1, 3, 1, 1) for v in (graphs.MEAN, graphs.STD))
    want = raw.run(None, {"input": (crops[:, ::-1].astype(np.float32) - mean) / std})[0]
    np.testing.assert_allclose(wrapped, want, atol=1e-4)
    # With an imported detector whose labels are COCO's, the two label people.
    detector = imported(tmp_path, "mmdeploy")
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), smooth_image(150, 230, 2))
    out = tmp_path / "run"
    assert main(["label", "--detector", str(detector), "--keypoints", str(teacher), "--images", str(folder),
                 "--out", str(out), "--scales", "160", "--no-flip", "--no-progress"]) == 0
    (record,), _ = read_run(out)
    people = [d for d in record["detections"] if d["category_id"] == 1]
    assert people and all(len(d["keypoints"]) == 3 * graphs.JOINTS for d in people)


def test_fixed_size_export_takes_fitting_plans_one_image_a_call(tmp_path, capsys):
    source = save(graphs.ultralytics_graph(pose=True, fixed=(128, 160)), tmp_path / "static.onnx")
    teacher = tmp_path / "teacher.onnx"
    assert main(["import", "ultralytics", "--onnx", str(source), "--out", str(teacher)]) == 0
    card = card_of(teacher)
    assert (card.fixed_input, card.fixed_batch) == ([128, 160], 1)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, size in enumerate([(150, 230), (210, 140)]):
        cv2.imwrite(str(folder / f"{i}.png"), smooth_image(*size, i))
    capsys.readouterr()
    code = main(["label", "--detector", str(teacher), "--images", str(folder), "--out", str(tmp_path / "no"),
                 "--scales", "100", "--max-size", "400"])
    assert_cli_error(capsys, code, "label", "takes only 128x160 inputs", "400 px", "128 px or less")
    assert main(["label", "--detector", str(teacher), "--images", str(folder), "--out", str(tmp_path / "run"),
                 "--scales", "100,128", "--max-size", "128", "--batch-size", "4", "--no-progress"]) == 0
    records, failures = read_run(tmp_path / "run")
    assert len(records) == 2 and not failures


# ---- every wrong description is one line -------------------------------------------------
MMDEPLOY = ["--dets", "dets", "--labels", "labels"]
TF = ["--layout", "NHWC", "--boxes", "detection_boxes:0", "--scores", "detection_scores:0",
      "--labels", "detection_classes:0", "--label-map", "coco-ids"]


@pytest.mark.parametrize("graph, args, fragments", [
    ("mmdeploy", ["onnx", "--dets", "boxes", "--labels", "labels"], ["has no output 'boxes'", "['dets', 'labels']"]),
    ("mmdeploy", ["onnx", "--dets", "labels", "--labels", "labels"], ["'labels'", "expected rank 3"]),
    ("mmdeploy", ["onnx", "--boxes", "dets", "--scores", "labels", "--labels", "labels"],
     ["output 'dets'", "(B, N, 4)"]),
    ("mmdeploy", ["onnx", "--layout", "NHWC", *MMDEPLOY], ["NHWC channel axis", "it looks NCHW"]),
    ("tf", ["onnx", *TF[2:]], ["NCHW channel axis", "it looks NHWC"]),
    ("tf", ["onnx", *TF, "--mean", MEAN], ["uint8", "float inputs only"]),
    ("tf", ["onnx", *TF[:-2], "--label-map", "coco81"], ["--label-map", "invalid choice"]),
    ("tf", ["onnx", *TF, "--names", "missing.txt"], ["not allowed with argument --label-map"]),
    ("tf", ["onnx", *TF, "--input", "images"], ["no input 'images'", "image_tensor:0"]),
    ("tf", ["onnx", "--layout", "NHWC", "--boxes", "detection_boxes:0"], ["needs a scores output"]),
    ("tf", ["onnx", "--layout", "NHWC", "--boxes", "detection_boxes:0", "--scores", "detection_scores:0"],
     ["one score per detection", "labels output"]),
    ("tf", ["onnx", *TF, "--num-detections", "detection_scores:0"], ["detection count (B,)", "rank 1"]),
    ("mmdeploy", ["onnx", "--dets", "dets", "--scores", "dets", "--labels", "labels"], ["carries its scores"]),
    ("mmdeploy", ["onnx", *MMDEPLOY, "--heatmaps", "dets"], ["--heatmaps do not apply with --task detect"]),
    ("mmdeploy", ["onnx", *MMDEPLOY, "--std", "1,0,1"], ["input description", "must be positive"]),
    ("mmdeploy", ["ultralytics"], ["not an Ultralytics export", "distill import onnx"]),
    ("ultralytics", ["onnx", "--boxes", "output0", "--scores", "output0"], ["'output0'", "says (B, N, 4)"]),
    ("heatmaps", ["onnx", "--task", "keypoints", "--heatmaps", "nope"], ["no output 'nope'"]),
    ("heatmaps", ["onnx", "--task", "keypoints", "--heatmaps", "output", "--boxes", "x"], ["--boxes do not apply"]),
    ("batch4", ["ultralytics"], ["fixed batch of 4", "dynamic batch"]),
])
def test_wrong_descriptions_are_one_line_errors(tmp_path, capsys, graph, args, fragments):
    model = {"mmdeploy": graphs.mmdeploy_graph, "tf": graphs.tf_od_graph, "heatmaps": graphs.heatmap_graph,
             "ultralytics": lambda: graphs.ultralytics_graph(pose=False),
             "batch4": lambda: _with_batch(graphs.ultralytics_graph(pose=False), 4)}[graph]()
    source = save(model, tmp_path / "model.onnx")
    capsys.readouterr()
    command = "import"
    try:
        code = main(["import", *args[:1], "--onnx", str(source), "--out", str(tmp_path / "t.onnx"), *args[1:]])
    except SystemExit as exit_:  # argparse's own errors, under the subcommand's name
        code, command = exit_.code, f"import {args[0]}"
    assert_cli_error(capsys, code, command, *fragments)
    assert not (tmp_path / "t.onnx").exists()


def _with_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    return model


def test_unknown_opset_and_missing_file_are_one_line(tmp_path, capsys):
    old = graphs.mmdeploy_graph()
    old.opset_import[0].version = 10
    source = save(old, tmp_path / "old.onnx")
    code = main(["import", "onnx", "--onnx", str(source), "--out", str(tmp_path / "t.onnx"), *MMDEPLOY])
    assert_cli_error(capsys, code, "import", "opset 10", "older than 11")
    code = main(["import", "ultralytics", "--onnx", str(tmp_path / "none.onnx"), "--out", str(tmp_path / "t.onnx")])
    assert_cli_error(capsys, code, "import", "not found")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    code = main(["import", "ultralytics", "--onnx", str(tmp_path / "junk.onnx"), "--out", str(tmp_path / "t.onnx")])
    assert_cli_error(capsys, code, "import", "not an ONNX model")


def test_the_labeling_box_imports_no_onnx():
    """engine/ and the `distill` parser (which registers `distill import`) load without onnx:
    only running an import needs it (the `export` extra)."""
    code = ("import importlib, pkgutil, sys, engine, engine.cli\n"
            "for info in pkgutil.walk_packages(engine.__path__, 'engine.'):\n"
            "    importlib.import_module(info.name)\n"
            "engine.cli.build_parser()\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('onnx', 'ultralytics')]\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_one_stage_pose_records_are_voted_selected_and_converted(tmp_path):
    """A one-stage pose teacher's run, mirrored passes voted (the default merge), goes
    through `distill select` (its manifest's person category carries the keypoint schema,
    so keypoints are selected), `distill convert --to yolo`, `distill gallery` and
    `--resume` like a top-down run."""
    import json

    # The random test graph scores its third class highest: name that class person, so
    # that people are found (only the person category has a keypoint schema).
    model = graphs.ultralytics_graph(pose=True)
    for prop in model.metadata_props:
        if prop.key == "names":
            prop.value = repr({0: "car", 1: "bicycle", 2: "person", 3: "motorcycle"})
    source = save(model, tmp_path / "pose.onnx")
    teacher = tmp_path / "teacher.onnx"
    assert main(["import", "ultralytics", "--onnx", str(source), "--out", str(teacher)]) == 0
    folder = tmp_path / "images"
    folder.mkdir()
    for name, (h, w, seed) in {"wide.png": (150, 230, 2), "tall.png": (210, 140, 3)}.items():
        cv2.imwrite(str(folder / name), smooth_image(h, w, seed)[:, :, ::-1])
    out = tmp_path / "run"
    assert main(["label", "--detector", str(teacher), "--images", str(folder), "--out", str(out), "--scales", "128,160",
                 "--max-size", "400", "--no-progress", "--workers", "1"]) == 0
    records, _ = read_run(out)
    people = [d for r in records for d in r["detections"] if "keypoints" in d]
    assert people and all(len(d["keypoints"]) == 3 * graphs.JOINTS for d in people)
    assert all(0.0 <= c <= 1.0 for d in people for c in d["keypoints"][2::3])
    manifest = json.loads((out / "manifest.json").read_text())
    person = next(c for c in manifest["categories"] if c.get("keypoints"))
    assert len(person["keypoints"]) == graphs.JOINTS and person["skeleton"]
    labels = tmp_path / "labels.json"
    assert main(["select", "--predictions", str(out), "--out", str(labels), "--threshold", "0.0",
                 "--keypoint-threshold", "0.0"]) == 0
    annotations = json.loads(labels.read_text())["annotations"]
    assert any(a.get("num_keypoints", 0) > 0 for a in annotations)
    assert main(["convert", "--labels", str(labels), "--to", "yolo", "--out", str(tmp_path / "yolo"),
                 "--images", str(folder)]) == 0
    rows = [line.split() for f in (tmp_path / "yolo").rglob("*.txt") for line in f.read_text().splitlines()]
    assert any(len(row) == 5 + 3 * graphs.JOINTS for row in rows)  # pose rows: class, box, 17 x (x, y, v)
    gallery = tmp_path / "gallery"
    assert main(["gallery", "--labels", str(labels), "--images", str(folder), "--out", str(gallery),
                 "--predictions", str(out), "--workers", "1"]) == 0
    assert (gallery / "index.html").is_file()
    # a finished run resumed writes nothing again
    before = {p.name: p.read_bytes() for p in (out / "shards").iterdir()}
    assert main(["label", "--detector", str(teacher), "--images", str(folder), "--out", str(out), "--scales", "128,160",
                 "--max-size", "400", "--no-progress", "--workers", "1", "--resume"]) == 0
    assert {p.name: p.read_bytes() for p in (out / "shards").iterdir()} == before
