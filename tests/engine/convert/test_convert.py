"""`distill convert`: COCO labels -> YOLO txt (and back with read_yolo) and Label Studio
tasks, on tiny hand-made COCO files."""

from __future__ import annotations

import json
import os
import re
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from engine.cli import main
from engine.coco.schema import KEYPOINT_NAMES, SKELETON, flip_permutation
from engine.convert import read_yolo
from engine.convert.labelstudio import LOCAL_FILES_URL
from engine.convert.yolo import flip_index
from engine.errors import UserError
from engine.label.decode import DEFAULT_MAX_PIXELS
from engine.label.labeler import LabelSettings
from engine.label.manifest import ModelEntry, RunInput, RunSettings

K = len(KEYPOINT_NAMES)
CATEGORIES = [{"id": 1, "name": "person", "keypoints": list(KEYPOINT_NAMES), "skeleton": [list(s) for s in SKELETON]},
              {"id": 38, "name": "kite"}, {"id": 72, "name": "tv"}]
# Three images: people and a kite; a kite in a sub-folder (name with a space); no labels.
IMAGES = [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
          {"id": 7, "file_name": "sub/dir/b c.png", "width": 64, "height": 48},
          {"id": 3, "file_name": "empty.jpg", "width": 50, "height": 50}]


def person_keypoints(x0: float, y0: float) -> list[float]:
    """17 joints: most visible (2), joint 3 hidden but labeled (1), joint 4 not labeled (0, 0, 0)."""
    values = []
    for j in range(K):
        v = 0 if j == 4 else 1 if j == 3 else 2
        values += [x0 + 1.37 * j, y0 + 2.11 * j, v] if v else [0, 0, 0]
    return values


def labels(scores: bool = True, keypoints: bool = True) -> dict:
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [20.25, 10.5, 40.3, 70.75], "score": 0.91,
         "keypoints": person_keypoints(25.5, 12.25), "keypoint_scores": [0.5 + j / 100 for j in range(K)]},
        {"id": 2, "image_id": 1, "category_id": 38, "bbox": [120.0, 5.0, 30.5, 20.25], "score": 0.4},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [90.0, 30.0, 25.0, 60.0], "score": 0.65,
         "keypoints": person_keypoints(95.0, 31.0), "keypoint_scores": [0.3] * K},
        {"id": 4, "image_id": 7, "category_id": 38, "bbox": [3.3, 4.4, 50.1, 40.2], "score": 0.77},
    ]
    for a in annotations:
        a.update(area=a["bbox"][2] * a["bbox"][3], iscrowd=0)
        if not scores:
            a.pop("score")
            a.pop("keypoint_scores", None)
        if not keypoints:
            a.pop("keypoints", None)
            a.pop("keypoint_scores", None)
    return {"info": {"description": "tiny labels"}, "images": [dict(i) for i in IMAGES],
            "annotations": annotations, "categories": [dict(c) for c in CATEGORIES]}


def convert(tmp_path: Path, data: dict, *args: str) -> tuple[int, Path]:
    """`distill convert --labels tmp_path/labels.json ARGS` on `data`: (exit code, labels path)."""
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(data))
    return main(["convert", "--labels", str(path), *args]), path


def image_folder(tmp_path: Path, name: str = "pictures") -> Path:
    """A folder holding a file for every image of IMAGES, at its file_name."""
    folder = tmp_path / name
    for image in IMAGES:
        (folder / image["file_name"]).parent.mkdir(parents=True, exist_ok=True)
        (folder / image["file_name"]).write_bytes(b"jpeg")
    return folder


def parse_data_yaml(text: str) -> dict:
    """PyYAML where installed, else the flat subset data.yaml uses."""
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        return yaml.safe_load(text)
    data: dict = {}
    for line in text.splitlines():
        line = line.split("  #")[0].rstrip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.strip().partition(": ")
        if line.startswith("  "):
            data["names"][int(key)] = json.loads(value)
        elif line.endswith("names:"):
            data["names"] = {}
        else:
            data[key] = json.loads(value) if value.startswith(("[", '"')) else value
    return data


