"""`distill select --labeled`: thresholds calibrated on the labeled set's statistics.

The threshold maths (engine/select/thresholds.py) is compared with plain references
below, built on np.sort and exact fractions, on random scores drawn from a few rounded
values so that ties are frequent. The command runs end to end on run folders written
by the engine's run folder (tests/engine/conftest.py `write_run`).
"""

from __future__ import annotations

import json
import weakref
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.coco.schema import KEYPOINT_NAMES, SKELETON
from engine.select.thresholds import BINS, category_histograms, count_threshold, keypoint_threshold
from tests.conftest import assert_cli_error
from tests.engine.conftest import write_run

PERSON = {"id": 1, "name": "person", "keypoints": list(KEYPOINT_NAMES), "skeleton": [list(p) for p in SKELETON]}
RUN_CATEGORIES = [PERSON, {"id": 3, "name": "car"}, {"id": 5, "name": "airplane"}]
J = len(KEYPOINT_NAMES)


# ---- references -------------------------------------------------------------------------
def reference_threshold(scores: np.ndarray, target: Fraction) -> float | None:
    """The rule spelled out: every distinct score is a candidate, it keeps #(scores >= it),
    nearest to `target` wins, the higher score on a tie; None for target 0 or no scores."""
    if target == 0 or len(scores) == 0:
        return None
    ordered = np.sort(np.asarray(scores, np.float64))
    values = np.unique(ordered)
    kept = len(ordered) - np.searchsorted(ordered, values, side="left")
    distance = [abs(int(k) - target) for k in kept]
    return float(max(v for v, d in zip(values, distance) if d == min(distance)))


def reference_keypoint_threshold(peaks: np.ndarray, target_mean: Fraction) -> float | None:
    """Same rule on the mean number per person `(P, J)` of peaks >= the candidate."""
    if target_mean == 0 or peaks.size == 0:
        return None
    values = np.unique(peaks)
    distance = [abs(Fraction(int((peaks >= v).sum()), len(peaks)) - target_mean) for v in values]
    return float(max(v for v, d in zip(values, distance) if d == min(distance)))


def histogram_of(scores) -> np.ndarray:
    return category_histograms((0, s) for s in scores).get(0, np.zeros(BINS, np.int64))


def random_target(rng: np.random.Generator, n: int) -> Fraction:
    """0, an integer up to beyond `n`, a half-integer (equal distances), or any fraction."""
    kind = rng.integers(4)
    if kind == 0:
        return Fraction(0)
    if kind == 1:
        return Fraction(int(rng.integers(0, 2 * n + 3)))
    if kind == 2:
        return Fraction(2 * int(rng.integers(0, n + 2)) + 1, 2)
    return Fraction(int(rng.integers(1, 1000)), int(rng.integers(1, 60)))


def tie_prone_scores(rng: np.random.Generator, shape) -> np.ndarray:
    """Scores rounded to 1e-5 as the records hold them, drawn from at most 7 values."""
    values = np.round(rng.uniform(0, 1, int(rng.integers(1, 8))), 5)
    return rng.choice(values, shape)


# ---- the threshold maths ------------------------------------------------------------------
def test_count_threshold_examples():
    hist = histogram_of([0.9, 0.8, 0.8, 0.5])  # thresholds keep 1 (0.9), 3 (0.8), 4 (0.5)
    assert count_threshold(hist, 3) == 0.8
    assert count_threshold(hist, 2) == 0.9  # 1 and 3 are equally near: fewer labels
    assert count_threshold(hist, 2.5) == 0.8
    assert count_threshold(hist, 10) == 0.5  # more than there is: keep all
    assert count_threshold(hist, 0.4) == 0.9
    assert count_threshold(hist, 0) is None
    assert count_threshold(histogram_of([]), 3) is None


def test_count_threshold_matches_quantile_reference():
    rng = np.random.default_rng(0)
    for case in range(600):
        scores = tie_prone_scores(rng, int(rng.integers(0, 60)))
        target = random_target(rng, len(scores))
        hist = histogram_of(scores.tolist())
        before = hist.copy()
        assert count_threshold(hist, target) == reference_threshold(scores, target), (case, target)
        np.testing.assert_array_equal(hist, before)


