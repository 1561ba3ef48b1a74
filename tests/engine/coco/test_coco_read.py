"""engine.coco.read: strict reading (every entry checked, one-line errors naming the file
and the entry) and lenient reading (the file and its lists only)."""

from __future__ import annotations

import copy
import json
import re

import pytest

from engine.coco.read import keypoint_category, load_coco, read_coco
from engine.errors import UserError


def dataset() -> dict:
    """Two images (the second without annotations), a person with two keypoints, a kite."""
    return {
        "info": {"description": "tiny", "thresholds": {"rule": "fixed", "score": 0.5}},
        "images": [{"id": 3, "file_name": "a.jpg", "width": 64, "height": 48},
                   {"id": 1, "file_name": "b/c.jpg", "width": 32.0, "height": 32}],
        "categories": [{"id": 1, "name": "person", "keypoints": ["left_eye", "right_eye"]},
                       {"id": 38, "name": "kite"}],
        "annotations": [
            {"id": 7, "image_id": 3, "category_id": 1, "bbox": [1, 2, 10, 20], "score": 0.9,
             "keypoints": [3, 4, 2, 5.5, 4, 0], "keypoint_scores": [0.8, 0.1], "num_keypoints": 1},
            {"id": 8, "image_id": 3, "category_id": 38, "bbox": [0.5, 0.5, 0, 3.25], "iscrowd": 0},
            {"id": 9, "image_id": 3, "category_id": 1, "bbox": [30, 20, 5, 5], "iscrowd": 1, "keypoints": []},
        ],
    }


