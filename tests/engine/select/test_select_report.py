"""The loop's round table (`python -m engine.select.report`) from hand-made files."""

from __future__ import annotations

import json

from engine.select.report import main as report


def coco(annotations: list[dict]) -> dict:
    keypoint_names = [f"k{i}" for i in range(17)]
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "keypoints": keypoint_names, "skeleton": []},
                           {"id": 2, "name": "kite"}]}


def person(box: list[float], **extra) -> dict:
    x, y = box[0] + box[2] / 2, box[1] + box[3] / 2
    keypoints = sum(([x + i, y + i, 2] for i in range(17)), [])
    return {"id": 1, "image_id": 1, "category_id": 1, "bbox": box, "area": box[2] * box[3], "iscrowd": 0,
            "keypoints": keypoints, "num_keypoints": 17, **extra}


def test_round_table_reads_model_metrics_and_scores_labels(tmp_path, capsys):
    truth = coco([person([10, 10, 30, 60]), {"id": 2, "image_id": 1, "category_id": 2, "bbox": [60, 10, 20, 20],
                                             "area": 400, "iscrowd": 0}])
    (tmp_path / "gt.json").write_text(json.dumps(truth))
    exact = coco([dict(a, score=0.9, **({"keypoint_scores": [0.9] * 17} if a["category_id"] == 1 else {}))
                  for a in truth["annotations"]])
    (tmp_path / "exact.json").write_text(json.dumps(exact))
    missing = coco([exact["annotations"][0]])  # the kite is missed: half the box AP
    (tmp_path / "missing.json").write_text(json.dumps(missing))
    (tmp_path / "det.json").write_text(json.dumps({"box_AP": 0.25, "box_AP50": 0.75}))
    (tmp_path / "kp.json").write_text(json.dumps({"keypoint_AP": 0.125}))
    # The student's files as an earlier version wrote them: a run folder of before the keys
    # were unified still reports.
    (tmp_path / "det2.json").write_text(json.dumps({"bbox_AP": 0.5}))
    (tmp_path / "kp2.json").write_text(json.dumps({"keypoints_AP": 0.375}))
    code = report(["--round", "3", "--teacher", str(tmp_path / "det.json"), str(tmp_path / "kp.json"),
                   "--tta", str(tmp_path / "exact.json"), "--val-gt", str(tmp_path / "gt.json"),
                   "--generated", str(tmp_path / "missing.json"), "--generated-gt", str(tmp_path / "gt.json"),
                   "--student", str(tmp_path / "det2.json"), str(tmp_path / "kp2.json")])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and lines[0].startswith("round 3")
    rows = {line[:34].strip(): [float(v) for v in line[34:].split()] for line in lines[1:]}
    assert rows["teacher, one pass (val)"] == [0.25, 0.125]
    assert rows["teacher + TTA, ? passes (val)"] == [1.0, 1.0]
    assert rows["generated labels (unlabeled)"] == [0.5, 1.0]
    assert rows["student, one pass (val)"] == [0.5, 0.375]


def test_unreadable_file_is_one_line_error(tmp_path, capsys):
    code = report(["--teacher", str(tmp_path / "nope.json"), str(tmp_path / "nope.json"), "--tta", "x",
                   "--val-gt", "x", "--generated", "x", "--student", "x", "x"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("report: error: cannot read") and err.count("\n") == 1


def test_metrics_without_ap_is_one_line_error(tmp_path, capsys):
    (tmp_path / "det.json").write_text(json.dumps({"task": "detect", "final_loss": 1.5}))
    (tmp_path / "kp.json").write_text(json.dumps({"keypoint_AP": 0.125}))
    code = report(["--teacher", str(tmp_path / "det.json"), str(tmp_path / "kp.json"), "--tta", "x",
                   "--val-gt", "x", "--generated", "x", "--student", "x", "x"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "det.json holds no box_AP" in err
