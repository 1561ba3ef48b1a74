"""`python -m trainer.summary`: one table of several runs' metrics.json, also of runs an
earlier version wrote (keys `bbox_*` / `keypoints_*`)."""

from __future__ import annotations

import json

from trainer.summary import format_table, summary_rows


def test_summary_reads_current_and_earlier_metrics(tmp_path):
    runs = {"det": {"task": "detect", "model": "r18", "iterations": 90, "box_AP": 0.5, "box_AP50": 0.75,
                    "box_AR100": 0.625},
            "old-det": {"task": "detect", "model": "r18", "iterations": 90, "bbox_AP": 0.25, "bbox_AR100": 0.5},
            "old-kp": {"task": "keypoints", "model": "tiny", "iterations": 3, "keypoints_AP": 0.125,
                       "keypoints_AR": 0.375}}
    for name, metrics in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(metrics))
    rows = summary_rows([tmp_path / name for name in runs])
    assert rows == [["det", "detect", "r18", "90", "0.500", "0.750", "-", "0.625"],
                    ["old-det", "detect", "r18", "90", "0.250", "-", "-", "0.500"],
                    ["old-kp", "keypoints", "tiny", "3", "0.125", "-", "-", "0.375"]]
    assert format_table(rows).splitlines()[0].split() == ["run", "task", "model", "iters", "AP", "AP50", "AP75", "AR"]
