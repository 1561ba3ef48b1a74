"""`distill label` end to end with the tiny exported models, and its parts.

Records are compared with `assert_same_records`: same images in the same order, same
sizes, and detection by detection the same category, scores within 1e-4 and box and
keypoint coordinates within 0.05 px (the records round to 0.01 px; ONNX Runtime may sum
a convolution in another order for another batch size, which moves the last bits).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.errors import UserError
from engine.label.batches import make_batches
from engine.label.manifest import RunManifest
from engine.label.run import label
from engine.label.views import Padding, TransformPlan, make_views, parse_scales
from tests.engine.conftest import (assert_same_records, killed_after_two_shards, labeling_command,
                                  read_run, request)
from tests.engine.label.gauntlet import EXIF_NAME, EXIF_STORED_HW, build_gauntlet

from tests.conftest import REPO_ROOT


@pytest.fixture(scope="session")
def reference_run(exported, dump, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    label(request(exported, dump, out, workers=2, batch_size=8))
    return out


# ---- parts ------------------------------------------------------------------------------
def test_parse_scales_forms_and_errors():
    assert parse_scales("400:1200:100") == tuple(range(400, 1201, 100))
    assert parse_scales("96,128") == (96, 128)
    for text, message in (("a,b", "expected a list"), ("400:300:0", "expected a list"),
                          ("0,100", "positive"), ("100,100", "repeated")):
        with pytest.raises(ValueError, match=message):
            parse_scales(text)


def test_views_invert_their_transform():
    """A box drawn into a view comes back to the original box through the view's inverse."""
    image = np.zeros((90, 150, 3), np.uint8)
    box = np.array([[30.0, 20.0, 70.0, 60.0]])  # xyxy in original pixels
    for view in make_views(image, TransformPlan.grid((60, 120), flip=True, max_size=200), Padding(32)):
        h, w = view.size
        fx, fy = w / 150, h / 90
        x1, y1, x2, y2 = box[0] * [fx, fy, fx, fy]
        in_view = [w - x2, y1, w - x1, y2] if view.flipped else [x1, y1, x2, y2]
        np.testing.assert_allclose(view.boxes_to_source(np.array([in_view])), box, atol=1e-3)
        # a box reaching outside the view comes back clipped to the image
        outside = np.array([[-5.0, -5.0, w + 5.0, h + 5.0]])
        np.testing.assert_allclose(view.boxes_to_source(outside), [[0, 0, 150, 90]], atol=1e-3)
        assert view.padded_shape[0] % 32 == 0 and view.padded_shape[1] % 32 == 0
        assert not view.pixels[:, h:, :].any() and not view.pixels[:, :, w:].any()


def test_mirrored_view_holds_mirrored_pixels():
    image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    plain, mirrored = make_views(image, TransformPlan.grid((40,), flip=True, max_size=100), Padding(16))
    np.testing.assert_array_equal(plain.pixels[:, :40, :60], image.transpose(2, 0, 1))
    np.testing.assert_array_equal(mirrored.pixels[:, :40, :60], image[:, ::-1].transpose(2, 0, 1))


def test_batches_group_same_shapes_and_keep_pairs_together():
    tall, wide = np.zeros((80, 40, 3), np.uint8), np.zeros((40, 80, 3), np.uint8)
    plan = TransformPlan.grid((40, 64), flip=True, max_size=200)
    views = [make_views(tall, plan, Padding(16)), make_views(wide, plan, Padding(16)), make_views(tall, plan, Padding(16))]
    batches = make_batches(views, batch_size=4)
    seen = []
    for batch in batches:
        shapes = {views[i][v].padded_shape for i, v in batch.owners}
        assert len(shapes) == 1 and len(batch.owners) <= 4
        assert batch.pixels.shape[0] == len(batch.owners)
        seen += batch.owners
    assert sorted(seen) == [(i, v) for i in range(3) for v in range(4)]
    # the two tall images' views at a scale share a shape: 4 views, one batch
    assert [(0, 0), (0, 1), (2, 0), (2, 1)] in [b.owners for b in batches]