# ---------------------------------------------------------------- YOLO


def test_yolo_round_trip_gives_the_same_boxes_and_keypoints(tmp_path, capsys):
    data = labels()
    out = tmp_path / "yolo"
    code, _ = convert(tmp_path, data, "--to", "yolo", "--out", str(out))
    assert code == 0
    assert "YOLO pose (17 keypoints of person), 3 classes, 3 label files (1 empty), 4 labels" in capsys.readouterr().out
    back = read_yolo(out / "labels", IMAGES, kpt_shape=(K, 3))
    assert sorted(back) == sorted(i["file_name"] for i in IMAGES)
    sizes = {i["id"]: (i["width"], i["height"]) for i in IMAGES}
    names = {i["id"]: i["file_name"] for i in IMAGES}
    classes = {1: 0, 38: 1, 72: 2}  # category order
    for image_id, file_name in names.items():
        expected = [a for a in data["annotations"] if a["image_id"] == image_id]
        rows = back[file_name]
        assert len(rows) == len(expected)
        width, height = sizes[image_id]
        for row, a in zip(rows, expected):
            assert row.class_index == classes[a["category_id"]] and row.score is None
            # 6 decimals of normalized coordinates: cx - w/2 is off by at most 0.75e-6 of the side.
            for got, want, side in zip(row.bbox, a["bbox"], (width, height, width, height)):
                assert got == pytest.approx(want, abs=1e-6 * side)
            points = a.get("keypoints") or [0] * (3 * K)  # other categories: (0, 0, 0) joints
            assert len(row.keypoints) == 3 * K
            assert row.keypoints[2::3] == tuple(float(v) for v in points[2::3])
            for j in range(K):
                assert row.keypoints[3 * j] == pytest.approx(points[3 * j], abs=0.5e-6 * width)
                assert row.keypoints[3 * j + 1] == pytest.approx(points[3 * j + 1], abs=0.5e-6 * height)


def test_yolo_files_empty_image_subfolders_and_data_yaml(tmp_path):
    out = tmp_path / "yolo"
    assert convert(tmp_path, labels(), "--to", "yolo", "--out", str(out))[0] == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "data.yaml", "labels/a.txt", "labels/empty.txt", "labels/sub/dir/b c.txt"]
    assert (out / "labels" / "empty.txt").read_bytes() == b""
    rows = (out / "labels" / "a.txt").read_text().splitlines()
    assert len(rows) == 3 and all(len(row.split()) == 5 + 3 * K for row in rows)
    assert rows[1].split()[0] == "1" and set(rows[1].split()[5:]) == {"0"}  # kite: joints unlabeled
    first = rows[0].split()
    assert first[1:5] == [f"{(20.25 + 40.3 / 2) / 200:.6f}", f"{(10.5 + 70.75 / 2) / 100:.6f}",
                          f"{40.3 / 200:.6f}", f"{70.75 / 100:.6f}"]
    assert first[5:8] == [f"{25.5 / 200:.6f}", f"{12.25 / 100:.6f}", "2"] and first[5 + 3 * 4:8 + 3 * 4] == [
        "0", "0", "0"]
    data = parse_data_yaml((out / "data.yaml").read_text())
    assert data["path"] == str(out.resolve()) and data["train"] == "images" and data["val"] == "images"
    assert data["names"] == {0: "person", 1: "kite", 2: "tv"}
    assert data["kpt_shape"] == [K, 3] and data["flip_idx"] == flip_permutation()