def test_category_histograms_count_every_item_across_chunks():
    rng = np.random.default_rng(1)
    keys = rng.choice([1, 3, 90], 1000)
    scores = np.round(rng.uniform(0, 1, 1000), 5)
    histograms = category_histograms(zip(keys.tolist(), scores.tolist()), chunk=37)
    assert sorted(histograms) == [1, 3, 90]
    for key, hist in histograms.items():
        expected = np.bincount(np.rint(scores[keys == key] * 1e5).astype(int), minlength=BINS)
        np.testing.assert_array_equal(hist, expected)


def test_keypoint_threshold_matches_reference():
    rng = np.random.default_rng(2)
    for case in range(300):
        peaks = tie_prone_scores(rng, (int(rng.integers(0, 12)), J))
        target = random_target(rng, J) if rng.integers(2) else Fraction(int(rng.integers(0, 2 * J + 1)), 2)
        got = keypoint_threshold(histogram_of(peaks.ravel().tolist()), len(peaks), target)
        assert got == reference_keypoint_threshold(peaks, target), (case, target)
    assert keypoint_threshold(histogram_of([0.5] * J), 1, None) is None


# ---- run folders by hand ------------------------------------------------------------------
def make_records(rng: np.random.Generator, images: int) -> list[dict]:
    """Records with people (keypoints), cars and airplanes; scores from a few rounded values."""
    score_values = np.round(rng.uniform(0.05, 1, 9), 5)
    peak_values = np.round(rng.uniform(0, 1, 6), 5)
    records = []
    for i in range(images):
        detections = []
        for _ in range(int(rng.integers(0, 12))):
            category = int(rng.choice([1, 3, 5]))
            detection = {"bbox": np.round(rng.uniform(1, 50, 4), 2).tolist(),
                         "score": float(rng.choice(score_values)), "category_id": category}
            if category == 1:
                xy = np.round(rng.uniform(0, 100, (J, 2)), 2)
                # weak people have weak keypoints: the keypoint threshold depends on who is selected
                peaks = np.round(detection["score"] * rng.choice(peak_values, (J, 1)), 5)
                detection["keypoints"] = np.concatenate([xy, peaks], axis=1).ravel().tolist()
            detections.append(detection)
        records.append({"file_name": f"u/{i:03d}.jpg", "width": 100, "height": 80, "detections": detections})
    return records


def write_labeled(path: Path, categories=None) -> dict:
    """A labeled COCO set of 10 images (3 without annotations): people (some crowd, some
    without visible keypoints, some without num_keypoints) and cars; no airplane; a dog.
    With `categories`, only the annotations of those category ids are kept."""
    rng = np.random.default_rng(5)
    annotations = []

    def add(image_id: int, category_id: int, **extra) -> None:
        annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                            "bbox": [1, 1, 10, 10], "area": 100, **extra})

    for image_id in range(1, 8):
        v = rng.choice([0, 1, 2], J, p=[0.4, 0.2, 0.4])
        points = np.stack([np.full(J, 5), np.full(J, 5), v], 1).ravel().tolist()
        add(image_id, 1, iscrowd=0, keypoints=points, num_keypoints=int((v > 0).sum()))
        add(image_id, 3, iscrowd=0)
    add(1, 1, keypoints=[5, 5, 2] * J)  # neither iscrowd nor num_keypoints
    add(2, 1, iscrowd=0, keypoints=[0, 0, 0] * J, num_keypoints=0)  # counted as an instance only
    add(1, 1, iscrowd=1, keypoints=[5, 5, 2] * J, num_keypoints=J)
    add(2, 3, iscrowd=1)
    add(2, 18, iscrowd=0)
    categories = categories or [PERSON, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]
    listed = {c["id"] for c in categories}
    data = {"images": [{"id": i, "file_name": f"l/{i}.jpg", "width": 100, "height": 80} for i in range(1, 11)],
            "annotations": [a for a in annotations if a["category_id"] in listed], "categories": categories}
    path.write_text(json.dumps(data))
    return data


