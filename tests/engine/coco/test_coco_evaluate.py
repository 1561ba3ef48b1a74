"""engine.coco.evaluate: the quiet COCOeval wrapper and its one key naming, the person
instance score, scoring a labels file, and reading metrics files of an earlier version."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.coco.evaluate import (BOX_STATS, KEYPOINT_STATS, coco_api, get_metric, instance_score, run_cocoeval,
                                  score_label_file, score_labels)
from engine.coco.schema import KEYPOINT_NAMES

J = len(KEYPOINT_NAMES)


def person(annotation_id: int, image_id: int, box: list[float]) -> dict:
    """A person filling `box` with its 17 keypoints spread over the box, all visible."""
    x, y, w, h = box
    keypoints = sum(([x + w * (i + 1) / (J + 1), y + h * (i + 1) / (J + 1), 2] for i in range(J)), [])
    return {"id": annotation_id, "image_id": image_id, "category_id": 1, "bbox": box, "area": w * h,
            "iscrowd": 0, "keypoints": keypoints, "num_keypoints": J}


def ground_truth() -> dict:
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 200},
                   {"id": 2, "file_name": "b.jpg", "width": 200, "height": 200}],
        "categories": [{"id": 1, "name": "person", "keypoints": list(KEYPOINT_NAMES)}, {"id": 38, "name": "kite"}],
        "annotations": [person(1, 1, [20, 30, 60, 120]), person(2, 2, [100, 40, 50, 100]),
                        {"id": 3, "image_id": 2, "category_id": 38, "bbox": [10, 10, 40, 30], "area": 1200,
                         "iscrowd": 0}],
    }


def results_of(gt: dict, shift: float = 0.0) -> tuple[list[dict], list[dict]]:
    """(box results, keypoint results) that repeat the ground truth, moved right by `shift` px."""
    boxes, people = [], []
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        boxes.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": [x + shift, y, w, h],
                      "score": 0.9})
        if "keypoints" in a:
            points = np.array(a["keypoints"], float).reshape(-1, 3) + [shift, 0, 0]
            people.append({"image_id": a["image_id"], "category_id": 1, "keypoints": points.reshape(-1).tolist(),
                           "bbox": [x + shift, y, w, h], "score": 0.9})
    return boxes, people


def test_perfect_results_score_one_and_shifted_ones_less():
    gt = coco_api(ground_truth())
    boxes, people = results_of(ground_truth())
    box = run_cocoeval(gt, boxes, "bbox")
    keypoint = run_cocoeval(gt, people, "keypoints", cat_ids=[1])
    assert list(box) == [f"box_{s}" for s in BOX_STATS]
    assert list(keypoint) == [f"keypoint_{s}" for s in KEYPOINT_STATS]
    assert box["box_AP"] == pytest.approx(1.0) and box["box_AP50"] == pytest.approx(1.0)
    assert keypoint["keypoint_AP"] == pytest.approx(1.0)
    boxes, people = results_of(ground_truth(), shift=8.0)
    shifted_box = run_cocoeval(gt, boxes, "bbox")["box_AP"]
    shifted_keypoint = run_cocoeval(gt, people, "keypoints", cat_ids=[1])["keypoint_AP"]
    assert 0.0 < shifted_box < 1.0 and 0.0 < shifted_keypoint < 1.0
    assert run_cocoeval(gt, [], "bbox") == {f"box_{s}": 0.0 for s in BOX_STATS}  # loadRes refuses []


def test_the_wrapper_is_quiet_unless_asked(capsys):
    gt = coco_api(ground_truth())
    boxes, _ = results_of(ground_truth())
    run_cocoeval(gt, boxes, "bbox")
    assert capsys.readouterr().out == ""
    run_cocoeval(gt, boxes, "bbox", quiet=False)
    assert "Average Precision" in capsys.readouterr().out


def test_instance_score_averages_the_confident_keypoints():
    peaks = np.array([[0.9, 0.5, 0.1, 0.2],    # confident: 0.9, 0.5 (0.2 is not above 0.2)
                      [0.1, 0.2, 0.0, 0.1]],   # none confident: the mean of all
                     np.float32)
    np.testing.assert_allclose(instance_score(peaks), [0.7, 0.1], rtol=1e-6)
    assert instance_score(peaks).dtype == np.float32
    np.testing.assert_allclose(instance_score(peaks, threshold=0.0), [0.425, 0.4 / 3], rtol=1e-6)  # 0.0 left out


def labels_of(gt: dict, shift: float = 0.0) -> dict:
    """`distill select`-style labels of the ground truth's images: other image ids, scores
    and keypoint scores, one label of a category the ground truth does not have."""
    renumber = {1: 20, 2: 10}
    annotations = []
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        label = {"id": a["id"], "image_id": renumber[a["image_id"]], "category_id": a["category_id"],
                 "bbox": [x + shift, y, w, h], "score": 0.8}
        if "keypoints" in a:
            points = np.array(a["keypoints"], float).reshape(-1, 3)
            points[:, 0] += shift
            points[1:, 2] = 0  # visibility is not what is scored: every keypoint counts
            label.update(keypoints=points.reshape(-1).tolist(), keypoint_scores=[0.5] * J)
        annotations.append(label)
    annotations.append({"id": 99, "image_id": 10, "category_id": 5, "bbox": [0, 0, 5, 5], "score": 0.99})
    return {"images": [{"id": renumber[i["id"]], "file_name": i["file_name"], "width": 200, "height": 200}
                       for i in gt["images"]],
            "categories": gt["categories"] + [{"id": 5, "name": "airplane"}], "annotations": annotations}


def test_score_labels_matches_images_by_file_name():
    gt = coco_api(ground_truth())
    scores = score_labels(gt, labels_of(ground_truth()))
    assert set(scores) == {f"box_{s}" for s in BOX_STATS} | {f"keypoint_{s}" for s in KEYPOINT_STATS}
    assert scores["box_AP"] == pytest.approx(1.0) and scores["keypoint_AP"] == pytest.approx(1.0)
    shifted = score_labels(gt, labels_of(ground_truth(), shift=8.0))
    assert shifted["box_AP"] < 1.0 and shifted["keypoint_AP"] < 1.0


def test_score_labels_without_a_keypoint_category_gives_zero_keypoint_ap():
    data = ground_truth()
    del data["categories"][0]["keypoints"]
    scores = score_labels(coco_api(data), labels_of(ground_truth()))
    assert scores["box_AP"] == pytest.approx(1.0) and scores["keypoint_AP"] == 0.0


def test_score_label_file_reads_both_files(tmp_path):
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth()))
    (tmp_path / "labels.json").write_text(json.dumps(labels_of(ground_truth())))
    assert score_label_file(tmp_path / "labels.json", tmp_path / "gt.json")["box_AP"] == pytest.approx(1.0)


def test_coco_api_holds_the_dict_and_is_quiet(capsys):
    data = ground_truth()
    coco = coco_api(data)
    assert coco.dataset is data and sorted(coco.getImgIds()) == [1, 2]
    assert capsys.readouterr().out == ""


def test_get_metric_reads_the_keys_of_an_earlier_version():
    assert get_metric({"box_AP": 0.5, "bbox_AP": 0.1}, "box_AP") == 0.5
    assert get_metric({"bbox_AP75": 0.25}, "box_AP75") == 0.25
    assert get_metric({"keypoints_AR": 0.75}, "keypoint_AR") == 0.75
    assert get_metric({"keypoints_AP": 0.75}, "box_AP") is None
    assert get_metric({}, "keypoint_AP") is None