def test_yolo_confidence_column_is_the_score_last(tmp_path):
    out = tmp_path / "yolo"
    assert convert(tmp_path, labels(), "--to", "yolo", "--out", str(out), "--confidence")[0] == 0
    rows = [row.split() for row in (out / "labels" / "a.txt").read_text().splitlines()]
    assert [len(r) for r in rows] == [6 + 3 * K] * 3 and [r[-1] for r in rows] == ["0.910000", "0.400000", "0.650000"]
    back = read_yolo(out / "labels", IMAGES, kpt_shape=(K, 3))
    assert [r.score for r in back["a.jpg"]] == [0.91, 0.4, 0.65] and back["sub/dir/b c.png"][0].score == 0.77


def test_yolo_without_keypoints_is_a_detection_dataset(tmp_path):
    out = tmp_path / "yolo"
    assert convert(tmp_path, labels(keypoints=False), "--to", "yolo", "--out", str(out), "--confidence")[0] == 0
    rows = [row.split() for row in (out / "labels" / "a.txt").read_text().splitlines()]
    assert [len(r) for r in rows] == [6, 6, 6]
    data = parse_data_yaml((out / "data.yaml").read_text())
    assert "kpt_shape" not in data and "flip_idx" not in data
    back = read_yolo(out / "labels", IMAGES)
    assert back["a.jpg"][1].keypoints is None and back["a.jpg"][1].bbox == pytest.approx((120.0, 5.0, 30.5, 20.25),
                                                                                          abs=2e-4)


def test_joints_of_a_category_without_labeled_keypoints_are_not_taken_for_people(tmp_path):
    data = labels()
    data["categories"][1]["keypoints"] = ["tip", "tail"]  # kites declare joints, none labeled
    data["annotations"][1].update(keypoints=[0, 0, 0, 0, 0, 0], keypoint_scores=[0.1, 0.1])
    assert convert(tmp_path, data, "--to", "yolo", "--out", str(tmp_path / "yolo"))[0] == 0
    kite = (tmp_path / "yolo" / "labels" / "a.txt").read_text().splitlines()[1].split()
    assert kite[0] == "1" and kite[5:] == ["0"] * (3 * K)
    assert convert(tmp_path, data, "--to", "labelstudio", "--out", str(tmp_path / "ls"), "--image-root", "/i/")[0] == 0
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    assert [r["id"] for r in tasks[0]["predictions"][0]["result"] if r["type"] == "rectanglelabels"] == [
        "b0", "b1", "b2"]
    assert not any(r.get("parentID") == "b1" for r in tasks[0]["predictions"][0]["result"])


def test_yolo_images_are_linked_one_file_at_a_time(tmp_path):
    images = image_folder(tmp_path)
    out = tmp_path / "yolo"
    assert convert(tmp_path, labels(), "--to", "yolo", "--out", str(out), "--images", str(images))[0] == 0
    for image in IMAGES:
        link = out / "images" / image["file_name"]
        assert link.is_symlink() and Path(os.readlink(link)) == (images / image["file_name"]).resolve()
    assert not (out / "images").is_symlink()  # a real folder: Ultralytics resolves the folder, not the files