def labeled_targets(data: dict) -> tuple[dict[int, int], Fraction]:
    """({category: non-crowd instances}, mean visible keypoints of people with any)."""
    instances, visible = {}, []
    for a in data["annotations"]:
        if a.get("iscrowd", 0):
            continue
        instances[a["category_id"]] = instances.get(a["category_id"], 0) + 1
        if a["category_id"] == 1:
            n = a.get("num_keypoints", sum(1 for v in a["keypoints"][2::3] if v > 0))
            visible += [n] if n > 0 else []
    return instances, Fraction(sum(visible), len(visible))


@pytest.fixture
def case(tmp_path):
    records = make_records(np.random.default_rng(3), 40)
    return {"run": write_run(tmp_path / "run", records, RUN_CATEGORIES, shard_size=16), "records": records,
            "labeled_path": tmp_path / "labeled.json", "labeled": write_labeled(tmp_path / "labeled.json"),
            "out": tmp_path / "pseudo.json"}


def select(case: dict, *extra: str) -> int:
    return main(["select", "--predictions", str(case["run"]), "--labeled", str(case["labeled_path"]),
                 "--out", str(case["out"]), *extra])


# ---- end to end ------------------------------------------------------------------------------
def test_calibrated_select_follows_the_reference_rule(case, capsys):
    assert select(case) == 0
    data = json.loads(case["out"].read_text())
    records, labeled = case["records"], case["labeled"]
    instances, visible_mean = labeled_targets(labeled)
    n_unlabeled, n_labeled = len(records), len(labeled["images"])
    detections = [d for r in records for d in r["detections"]]
    report = data["info"]["thresholds"]
    assert report["rule"] == "calibrated" and report["labeled"] == str(case["labeled_path"])
    assert sorted(report["categories"]) == ["1", "3", "5"]

    counts = {c: sum(a["category_id"] == c for a in data["annotations"]) for c in (1, 3, 5)}
    for category in (1, 3):
        scores = np.array([d["score"] for d in detections if d["category_id"] == category])
        expected = reference_threshold(scores, Fraction(instances[category] * n_unlabeled, n_labeled))
        assert expected is not None
        row = report["categories"][str(category)]
        assert row["threshold"] == expected
        assert counts[category] == row["count"] == int((scores >= expected).sum())
        assert row["labeled_per_image"] == instances[category] / n_labeled
        assert row["generated_per_image"] == counts[category] / n_unlabeled
    # airplanes are predicted but absent from the labeled set: none kept
    assert any(d["category_id"] == 5 for d in detections)
    assert counts[5] == 0
    assert report["categories"]["5"] == {"name": "airplane", "labeled_per_image": None, "threshold": None,
                                         "generated_per_image": 0.0, "count": 0}

    # keypoints: threshold from the selected people only; visibility follows it
    t_person = report["categories"]["1"]["threshold"]
    assert 0 < counts[1] < sum(d["category_id"] == 1 for d in detections)  # some people are dropped
    peaks = np.array([d["keypoints"][2::3] for d in detections if d["category_id"] == 1 and d["score"] >= t_person])
    k = reference_keypoint_threshold(peaks, visible_mean)
    assert k is not None and report["keypoint"]["threshold"] == k
    assert report["keypoint"]["labeled_mean_visible"] == float(visible_mean)
    people = [a for a in data["annotations"] if a["category_id"] == 1]
    assert len(people) == len(peaks)
    for person in people:
        scores = np.array(person["keypoint_scores"])
        v = np.array(person["keypoints"][2::3])
        np.testing.assert_array_equal(v, np.where(scores >= k, 2, 0))
        assert all(person["keypoints"][3 * j:3 * j + 2] == [0, 0] for j in np.flatnonzero(v == 0))
        assert person["num_keypoints"] == int((v == 2).sum())
    assert report["keypoint"]["generated_mean_visible"] == pytest.approx(float((peaks >= k).sum(1).mean()))

    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("category"))
    assert lines[header].split() == ["category", "labeled/img", "threshold", "generated/img", "count"]
    rows = {line.split()[0]: line.split() for line in lines[header + 1:header + 4]}
    assert rows["1"] == ["1", "person", f"{instances[1] / n_labeled:.4f}", f"{t_person:.5f}",
                         f"{counts[1] / n_unlabeled:.4f}", str(counts[1])]
    assert rows["5"] == ["5", "airplane", "-", "-", "0.0000", "0"]
    assert lines[header + 4].startswith(f"keypoints: labeled mean visible {float(visible_mean):.3f}, "
                                        f"threshold {k:.5f}, generated mean visible")
    assert any("labeled category ids [18] are not predicted" in line for line in lines)


