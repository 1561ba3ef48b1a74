"""benchmarks/distillation.py's parts that run no training: sizes from the command line,
the resumable steps, and the tables printed from a results file (the README's)."""

from __future__ import annotations

import json
import sys

import pytest

from benchmarks.distillation import STUDENTS, Sizes, Step, Steps, main, relative, run_dir, summarize


def test_every_size_is_an_option_over_the_defaults_or_quick(tmp_path, capsys, monkeypatch):
    seen = {}
    monkeypatch.setattr("benchmarks.distillation.make_data", lambda steps, sizes: seen.setdefault("sizes", sizes))
    monkeypatch.setattr("benchmarks.distillation.run_curve", lambda *args: {})
    monkeypatch.setattr("benchmarks.distillation.plot_curve", lambda curve, path: None)
    main(["--out", str(tmp_path), "--quick", "--labeled", "7", "--det-sizes", "96", "128", "--kp-lr", "0.5",
          "--scales", "96:128:32", "--curve", "1"])
    assert seen["sizes"] == Sizes(labeled=7, unlabeled=40, val=20, det_iters=150, kp_iters=40, kp_lr=0.5,
                                  scales="96:128:32", det_sizes=[96, 128])
    assert json.loads((tmp_path / "sizes.json").read_text())["labeled"] == 7
    # Another schedule reuses the folder (runs are named by it); other data does not.
    main(["--out", str(tmp_path), "--quick", "--labeled", "7", "--det-sizes", "96", "128", "--kp-lr", "0.5",
          "--scales", "96:128:32", "--curve", "1", "--schedule-scale", "2"])
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--quick", "--curve", "1"])
    assert "was made with other sizes" in capsys.readouterr().err


def test_steps_skip_finished_outputs_mark_and_report_failures(tmp_path):
    steps = Steps(tmp_path, jobs=2)
    done = tmp_path / "done"
    write = [sys.executable, "-c", f"open({str(done)!r}, 'w').write('x')"]
    steps.run_all([Step("write", done, write), Step("mark", tmp_path / "marked", [sys.executable, "-c", "pass"],
                                                    mark=True)])
    assert done.read_text() == "x" and (tmp_path / "marked").exists()
    done.write_text("kept")
    steps.run("write", done, write)  # its output exists: not run again
    assert done.read_text() == "kept"
    with pytest.raises(SystemExit, match=r"fail failed \(exit 3\); see .*fail\.log"):
        steps.run("fail", tmp_path / "never", [sys.executable, "-c", "import sys; sys.exit(3)"])
    assert not (tmp_path / "never").exists()


def test_run_folders_are_named_by_their_schedule(tmp_path):
    assert run_dir(tmp_path, 2, "detect", "a", 1.0) == tmp_path / "seed2" / "detect-a-x1"
    assert run_dir(tmp_path, 0, "keypoints", "e", 0.25).name == "keypoints-e-x0.25"


def test_report_prints_the_table_of_a_results_file(tmp_path, capsys):
    ap = {"a": 0.2, "b": 0.25, "c": 0.1, "d": 0.22, "e": 0.3}
    runs = {seed: {"students": {"detect": {k: {"box_AP": v + seed / 100} for k, v in ap.items()},
                                "keypoints": {k: {"keypoint_AP": v / 2} for k, v in ap.items()}}}
            for seed in (0, 1)}
    (tmp_path / "results.json").write_text(json.dumps({"seeds": [0, 1], "table": summarize(runs)}))
    assert main(["--report", str(tmp_path / "results.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| seeds 0, 1 | box AP | keypoint AP (GT boxes) |"
    assert lines[2] == f"| (a) {STUDENTS['a']} | 0.205 +- 0.010 (0.200 0.210) | 0.100 +- 0.000 (0.100 0.100) |"
    assert lines[-2].startswith("box: (b) - (a) = +0.050 (+24%) against a spread of 0.010, (b) > (a) in 2 of 2 seeds")
    assert lines[-1].startswith("keypoint: (b) - (a) = +0.025 (+25%)")


def test_report_prints_a_curve_file(tmp_path, capsys):
    curve = {"sizes": {"det_iters": 100, "kp_iters": 50},
             "points": {"detect": {"a": {"0.5": [0.1], "1": [0.2]}, "e": {"1": [0.3]}}}}
    (tmp_path / "curve.json").write_text(json.dumps(curve))
    main(["--report", str(tmp_path / "curve.json")])
    assert capsys.readouterr().out.splitlines() == [
        "| task | arm | x0.5 | x1 |", "|---|---|---|---|",
        "| detect (100 x) | (a) | 0.100 | 0.200 |", "| detect (100 x) | (e) |  | 0.300 |"]


def test_relative_change_leaves_out_an_untrained_baseline():
    assert relative(0.05, 0.2) == " (+25%)" and relative(-0.1, 0.4) == " (-25%)"
    assert relative(0.01, 0.0) == ""  # --quick's keypoint model finds nothing: AP 0


def test_report_of_one_seed_claims_no_spread(tmp_path, capsys):
    ap = {"a": 0.2, "b": 0.25, "c": 0.1, "d": 0.22, "e": 0.3}
    runs = {0: {"students": {"detect": {k: {"box_AP": v} for k, v in ap.items()},
                             "keypoints": {k: {"keypoint_AP": v} for k, v in ap.items()}}}}
    (tmp_path / "results.json").write_text(json.dumps({"seeds": [0], "table": summarize(runs)}))
    main(["--report", str(tmp_path / "results.json")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| seed 0 | box AP | keypoint AP (GT boxes) |"
    assert lines[3] == f"| (b) {STUDENTS['b']} | 0.250 | 0.250 |"
    assert "(one seed: no spread to compare with), (b) > (a) in 1 of 1 seeds" in lines[-1]