def write(tmp_path, data, name: str = "labels.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_load_coco_indexes_the_files_own_entries(tmp_path):
    data = dataset()
    coco = load_coco(write(tmp_path, data))
    assert coco.data == data
    assert list(coco.images) == [3, 1] and list(coco.categories) == [1, 38]  # file order
    assert [a["id"] for a in coco.annotations[3]] == [7, 8, 9] and coco.annotations[1] == []
    assert coco.ids_by_file == {"a.jpg": 3, "b/c.jpg": 1}
    assert coco.info["description"] == "tiny" and coco.thresholds == {"rule": "fixed", "score": 0.5}
    # One set of dicts: the index holds the entries of `data`, not copies.
    assert coco.annotations[3][0] is coco.data["annotations"][0]
    assert coco.images[1] is coco.data["images"][1]


def test_info_and_thresholds_are_optional(tmp_path):
    data = dataset()
    del data["info"]
    coco = load_coco(write(tmp_path, data))
    assert coco.info == {} and coco.thresholds is None


def test_read_coco_is_lenient_about_entries(tmp_path):
    data = dataset()
    data["annotations"][0]["image_id"] = 99  # no such image: not checked
    data["images"][0]["width"] = "wide"
    assert read_coco(write(tmp_path, data)) == data
    with pytest.raises(UserError, match="every image needs"):
        load_coco(tmp_path / "labels.json")


@pytest.mark.parametrize("content, message", [
    ("{not json", r"cannot read .*labels\.json: not readable JSON \(Expecting property name"),
    (b"\xff\xfe", r"cannot read .*labels\.json"),
    ([1, 2], r"labels\.json: not a JSON object but a list"),
    ({"images": [], "annotations": {}}, r"is not a COCO dataset"),
    ({"images": [], "annotations": []}, r"labels\.json has no 'categories' list"),
    ({"images": [], "annotations": [], "categories": []}, r"has no 'categories' list"),
])
def test_file_level_errors_are_shared_by_both_readers(tmp_path, content, message):
    path = tmp_path / "labels.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write(tmp_path, content)
    for reader in (read_coco, load_coco):
        with pytest.raises(UserError, match=message):
            reader(path)


def test_missing_file_and_folder(tmp_path):
    for reader in (read_coco, load_coco):
        with pytest.raises(UserError, match=r"none\.json does not exist"):
            reader(tmp_path / "none.json")
        with pytest.raises(UserError, match=r"a folder, not a JSON file"):
            reader(tmp_path)


DELETE = object()


def change(path: str, value) -> dict:
    """dataset() with the entry at `path` ("annotations.0.bbox") set to `value`
    (deleted when value is DELETE)."""
    data = copy.deepcopy(dataset())
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    last = int(last) if isinstance(target, list) else last
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return data


@pytest.mark.parametrize("path, value, message", [
    ("images.0.id", "3", r"every image needs an integer id, a file_name and width and height > 0 "
                         r"\(got \{\"id\": \"3\""),
    ("images.0.id", True, r"every image needs an integer id"),
    ("images.1.file_name", "", r"every image needs an integer id, a file_name"),
    ("images.1.width", 0, r"width and height > 0"),
    ("images.1.height", DELETE, r"width and height > 0"),
    ("images.1.id", 3, r"image id 3 appears twice"),
    ("images.1", "b.jpg", r"every image needs"),
    ("categories.1.id", 1, r"category id 1 appears twice"),
    ("categories.1.name", DELETE, r"every category needs an integer id and a name \(got \{\"id\": 38\}\)"),
    ("categories.0.keypoints", ["left_eye", 3], r"category 'person' has keypoint names that are not all strings"),
    ("annotations.1", [1], r"an annotation is not an object \(got \[1\]\)"),
    ("annotations.1.id", DELETE, r"every annotation needs an integer id"),
    ("annotations.1.id", 7, r"annotation 7 appears twice"),
    ("annotations.1.image_id", 1.0, r"annotation 8 refers to image 1\.0, which is not in 'images'"),
    ("annotations.1.image_id", 2, r"annotation 8 refers to image 2, which is not in 'images'"),
    ("annotations.1.category_id", 5, r"annotation 8 has category 5, which is not in 'categories'"),
    ("annotations.1.category_id", DELETE, r"annotation 8 has category None"),
    ("annotations.1.bbox", [1, 2, -3, 4], r"annotation 8: bbox must be \[x, y, width, height\] in pixels"),
    ("annotations.1.bbox", [1, 2, 3], r"annotation 8: bbox must be"),
    ("annotations.1.bbox", [1, 2, 3, float("nan")], r"annotation 8: bbox must be"),
    ("annotations.1.bbox", DELETE, r"annotation 8: bbox must be"),
    ("annotations.1.score", "high", r"annotation 8: score must be a number \(got 'high'\)"),
    ("annotations.0.num_keypoints", 1.5, r"annotation 7: num_keypoints must be a whole number >= 0"),
    ("annotations.0.num_keypoints", -1, r"annotation 7: num_keypoints must be a whole number >= 0"),
    ("annotations.0.keypoints", [1, 2, 2], r"annotation 7: keypoints must be 2 x \[x, y, v\] for category 'person' "
                                           r"\(got 3 values\)"),
    ("annotations.1.keypoints", [1, 2, 2], r"annotation 8: keypoints must be 0 x \[x, y, v\] for category 'kite'"),
    ("annotations.0.keypoint_scores", [0.5], r"annotation 7: keypoint_scores must hold 2 numbers"),
    ("annotations.0.keypoint_scores", [0.5, None], r"annotation 7: keypoint_scores must hold 2 numbers"),
])
def test_strict_errors_name_the_file_and_the_entry(tmp_path, path, value, message):
    file = write(tmp_path, change(path, value))
    with pytest.raises(UserError) as error:
        load_coco(file)
    text = str(error.value)
    assert "\n" not in text and text.startswith(f"{file}: ")
    assert re.search(message, text), text
    read_coco(file)  # the lenient reader takes it


def test_real_coco_files_pass_the_strict_reader(coco_mini):
    for name in ("person_keypoints.json", "instances_80cls.json"):
        coco = load_coco(coco_mini / "annotations" / name)
        assert coco.images and sum(len(a) for a in coco.annotations.values()) == len(coco.data["annotations"])


def test_keypoint_category_is_the_first_with_keypoints():
    categories = dataset()["categories"]
    assert keypoint_category(categories) == 1
    assert keypoint_category(categories[::-1]) == 1
    assert keypoint_category([{"id": 2, "name": "kite"}, {"id": 4, "name": "x", "keypoints": []}]) is None