def test_selection_streams_the_records(case, monkeypatch):
    """No pass holds the records: when a record is read, the earlier ones are gone."""
    import engine.select.calibrated as calibrated
    import engine.select.cli as cli

    class Record(dict):  # a dict that a weak reference can follow
        pass

    passes, most_alive = [], 0

    def counting_iter_records(out):
        nonlocal most_alive
        refs = []
        passes.append(refs)
        for record in plain_iter_records(out):
            most_alive = max(most_alive, sum(ref() is not None for ref in refs))
            wrapped = Record(record)
            refs.append(weakref.ref(wrapped))
            yield wrapped

    plain_iter_records = calibrated.iter_records
    monkeypatch.setattr(calibrated, "iter_records", counting_iter_records)
    monkeypatch.setattr(cli, "iter_records", counting_iter_records)
    assert select(case) == 0
    assert [len(refs) for refs in passes] == [len(case["records"])] * 3
    assert most_alive <= 1


def test_fixed_rule_keeps_its_info(case):
    assert main(["select", "--predictions", str(case["run"]), "--out", str(case["out"]), "--threshold", "0.5"]) == 0
    data = json.loads(case["out"].read_text())
    assert data["info"]["thresholds"] == {"rule": "fixed", "score": 0.5, "keypoint": 0.0}
    kept = sum(d["score"] >= 0.5 for r in case["records"] for d in r["detections"])
    assert len(data["annotations"]) == kept


# ---- errors: one line on stderr, exit status 2 ------------------------------------------------
def assert_error(capsys, code: int, *fragments: str) -> None:
    assert_cli_error(capsys, code, "select", *fragments)


def test_labeled_without_categories_is_an_error(case, capsys):
    labeled = dict(case["labeled"])
    del labeled["categories"]
    case["labeled_path"].write_text(json.dumps(labeled))
    assert_error(capsys, select(case), "has no 'categories' list")


def test_run_from_another_label_set_is_an_error(case, capsys):
    write_labeled(case["labeled_path"], categories=[PERSON, {"id": 3, "name": "truck"}, {"id": 5, "name": "bus"}])
    assert_error(capsys, select(case), "from another label set", "category ids [3, 5] differ",
                 "3 is 'car' in the run, 'truck' in labeled.json")


def test_threshold_with_labeled_is_an_error(case, capsys):
    assert_error(capsys, select(case, "--threshold", "0.5"), "--threshold and --labeled")
    assert not case["out"].exists()


def test_keypoint_threshold_with_labeled_is_an_error(case, capsys):
    assert_error(capsys, select(case, "--keypoint-threshold", "0.5"), "--keypoint-threshold cannot be combined")


def test_labeled_sharing_no_category_is_an_error(case, capsys):
    write_labeled(case["labeled_path"], categories=[{"id": 18, "name": "dog"}])
    assert_error(capsys, select(case), "shares no category id")


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("{not json", "cannot read"),
    ('{"images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}], "annotations": [{"id": 1, '
     '"image_id": 1, "bbox": [0, 0, 1, 1]}], "categories": [{"id": 1, "name": "person"}]}',
     "annotation 1 has category None, which is not in 'categories'"),
    ("[1, 2]", "not a JSON object but a list"),
    ('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}', "lists no images"),
])
def test_unusable_labeled_file_is_an_error(case, capsys, content, message):
    case["labeled_path"].unlink()
    if content is not None:
        case["labeled_path"].write_text(content)
    assert_error(capsys, select(case), message)


@pytest.mark.parametrize("rule", [[], ["--threshold", "0.5"]])
def test_run_without_records_is_an_error(case, tmp_path, capsys, rule):
    case["run"] = write_run(tmp_path / "empty", [], RUN_CATEGORIES, shard_size=16)
    code = main(["select", "--predictions", str(case["run"]), "--out", str(case["out"]),
                 *(rule or ["--labeled", str(case["labeled_path"])])])
    assert_error(capsys, code, "holds no records")


def test_folder_without_a_run_is_an_error(case, tmp_path, capsys):
    case["run"] = tmp_path
    assert_error(capsys, select(case), "holds no labeling run")
