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


def write_case(tmp_path) -> list[str]:
    """Ground truth, exact TTA labels, generated labels missing the kite, a supervised
    baseline and a student; the report's arguments but --supervised and --student."""
    truth = coco([person([10, 10, 30, 60]), {"id": 2, "image_id": 1, "category_id": 2, "bbox": [60, 10, 20, 20],
                                             "area": 400, "iscrowd": 0}])
    (tmp_path / "gt.json").write_text(json.dumps(truth))
    exact = coco([dict(a, score=0.9, **({"keypoint_scores": [0.9] * 17} if a["category_id"] == 1 else {}))
                  for a in truth["annotations"]])
    (tmp_path / "exact.json").write_text(json.dumps(exact))
    missing = coco([exact["annotations"][0]])  # the kite is missed: half the box AP
    (tmp_path / "missing.json").write_text(json.dumps(missing))
    for name, det, kp, steps in (("sup", {"box_AP": 0.25, "box_AP50": 0.75}, {"keypoint_AP": 0.125}, (500, 250)),
                                 # The student's files as an earlier version wrote them: a run
                                 # folder of before the keys were unified still reports.
                                 ("stu", {"bbox_AP": 0.5}, {"keypoints_AP": 0.375}, (500, 250))):
        (tmp_path / name / "det").mkdir(parents=True)
        (tmp_path / name / "kp").mkdir()
        (tmp_path / name / "det" / "metrics.json").write_text(json.dumps({**det, "iterations": steps[0]}))
        (tmp_path / name / "kp" / "metrics.json").write_text(json.dumps({"iterations": steps[1]}))
        (tmp_path / name / "kp" / "e2e.json").write_text(json.dumps(kp))
    return ["--tta", str(tmp_path / "exact.json"), "--val-gt", str(tmp_path / "gt.json"),
            "--generated", str(tmp_path / "missing.json"), "--generated-gt", str(tmp_path / "gt.json")]


def model_args(tmp_path, flag: str, name: str) -> list[str]:
    return [flag, str(tmp_path / name / "det" / "metrics.json"), str(tmp_path / name / "kp" / "e2e.json")]


def table(out: str) -> dict[str, list[str]]:
    """{row name: its cells} of the printed table (the header and notes left out)."""
    return {line[:46].strip(): line[46:].split() for line in out.splitlines()[1:] if not line.startswith("note")}


def test_round_table_compares_the_student_with_the_supervised_baseline(tmp_path, capsys):
    code = report(["--round", "3", *write_case(tmp_path), *model_args(tmp_path, "--supervised", "sup"),
                   *model_args(tmp_path, "--student", "stu")])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("round 3") and "note" not in out
    assert table(out) == {
        "(a) supervised: labeled set only (= teacher)": ["0.250", "0.125", "500/250"],
        "teacher + TTA, ? passes": ["1.000", "1.000"],
        "generated labels (vs hidden truth)": ["0.500", "1.000"],
        "(b) student: labeled + generated": ["0.500", "0.375", "500/250"],
        "(b) - (a)": ["+0.250", "+0.250"]}


def test_later_round_shows_its_teacher_and_a_longer_student_schedule(tmp_path, capsys):
    case = write_case(tmp_path)
    metrics = tmp_path / "stu" / "det" / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "iterations": 650}))
    code = report(["--round", "2", *case, *model_args(tmp_path, "--supervised", "sup"),
                   *model_args(tmp_path, "--teacher", "stu"), *model_args(tmp_path, "--student", "stu")])
    out = capsys.readouterr().out
    rows = table(out)
    assert code == 0 and list(rows)[:2] == ["(a) supervised: labeled set only", "teacher: previous round's student"]
    assert rows["teacher: previous round's student"] == ["0.500", "0.375", "650/250"]
    assert out.splitlines()[-1] == ("note: the student trained 650/250 steps and (a) 500/250: (b) - (a) is not "
                                    "a same-schedule comparison")


def test_unreadable_file_is_one_line_error(tmp_path, capsys):
    code = report(["--supervised", str(tmp_path / "nope.json"), str(tmp_path / "nope.json"), "--tta", "x",
                   "--val-gt", "x", "--generated", "x", "--student", "x", "x"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("report: error: cannot read") and err.count("\n") == 1


def test_metrics_without_ap_is_one_line_error(tmp_path, capsys):
    (tmp_path / "det.json").write_text(json.dumps({"task": "detect", "final_loss": 1.5}))
    (tmp_path / "kp.json").write_text(json.dumps({"keypoint_AP": 0.125}))
    code = report(["--supervised", str(tmp_path / "det.json"), str(tmp_path / "kp.json"), "--tta", "x",
                   "--val-gt", "x", "--generated", "x", "--student", "x", "x"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "det.json holds no box_AP" in err