# ---- end to end -------------------------------------------------------------------------
def test_every_image_labeled_once(reference_run, dump):
    records, failures = read_run(reference_run)
    names = [r["file_name"] for r in records]
    expected = sorted(str(p.relative_to(dump).as_posix()) for p in dump.rglob("*.jpg"))
    assert names == expected and not failures
    manifest = RunManifest.load(reference_run)
    assert manifest.complete and [s.images for s in manifest.shards] == [4, 4, 2]
    assert sum(len(r["detections"]) for r in records) > 0
    people = [d for r in records for d in r["detections"] if d["category_id"] == 1]
    assert people and all(len(d["keypoints"]) == 17 * 3 for d in people)
    for record in records:
        for d in record["detections"]:
            x, y, w, h = d["bbox"]
            assert 0 <= x <= x + w <= record["width"] + 0.01 and 0 <= y <= y + h <= record["height"] + 0.01


@pytest.mark.parametrize("workers, batch_size", [(1, 1), (3, 3)])
def test_records_do_not_depend_on_workers_or_batch_size(exported, dump, reference_run, tmp_path,
                                                        workers, batch_size):
    label(request(exported, dump, tmp_path / "run", workers=workers, batch_size=batch_size))
    assert_same_records(read_run(tmp_path / "run")[0], read_run(reference_run)[0])