def test_yolo_missing_image_fails_and_leaves_nothing(tmp_path, capsys):
    images = tmp_path / "pictures"
    images.mkdir()
    (images / "a.jpg").write_bytes(b"jpeg")
    out = tmp_path / "yolo"
    code, _ = convert(tmp_path, labels(), "--to", "yolo", "--out", str(out), "--images", str(images))
    assert code == 2 and re.search(r"--images: .*b c\.png not found", capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.json", "pictures"]  # no DIR, no staging folder


def test_boxes_are_clipped_keypoints_outside_unlabeled_crowds_left_out(tmp_path, capsys):
    data = labels()
    data["annotations"][0]["bbox"] = [-10.0, 10.5, 40.0, 95.0]  # left and bottom outside the 200x100 image
    data["annotations"][0]["keypoints"][0:3] = [201.0, 50.0, 2]  # right of the image
    data["annotations"].append({"id": 9, "image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "iscrowd": 1,
                                "area": 900, "keypoints": [0] * (3 * K)})
    data["annotations"].append({"id": 10, "image_id": 3, "category_id": 72, "bbox": [60, 0, 5, 5], "iscrowd": 0,
                                "score": 0.5, "area": 25})  # wholly outside its 50x50 image
    out = tmp_path / "yolo"
    assert convert(tmp_path, data, "--to", "yolo", "--out", str(out))[0] == 0
    assert ("note: 1 crowd regions left out; 1 boxes clipped to their image; 1 boxes outside their image left out; "
            "1 keypoints outside their image unlabeled") in capsys.readouterr().out
    back = read_yolo(out / "labels", IMAGES, kpt_shape=(K, 3))
    assert len(back["a.jpg"]) == 3 and back["empty.jpg"] == []
    assert back["a.jpg"][0].bbox == pytest.approx((0.0, 10.5, 30.0, 89.5), abs=2e-4)
    assert back["a.jpg"][0].keypoints[:3] == (0.0, 0.0, 0.0)


def test_read_yolo_two_dimensional_keypoints_and_bad_rows(tmp_path):
    labels_dir = tmp_path / "labels"
    labels_dir.mkdir()
    (labels_dir / "a.txt").write_text("0 0.5 0.5 0.2 0.4 0.25 0.5 -1 -1\n\n")
    back = read_yolo(labels_dir, [{"file_name": "a.jpg", "width": 200, "height": 100},
                                  {"file_name": "missing.jpg", "width": 10, "height": 10}], kpt_shape=(2, 2))
    assert back["missing.jpg"] == []  # no label file: no labels, as in Ultralytics
    assert back["a.jpg"][0].bbox == pytest.approx((80.0, 30.0, 40.0, 40.0))
    assert back["a.jpg"][0].keypoints == pytest.approx((50.0, 50.0, 2.0, -200.0, -100.0, 0.0))
    (labels_dir / "a.txt").write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(UserError, match=r"a\.txt:1: expected 5 columns \(6 with a score\), got 4"):
        read_yolo(labels_dir, [{"file_name": "a.jpg", "width": 200, "height": 100}])
    (labels_dir / "a.txt").write_text("0 0.5 0.5 0.2 0.1\nx 0.5 0.5 0.2 0.1\n")
    with pytest.raises(UserError, match=r"a\.txt:2: not a number"):
        read_yolo(labels_dir, [{"file_name": "a.jpg", "width": 200, "height": 100}])
    with pytest.raises(UserError, match=r"kpt_shape must be"):
        read_yolo(labels_dir, [], kpt_shape=(17, 4))


def test_flip_index_pairs_left_and_right_words():
    assert flip_index(list(KEYPOINT_NAMES)) == flip_permutation()
    assert flip_index(["head", "Left Hand", "Right Hand", "leftover", "tail_right"]) == [0, 2, 1, 3, 4]


# ---------------------------------------------------------------- Label Studio


def validate_tasks(tasks: list, config: str, coco: dict, image_root: str) -> int:
    """Check `tasks` against Label Studio's documented task and region formats and
    against the COCO labels they come from; returns the number of keypoint results."""
    root = ET.fromstring(config)
    image_tag = root.find("Image")
    boxes_tag, points_tag = root.find("RectangleLabels"), root.find("KeyPointLabels")
    assert image_tag.get("value") == "$" + image_tag.get("name")
    assert boxes_tag.get("toName") == image_tag.get("name") == points_tag.get("toName")
    category_names = [label.get("value") for label in boxes_tag.findall("Label")]
    assert category_names == [c["name"] for c in coco["categories"]]
    joints = [(label.get("value"), label.get("model_index")) for label in points_tag.findall("Label")]
    assert joints == [(name, str(j)) for j, name in enumerate(KEYPOINT_NAMES)]
    sizes = {i["id"]: i for i in coco["images"]}
    by_image = {i["id"]: [a for a in coco["annotations"] if a["image_id"] == i["id"]] for i in coco["images"]}
    assert isinstance(tasks, list) and len(tasks) == len(coco["images"])
    points = 0
    for task, image in zip(tasks, coco["images"]):
        assert set(task) == {"data", "predictions"}
        assert task["data"] == {image_tag.get("name"): image_root + urllib.parse.quote(image["file_name"])}
        (prediction,) = task["predictions"]
        assert isinstance(prediction["model_version"], str) and isinstance(prediction["result"], list)
        annotations = by_image[image["id"]]
        scores = [a["score"] for a in annotations if "score" in a]
        assert prediction.get("score") == (pytest.approx(sum(scores) / len(scores), abs=1e-6) if scores else None)
        results = prediction["result"]
        ids = [r["id"] for r in results]
        assert len(set(ids)) == len(ids)
        boxes = [r for r in results if r["type"] == "rectanglelabels"]
        assert len(boxes) == len(annotations)
        for r in results:
            assert r["to_name"] == image_tag.get("name") and r["image_rotation"] == 0
            assert (r["original_width"], r["original_height"]) == (sizes[image["id"]]["width"],
                                                                   sizes[image["id"]]["height"])
            assert all(0 <= r["value"][key] <= 100 for key in ("x", "y"))
        for box, a in zip(boxes, annotations):
            value = box["value"]
            assert box["from_name"] == boxes_tag.get("name") and value["rotation"] == 0
            assert value["rectanglelabels"] == [next(c["name"] for c in coco["categories"]
                                                     if c["id"] == a["category_id"])]
            assert value["x"] + value["width"] <= 100 + 1e-9 and value["y"] + value["height"] <= 100 + 1e-9
            x, y, w, h = a["bbox"]
            assert [value["x"], value["y"], value["width"], value["height"]] == pytest.approx([
                x / image["width"] * 100, y / image["height"] * 100, w / image["width"] * 100,
                h / image["height"] * 100], rel=1e-12)
            assert box.get("score") == a.get("score")
            kids = [r for r in results if r.get("parentID") == box["id"]]
            assert all(r["type"] == "keypointlabels" for r in kids)
            values = a.get("keypoints") or []
            labeled = [j for j in range(len(values) // 3) if values[3 * j + 2] > 0]
            assert [r["value"]["keypointlabels"] for r in kids] == [[KEYPOINT_NAMES[j]] for j in labeled]
            for r, j in zip(kids, labeled):
                assert r["from_name"] == points_tag.get("name") and r["value"]["width"] > 0
                assert r["value"]["x"] == pytest.approx(values[3 * j] / image["width"] * 100)
                assert r["value"]["y"] == pytest.approx(values[3 * j + 1] / image["height"] * 100)
                # keypoint_scores are heatmap peaks, not the [0, 1] confidence a region's score is
                assert "score" not in r
            points += len(kids)
        assert sum(r["type"] == "keypointlabels" for r in results) == sum(
            1 for a in annotations for v in (a.get("keypoints") or [])[2::3] if v > 0)
    return points


def local_file_served(url: str, document_root: Path, storages: list[Path]) -> Path | None:
    """The file Label Studio's local-files view serves for a task URL, or None (404), by
    its documented rules: `/data/local-files/?d=PATH`, PATH (URL-decoded) relative to
    LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT; served only when the file's folder is inside
    a Local Files storage, and a storage cannot be the document root itself."""
    parts = urllib.parse.urlsplit(url)
    if parts.path != "/data/local-files/" or list(urllib.parse.parse_qs(parts.query)) != ["d"]:
        return None
    path = (document_root / urllib.parse.parse_qs(parts.query)["d"][0].lstrip("/")).resolve()
    allowed = [s for s in storages if s != document_root and s.is_relative_to(document_root)]
    inside = any(path.parent == s or path.parent.is_relative_to(s) for s in allowed)
    return path if inside and path.is_file() else None


def test_labelstudio_tasks_validate_against_the_task_format(tmp_path, capsys):
    data = labels()
    # The run settings `distill select` copies into its labels' info.
    settings = RunSettings(RunInput(images=Path("/data/unlabeled")), ModelEntry("detect", "01" * 32, "ab" * 32, "tiny"),
                           ModelEntry("keypoints", "23" * 32, "cd" * 32, "r50"), LabelSettings(), DEFAULT_MAX_PIXELS)
    data["info"] = {"labeling": settings.to_dict()}
    out = tmp_path / "ls"
    images = image_folder(tmp_path)
    assert convert(tmp_path, data, "--to", "labelstudio", "--out", str(out), "--images", str(images))[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["label_config.xml", "tasks.json"]
    tasks = json.loads((out / "tasks.json").read_text())
    points = validate_tasks(tasks, (out / "label_config.xml").read_text(), data, LOCAL_FILES_URL + "pictures/")
    assert points == 2 * (K - 1)  # two people, joint 4 not labeled each
    assert tasks[1]["data"]["image"] == "/data/local-files/?d=pictures/sub/dir/b%20c.png"
    assert tasks[0]["predictions"][0]["model_version"] == "detector tiny abababababab, keypoints r50 cdcdcdcdcdcd"
    assert tasks[2]["predictions"][0]["result"] == []
    printed = capsys.readouterr().out
    assert f"3 tasks (1 without labels), 4 boxes, {points} keypoints" in printed
    root, storage = tmp_path.resolve(), images.resolve()
    assert (f"serve the images: start Label Studio with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true "
            f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={root}, add a Local Files source storage with absolute "
            f"local path {storage}, then import tasks.json") in printed
    # Under the printed setup every task's image is served, and it is that task's image.
    for task, image in zip(tasks, IMAGES):
        assert local_file_served(task["data"]["image"], root, [storage]) == storage / image["file_name"]
    # The URLs of the images folder used as the document root itself would be all 404s:
    # Label Studio refuses a storage there, which is why the root is the parent.
    bare = [LOCAL_FILES_URL + urllib.parse.quote(image["file_name"]) for image in IMAGES]
    assert all(local_file_served(url, storage, [storage]) is None for url in bare)


def test_labelstudio_image_root_and_ground_truth_without_scores(tmp_path):
    data = labels(scores=False)
    out = tmp_path / "ls"
    root = "https://example.org/pictures/"
    assert convert(tmp_path, data, "--to", "labelstudio", "--out", str(out), "--image-root", root)[0] == 0
    tasks = json.loads((out / "tasks.json").read_text())
    validate_tasks(tasks, (out / "label_config.xml").read_text(), data, root)
    assert tasks[1]["data"]["image"] == "https://example.org/pictures/sub/dir/b%20c.png"
    assert not any("score" in r for t in tasks for p in t["predictions"] for r in [p, *p["result"]])
    assert tasks[0]["predictions"][0]["model_version"] == "tiny labels"  # the file's description


def test_labelstudio_detection_only_config_has_no_keypoint_labels(tmp_path):
    out = tmp_path / "ls"
    assert convert(tmp_path, labels(keypoints=False), "--to", "labelstudio", "--out", str(out),
                   "--image-root", "/i/")[0] == 0
    root = ET.fromstring((out / "label_config.xml").read_text())
    assert root.find("KeyPointLabels") is None
    assert [label.get("value") for label in root.find("RectangleLabels")] == ["person", "kite", "tv"]


# ---------------------------------------------------------------- errors


def multi_keypoint_categories() -> dict:
    data = labels()
    data["categories"][1]["keypoints"] = ["tip", "tail"]
    data["annotations"][1]["keypoints"] = [125, 10, 2, 140, 20, 2]
    return data


def bad_annotation(**change) -> dict:
    data = labels()
    data["annotations"][0].update(change)
    return data


def with_image(**change) -> dict:
    data = labels()
    data["images"][2].update(change)
    return data


@pytest.mark.parametrize("data, args, message", [
    (None, ("--to", "yolo"), r"labels\.json does not exist"),
    ("{not json", ("--to", "yolo"), r"cannot read .*labels\.json: not readable JSON \(Expecting property name"),
    ({"images": []}, ("--to", "yolo"), r"is not a COCO dataset \(no 'images' and 'annotations' lists\)"),
    ([1, 2], ("--to", "labelstudio", "--image-root", "/i/"), r"cannot read .*labels\.json: not a JSON object but a list"),
    (bad_annotation(image_id=99), ("--to", "yolo"), r"annotation 1 refers to image 99, which is not in 'images'"),
    (bad_annotation(category_id=5), ("--to", "yolo"), r"annotation 1 has category 5, which is not in 'categories'"),
    (bad_annotation(bbox=[1, 2, -3, 4]), ("--to", "yolo"), r"annotation 1: bbox must be \[x, y, width, height\]"),
    (bad_annotation(keypoints=[1, 2, 2]), ("--to", "yolo"), r"annotation 1: keypoints must be 17 x \[x, y, v\]"),
    (bad_annotation(score="high"), ("--to", "labelstudio", "--image-root", "/i/"),
     r"annotation 1: score must be a number"),
    (with_image(width=0), ("--to", "yolo"), r"every image needs an integer id, a file_name and width and height"),
    (with_image(file_name="../x.jpg"), ("--to", "yolo"), r"file_name '\.\./x\.jpg' must be a relative path"),
    (with_image(file_name="a.png"), ("--to", "yolo"), r"images 'a\.jpg' and 'a\.png' would share the label file"),
    (multi_keypoint_categories(), ("--to", "yolo"), r"labels of several categories carry keypoints \(person, kite\)"),
    (labels(scores=False), ("--to", "yolo", "--confidence"), r"--confidence needs a score on every label"),
    (labels(), ("--to", "labelstudio", "--image-root", "/i/", "--confidence"),
     r"--confidence applies to --to yolo only"),
    (labels(), ("--to", "labelstudio"), r"--to labelstudio needs one of --images IMAGES \(the folder the "
     r"file_names are relative to, served as Label Studio local files\) or --image-root PREFIX"),
    (labels(), ("--to", "labelstudio", "--images", ".", "--image-root", "/i/"), r"needs one of --images IMAGES"),
    (labels(), ("--to", "labelstudio", "--images", "."), r"--images: .*a\.jpg not found"),
    (labels(), ("--to", "labelstudio", "--images", "/"), r"--images /: / has no parent folder to be Label Studio's"),
    (labels(), ("--to", "yolo", "--image-root", "http://x/"), r"--image-root applies to --to labelstudio only"),
    (labels(), ("--to", "yolo", "--images", "nowhere"), r"--images nowhere is not a folder"),
])
def test_errors_are_one_line(tmp_path, capsys, data, args, message):
    path = tmp_path / "labels.json"
    if data is not None:
        path.write_text(data if isinstance(data, str) else json.dumps(data))
    out = tmp_path / "out"
    code = main(["convert", "--labels", str(path), "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("distill convert: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert not out.exists() and not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_out_must_be_new_or_empty(tmp_path, capsys):
    (tmp_path / "labels.json").write_text(json.dumps(labels()))
    out = tmp_path / "out"
    out.mkdir()
    assert main(["convert", "--labels", str(tmp_path / "labels.json"), "--to", "yolo", "--out", str(out)]) == 0
    assert main(["convert", "--labels", str(tmp_path / "labels.json"), "--to", "yolo", "--out", str(out)]) == 2
    assert "--out " + str(out) + " exists and is not an empty folder" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["convert", "--labels", str(tmp_path / "labels.json"), "--to", "yolo",
                 "--out", str(tmp_path / "file")]) == 2


def test_unknown_format_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["convert", "--labels", str(tmp_path / "labels.json"), "--to", "cvat", "--out", str(tmp_path / "o")])
    assert exit_.value.code == 2
    assert re.search(r"argument --to: invalid choice: 'cvat' \(choose from '?yolo'?, '?labelstudio'?\)",
                     capsys.readouterr().err)