def test_gauntlet(exported, tmp_path):
    root = tmp_path / "gauntlet"
    expected = build_gauntlet(root)
    summary = label(request(exported, root, tmp_path / "run", workers=2))
    records, failures = read_run(tmp_path / "run")
    good = sorted(name for name, reason in expected.items() if reason is None)
    assert sorted(r["file_name"] for r in records) == good
    assert len({r["file_name"] for r in records}) == len(records)
    reasons = {f["file_name"]: f["reason"] for f in failures}
    bad = {name: reason for name, reason in expected.items() if reason is not None}
    assert set(reasons) == set(bad)
    for name, fragment in bad.items():
        assert fragment in reasons[name], (name, reasons[name])
    assert summary.failed == len(bad) and summary.images == len(good)

    # The EXIF-rotated image: displayed size, boxes in that frame. Its displayed pixels
    # saved losslessly without EXIF must give the very same record.
    exif = next(r for r in records if r["file_name"] == EXIF_NAME)
    assert (exif["height"], exif["width"]) == EXIF_STORED_HW[::-1]
    stored = cv2.imread(str(root / EXIF_NAME), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert stored.shape[:2] == EXIF_STORED_HW
    displayed = cv2.imdecode(np.fromfile(root / EXIF_NAME, np.uint8), cv2.IMREAD_COLOR)
    plain = tmp_path / "plain" / "upright.png"
    plain.parent.mkdir()
    cv2.imwrite(str(plain), displayed)
    label(request(exported, plain.parent, tmp_path / "plain_run"))
    (upright,) = read_run(tmp_path / "plain_run")[0]
    assert_same_records([{**upright, "file_name": EXIF_NAME}], [exif])


def test_resume_after_sigkill(exported, dump, reference_run, tmp_path):
    out = tmp_path / "run"
    done = killed_after_two_shards(labeling_command(exported, dump, out), out)
    assert not done.complete and 2 <= len(done.shards) < 5

    finished = subprocess.run(labeling_command(exported, dump, out, "--resume"), cwd=REPO_ROOT,
                              capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert "already done" in finished.stdout
    records, failures = read_run(out)
    assert len({r["file_name"] for r in records}) == len(records) == 10 and not failures
    assert sorted(p.name for p in (out / "shards").iterdir()) == [f"shard-{i:06d}.jsonl" for i in range(5)]
    assert_same_records(records, read_run(reference_run)[0])


def test_resume_refuses_other_settings_and_existing_run_needs_resume(exported, dump, reference_run):
    with pytest.raises(UserError, match=r"cannot resume the run in .*: the settings differ: labeling\.plan\.scales was \[96, 128\], now \[96\]"):
        label(request(exported, dump, reference_run, plan=TransformPlan.grid((96,), max_size=256), resume=True))
    with pytest.raises(UserError, match=r"keypoints was"):
        label(request(exported, dump, reference_run, keypoints=None, resume=True))
    with pytest.raises(UserError, match="already holds a labeling run"):
        label(request(exported, dump, reference_run))


def test_resume_of_a_complete_run_writes_nothing(exported, dump, reference_run, tmp_path):
    out = tmp_path / "run"
    label(request(exported, dump, out))
    before = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    summary = label(request(exported, dump, out, resume=True))
    assert summary.images == 0 and summary.skipped == 10
    assert {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()} == before


def test_resume_refuses_a_changed_input(exported, dump, tmp_path):
    images = tmp_path / "images"
    for path in sorted(dump.rglob("*.jpg"))[:3]:
        (images / path.parent.name).mkdir(parents=True, exist_ok=True)
        (images / path.parent.name / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "run"
    label(request(exported, images, out))
    (images / "a" / "0_new.jpg").write_bytes(next(images.rglob("*.jpg")).read_bytes())
    with pytest.raises(UserError, match="cannot resume: the input changed"):
        label(request(exported, images, out, resume=True))


def test_select_writes_coco_that_pycocotools_loads(reference_run, tmp_path):
    from pycocotools.coco import COCO

    from engine.cli import main

    labels = tmp_path / "labels.json"
    assert main(["select", "--predictions", str(reference_run), "--out", str(labels)]) == 0
    coco = COCO(str(labels))
    records, _ = read_run(reference_run)
    assert [coco.imgs[i]["file_name"] for i in sorted(coco.imgs)] == [r["file_name"] for r in records]
    assert len(coco.anns) == sum(len(r["detections"]) for r in records)
    people = coco.loadAnns(coco.getAnnIds(catIds=[1]))
    assert people and all(len(a["keypoints"]) == 51 and a["num_keypoints"] == 17 for a in people)
    assert coco.loadCats(1)[0]["keypoints"][0] == "nose"
    assert all(a["iscrowd"] == 0 and a["area"] > 0 or a["bbox"][2] * a["bbox"][3] == 0 for a in coco.anns.values())

    strict = tmp_path / "strict.json"
    top = max(a["score"] for a in coco.anns.values())
    assert main(["select", "--predictions", str(reference_run), "--out", str(strict), "--threshold", str(top)]) == 0
    data = json.loads(strict.read_text())
    assert len(data["images"]) == len(records) and 1 <= len(data["annotations"]) < len(coco.anns)
    assert data["info"]["thresholds"]["score"] == top


def test_record_rounding_matches_python_round():
    """make_record rounds in NumPy; the record must equal one built with round() per value."""
    from engine.label.keypoints import Keypoints
    from engine.label.merge import Detections
    from engine.label.records import make_record
    from engine.modelcard import ModelCard

    card = ModelCard(task="detect", categories=[{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
                     input_name="images", outputs=["boxes", "scores", "labels"], strides=[8], topk=100)
    rng = np.random.default_rng(1)
    for case in range(200):
        n = int(rng.integers(0, 60))
        boxes = rng.uniform(0, 1000, (n, 4)).astype(np.float32)
        boxes[:, 2:] += boxes[:, :2]
        labels = rng.integers(0, 2, n)
        detections = Detections(boxes, rng.uniform(0, 1, n).astype(np.float32), labels)
        rows = np.flatnonzero(labels == 0)
        keypoints = Keypoints(rows, rng.uniform(0, 1000, (len(rows), 17, 2)).astype(np.float32),
                              rng.uniform(0, 1, (len(rows), 17)).astype(np.float32)) if case % 3 else None
        expected = []
        for row, (box, score, label_index) in enumerate(zip(boxes.tolist(), detections.scores.tolist(), labels.tolist())):
            x1, y1, x2, y2 = box
            item = {"bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                    "score": round(score, 5), "category_id": [1, 3][label_index]}
            if keypoints is not None and row in rows:
                k = rows.tolist().index(row)
                item["keypoints"] = [v for (x, y), s in zip(keypoints.points[k].tolist(), keypoints.scores[k].tolist())
                                     for v in (round(x, 2), round(y, 2), round(s, 5))]
            expected.append(item)
        record = make_record("a.jpg", 5, 6, detections, keypoints, card)
        assert json.dumps(record) == json.dumps({"file_name": "a.jpg", "width": 6, "height": 5, "detections": expected})
