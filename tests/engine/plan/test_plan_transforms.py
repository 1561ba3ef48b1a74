"""`distill plan-transforms`: cached passes, subset scoring, greedy search, the plan file,
and `distill label --plan` labeling exactly what the chosen subset's evaluation saw."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.ensemble import ensemble_detections
from engine.errors import UserError
from engine.label.detect import Candidates
from engine.label.merge import MergeSettings
from engine.label.plan_file import read_plan_file, write_plan_file
from engine.label.views import TransformPlan
from engine.modelcard import ModelCard
from engine.plan.passes import PassCache
from engine.plan.scoring import Score, SubsetScorer
from engine.plan.search import Point, choose, greedy_forward, mark_front
from tests.engine.plan.conftest import FLOOR, cached_scorer

CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]


# ---- constructed pass outputs ----------------------------------------------------------
def _random_candidates(rng: np.random.Generator, size: int) -> Candidates:
    """Clusters of jittered boxes (so NMS and voting have work), some scores tied."""
    count = int(rng.integers(0, 30))
    centres = rng.uniform(20, size - 20, (3, 2))
    pick = centres[rng.integers(0, 3, count)] + rng.normal(0, 3, (count, 2))
    half = rng.uniform(8, 20, (count, 2))
    boxes = np.concatenate([pick - half, pick + half], axis=1).clip(0, size).astype(np.float32)
    scores = rng.choice([0.3, 0.5, 0.7, 0.9], count).astype(np.float32)  # ties on purpose
    return Candidates(boxes, scores, rng.integers(0, 2, count).astype(np.int64))


def _cache(rng: np.random.Generator, plan: TransformPlan, images: int = 5, size: int = 120) -> PassCache:
    passes = len(plan.passes)
    return PassCache(plan, [f"im{i}.jpg" for i in range(images)], [np.zeros((size, size, 3), np.uint8)] * images,
                     [[_random_candidates(rng, size) for _ in range(passes)] for _ in range(images)],
                     [_random_candidates(rng, size) for _ in range(images)],
                     rng.integers(1000, 5000, passes).astype(np.int64), 900, [])


def _ground_truth(images: int = 5, size: int = 120):
    from pycocotools.coco import COCO

    rng = np.random.default_rng(7)
    annotations = []
    for image_id in range(1, images + 1):
        for _ in range(3):
            x, y = rng.uniform(10, size - 50, 2)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(rng.choice([1, 3])),
                                "bbox": [float(x), float(y), 30.0, 30.0], "area": 900.0, "iscrowd": 0})
    gt = COCO()
    gt.dataset = {"images": [{"id": i + 1, "file_name": f"im{i}.jpg", "width": size, "height": size}
                             for i in range(images)],
                  "annotations": annotations, "categories": CATEGORIES}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def _card() -> ModelCard:
    return ModelCard(task="detect", categories=CATEGORIES, input_name="images",
                     outputs=["boxes", "scores", "labels"], strides=[8, 16, 32], topk=100)


def test_subset_scoring_equals_ensembling_only_those_passes():
    """On constructed pass outputs: a subset's detections are the ensemble of exactly its
    passes' candidates in plan order, whatever order the subset is named in; and its
    score equals that of a cache made of those passes alone."""
    rng = np.random.default_rng(0)
    plan = TransformPlan.grid((100, 150, 200))
    cache = _cache(rng, plan)
    merge = MergeSettings(nms_threshold=0.5, vote_threshold=0.8, scoring="avg", max_detections=15)
    gt = _ground_truth()
    scorer = SubsetScorer(cache, gt, _card(), merge, None, workers=2)
    for subset in [(0,), (5,), (4, 1), (3, 0, 5), (0, 1, 2, 3, 4, 5)]:
        got = scorer.detections(subset)
        for image, detections in zip(cache.candidates, got):
            parts = [image[p] for p in sorted(subset)]
            boxes, scores, labels = ensemble_detections(
                np.concatenate([c.boxes for c in parts]), np.concatenate([c.scores for c in parts]),
                np.concatenate([c.labels for c in parts]), nms_threshold=0.5, vote_threshold=0.8,
                scoring="avg", score_floor=merge.score_floor, max_detections=15)
            np.testing.assert_array_equal(detections.boxes, boxes)
            np.testing.assert_array_equal(detections.scores, scores)
            np.testing.assert_array_equal(detections.labels, labels)
        alone = PassCache(TransformPlan(tuple(plan.passes[p] for p in subset)), cache.names, cache.images,
                          [[image[p] for p in sorted(subset)] for image in cache.candidates], cache.identity,
                          cache.pixels[sorted(subset)], cache.identity_pixels, [])
        assert scorer.score(subset) == SubsetScorer(alone, gt, _card(), merge, None, 1).score(
            tuple(range(len(subset))))
    assert scorer.cost(tuple(range(6))) == pytest.approx(1.0)
    assert scorer.cost((2,)) == pytest.approx(cache.pixels[2] / cache.pixels.sum())


class _AdditiveScorer:
    """Box AP = the sum of per-pass values; cost = the sum of per-pass costs."""

    has_keypoints = False

    def __init__(self, values: list[float], costs: list[float]) -> None:
        self.values, self.costs = values, costs

    def score(self, subset, with_keypoints=False) -> Score:
        return Score(sum(self.values[p] for p in subset), None)

    def cost(self, subset) -> float:
        return sum(self.costs[p] for p in subset) / sum(self.costs)


def test_greedy_adds_the_best_pass_each_step_and_the_front_and_budget_follow():
    scorer = _AdditiveScorer([0.1, 0.5, 0.3, 0.3], [1, 1, 1, 2])
    points = greedy_forward(scorer, 4, "box", progress=False)
    assert len(points) == 4 + 3 + 2 + 1
    path = [p.subset for p in points if p.on_path]
    # 1 first; then 2 and 3 tie on AP and 2 is cheaper; then 3; then 0
    assert path == [(1,), (1, 2), (1, 2, 3), (0, 1, 2, 3)]
    front = mark_front(points, "box")
    assert [p.subset for p in front] == [(1,), (1, 2), (0, 1, 2), (1, 2, 3), (0, 1, 2, 3)]
    assert all(p.on_front == (p in front) for p in points)
    assert choose(points, 0.4, "box").subset == (1, 2)
    assert choose(points, 1.0, "box").subset == (0, 1, 2, 3)
    with pytest.raises(UserError, match=r"^no subset of the passes fits a budget of 0.1 of the full plan's "
                                        r"detector cost \(the cheapest pass costs 0.200\)$"):
        choose(points, 0.1, "box")


def test_front_keeps_only_points_nothing_beats():
    def point(cost, ap):
        return Point((0,), cost, ap, None, 1)
    points = [point(0.2, 0.5), point(0.2, 0.4), point(0.5, 0.5), point(0.6, 0.7), point(0.9, 0.6), point(1.0, 0.8)]
    assert [(p.cost, p.box_AP) for p in mark_front(points, "box")] == [(0.2, 0.5), (0.6, 0.7), (1.0, 0.8)]


# ---- the plan file ---------------------------------------------------------------------
def test_plan_file_round_trip_and_refusals(tmp_path):
    plan = TransformPlan(((800, True), (400, False), (600, True)), max_size=1333)
    write_plan_file(tmp_path / "plan.json", plan, {"budget": 0.5})
    assert read_plan_file(tmp_path / "plan.json") == plan
    assert plan.passes == ((400, False), (600, True), (800, True))  # canonical order
    assert TransformPlan.from_dict(plan.to_dict()) == plan
    grid = TransformPlan.grid((400, 500))
    assert grid.to_dict() == {"scales": [400, 500], "flip": True, "max_size": 2000}  # manifests as before
    cases = {
        "missing.json": (None, "file not found"),
        "text.json": ("not json", "text.json: not readable JSON"),
        "other.json": (json.dumps({"images": []}), "not a transform plan"),
        "version.json": (json.dumps({"format": "distill.transform_plan", "version": 9}), "plan version 9"),
        "repeated.json": (json.dumps({"format": "distill.transform_plan", "version": 1, "max_size": 100,
                                      "passes": [[400, False], [400, False]]}), "a pass is repeated"),
        "flag.json": (json.dumps({"format": "distill.transform_plan", "version": 1, "max_size": 100,
                                  "passes": [[400, 1]]}), r"a pass is \[shorter side, mirrored\]"),
        "empty.json": (json.dumps({"format": "distill.transform_plan", "version": 1, "max_size": 100,
                                   "passes": []}), "at least one pass"),
    }
    for name, (text, message) in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=message):
            read_plan_file(tmp_path / name)
    assert read_plan_file(tmp_path) == plan  # the folder plan-transforms wrote


# ---- end to end with the tiny exported models ------------------------------------------
@pytest.fixture(scope="module")
def labeled(tmp_path_factory) -> Path:
    """Six small synthetic images with their COCO ground truth."""
    from engine.synth.config import SynthConfig
    from engine.synth.dataset import generate_dataset

    root = tmp_path_factory.mktemp("plan-val")
    return generate_dataset(root, 6, 11, config=SynthConfig(long_side_range=(96, 140)))


def _arguments(exported, labeled: Path, out: Path) -> list[str]:
    return ["plan-transforms", "--detector", str(exported["detect"][0]), "--keypoints", str(exported["keypoints"][0]),
            "--json", str(labeled), "--images", str(labeled.parent / "images"), "--out", str(out),
            "--scales", "96,128", "--max-size", "256", "--score-floor", str(FLOOR), "--max-detections", "8",
            "--budget", "0.6", "--no-progress"]


def test_plan_transforms_writes_a_plan_that_label_runs_exactly(exported, labeled, tmp_path, capsys):
    from engine.label.labeler import LabelSettings
    from engine.label.manifest import RunManifest
    from engine.label.request import Inputs, LabelRequest, Runtime
    from engine.label.run import label
    from tests.engine.conftest import assert_same_records, read_run

    assert main(_arguments(exported, labeled, tmp_path / "plan")) == 0
    printed = capsys.readouterr().out
    assert "6 images, 4 passes (96, 96m, 128, 128m; m = mirrored), 10 subsets tried" in printed
    assert " ident " in printed and "*" in printed and "chosen for budget 0.6" in printed
    tradeoff = json.loads((tmp_path / "plan" / "tradeoff.json").read_text())
    assert len(tradeoff["points"]) == 10 and sum(p["on_path"] for p in tradeoff["points"]) == 4
    assert tradeoff["chosen"]["cost"] <= 0.6 and tradeoff["chosen"]["on_front"]
    assert (tmp_path / "plan" / "front.png").stat().st_size > 0  # matplotlib: the dev setup's `plots` extra
    plan = read_plan_file(tmp_path / "plan" / "plan.json")
    assert [f"{s}{'m' if m else ''}" for s, m in plan.passes] == tradeoff["chosen"]["passes"]

    # The chosen subset scored from the cache is what `distill label --plan` writes.
    with cached_scorer(exported, labeled) as (scorer, full, merge):
        subset = tuple(full.passes.index(p) for p in plan.passes)
        expected = scorer.records(scorer.detections(subset), with_keypoints=True)
    out = tmp_path / "run"
    label(LabelRequest(detector=exported["detect"][0], keypoints=exported["keypoints"][0], out=out,
                       inputs=Inputs(images=labeled.parent / "images"), labeling=LabelSettings(plan, merge),
                       runtime=Runtime(progress=False)))
    records, failures = read_run(out)
    assert not failures
    assert_same_records(records, expected)
    assert RunManifest.load(out).settings.labeling.plan == plan


def test_label_and_plan_transforms_refuse_bad_requests(exported, labeled, tmp_path, capsys):
    plan_file = tmp_path / "plan.json"
    write_plan_file(plan_file, TransformPlan(((96, False),)), {})
    label = ["label", "--detector", str(exported["detect"][0]), "--images", str(labeled.parent / "images"),
             "--out", str(tmp_path / "run"), "--no-progress"]
    cases = [
        (label + ["--plan", str(plan_file), "--scales", "96"], "--plan fixes the passes and the max size: drop --scales"),
        (label + ["--plan", str(plan_file), "--no-flip", "--max-size", "300"], "drop --max-size, --no-flip"),
        (label + ["--plan", str(labeled)], "not a transform plan"),
        (_arguments(exported, labeled, tmp_path / "p") + ["--budget", "0"], "--budget is a fraction"),
        (_arguments(exported, labeled, tmp_path / "p") + ["--budget", "0.01"],
         r"--budget: no subset of the passes fits a budget of 0.01 .*\(the cheapest pass costs 0\.\d+\)$"),
        ([a for a in _arguments(exported, labeled, tmp_path / "p") if a not in ("--keypoints", str(exported["keypoints"][0]))]
         + ["--objective", "keypoints"], "--objective keypoints needs --keypoints, or a --detector whose card "
                                         "declares keypoints"),
        (_arguments(exported, labeled, tmp_path / "p") + ["--json", str(tmp_path / "none.json")],
         r"none\.json does not exist"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and re.search(message, err), err


def test_unreadable_validation_images_are_left_out_and_named(exported, labeled, tmp_path):
    from engine.label.models import make_backend
    from engine.plan.passes import run_passes

    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    image = sorted((labeled.parent / "images").iterdir())[0]
    files = [("broken.jpg", tmp_path / "broken.jpg"), (image.name, image), ("gone.jpg", tmp_path / "gone.jpg")]
    with make_backend(exported["detect"][0], "auto") as detector:
        cache = run_passes(files, detector, TransformPlan.grid((96,), max_size=256), 8, FLOOR, 10**8, progress=False)
    assert cache.names == [image.name] and len(cache.candidates) == 1 and len(cache.candidates[0]) == 2
    assert cache.failures == [("broken.jpg", "not an image (unrecognized format)"), ("gone.jpg", "file not found")]
    assert cache.pixels.shape == (2,) and cache.pixels[0] == cache.pixels[1] > 0  # a mirror costs its original


# ---- a one-stage pose detector, and partial ground truth --------------------------------
def test_partial_labels_ignore_predictions_away_from_labeled_objects():
    """With partial ground truth, a confident prediction where nothing is labeled (an
    unlabeled person, perhaps) is left out of the scoring; a duplicate of a labeled
    object still counts false."""
    from engine.coco.evaluate import score_labels
    from engine.plan.scoring import near_labeled_objects

    gt = _ground_truth(images=1)
    labeled = gt.loadAnns(gt.getAnnIds())
    x, y, w, h = labeled[0]["bbox"]

    def labels(*predictions):
        return {"images": [{"id": 1, "file_name": "im0.jpg", "width": 120, "height": 120}],
                "annotations": [{"id": i, "image_id": 1, "category_id": labeled[0]["category_id"], "bbox": box,
                                 "score": score, "area": box[2] * box[3], "iscrowd": 0}
                                for i, (box, score) in enumerate(predictions, 1)]}

    exact, away = [x, y, w, h], [x + 200, y + 200, w, h]
    duplicate = [x + 0.15 * w, y, w, h]  # IoU 0.74 with the labeled box
    found_after_a_stranger = labels((exact, 0.8), (away, 0.9))
    assert len(near_labeled_objects(found_after_a_stranger, gt)["annotations"]) == 1
    assert score_labels(gt, near_labeled_objects(found_after_a_stranger, gt))["box_AP"] > \
        score_labels(gt, found_after_a_stranger)["box_AP"]
    with_a_duplicate = labels((exact, 0.8), (duplicate, 0.9))
    assert near_labeled_objects(with_a_duplicate, gt) == with_a_duplicate


@pytest.fixture(scope="module")
def one_stage(tmp_path_factory) -> tuple[Path, Path]:
    """(an imported one-stage pose teacher, the COCO file of three images in its folder
    `images`), its random graph's third class named person (as in the import tests)."""
    import cv2

    from engine.coco.schema import KEYPOINT_NAMES, SKELETON
    from tests.export.importers import graphs
    from tests.export.importers.test_import import save, smooth_image

    root = tmp_path_factory.mktemp("one-stage")
    model = graphs.ultralytics_graph(pose=True)
    for prop in model.metadata_props:
        if prop.key == "names":
            prop.value = repr({0: "car", 1: "bicycle", 2: "person", 3: "motorcycle"})
    teacher = root / "teacher.onnx"
    assert main(["import", "ultralytics", "--onnx", str(save(model, root / "pose.onnx")), "--out", str(teacher)]) == 0
    (root / "images").mkdir()
    images, annotations = [], []
    rng = np.random.default_rng(3)
    for i, (h, w) in enumerate([(150, 230), (210, 140), (160, 160)], 1):
        cv2.imwrite(str(root / "images" / f"im{i}.png"), smooth_image(h, w, i)[:, :, ::-1])
        images.append({"id": i, "file_name": f"im{i}.png", "width": w, "height": h})
        x, y = rng.uniform(0, 40, 2)
        points = np.stack([rng.uniform(x, x + 60, 17), rng.uniform(y, y + 90, 17), np.full(17, 2.0)], axis=1)
        annotations.append({"id": i, "image_id": i, "category_id": 1, "bbox": [x, y, 60.0, 90.0], "area": 5400.0,
                            "iscrowd": 0, "keypoints": points.reshape(-1).tolist(), "num_keypoints": 17})
    images.append({"id": 4, "file_name": "unlabeled.png", "width": 160, "height": 160})  # for --partial-labels
    cv2.imwrite(str(root / "images" / "unlabeled.png"), smooth_image(160, 160, 9)[:, :, ::-1])
    categories = [{"id": 1, "name": "person", "keypoints": list(KEYPOINT_NAMES), "skeleton": [list(s) for s in SKELETON]},
                  {"id": 2, "name": "bicycle"}, {"id": 3, "name": "car"}, {"id": 4, "name": "motorcycle"}]
    labels = root / "val.json"
    labels.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return teacher, labels


def test_keypoint_objective_with_a_one_stage_detector_and_no_keypoint_model(one_stage, tmp_path, capsys):
    """--objective keypoints without --keypoints: the detector's own voted keypoints are
    scored for every subset, and `distill label --plan` writes exactly the records the
    chosen subset was scored on; --partial-labels leaves out the unannotated image."""
    from engine.label.models import make_backend, one_stage_person_label
    from engine.plan.cli import _ground_truth
    from engine.plan.passes import run_passes
    from tests.engine.conftest import assert_same_records, read_run

    teacher, labels = one_stage
    images = labels.parent / "images"
    argv = ["plan-transforms", "--detector", str(teacher), "--json", str(labels), "--images", str(images),
            "--out", str(tmp_path / "plan"), "--scales", "128,160", "--max-size", "400", "--budget", "0.6",
            "--objective", "keypoints", "--partial-labels", "--no-progress"]
    assert main(argv) == 0
    assert "3 images, 4 passes (128, 128m, 160, 160m; m = mirrored), 10 subsets tried" in capsys.readouterr().out
    tradeoff = json.loads((tmp_path / "plan" / "tradeoff.json").read_text())
    assert all(p["keypoint_AP"] is not None for p in tradeoff["points"])
    assert tradeoff["identity"]["keypoint_AP"] is not None and tradeoff["settings"]["partial_labels"]
    plan = read_plan_file(tmp_path / "plan")

    merge = MergeSettings()
    gt, files = _ground_truth(labels, images, None, annotated_only=True)
    full = TransformPlan.grid((128, 160), max_size=400)
    with make_backend(teacher, "auto") as detector:
        cache = run_passes(files, detector, full, 8, merge.score_floor, 10**8, progress=False)
        scorer = SubsetScorer(cache, gt, detector.card, merge, None, 1,
                              one_stage_person=one_stage_person_label(detector.card), partial=True)
        subset = tuple(full.passes.index(p) for p in plan.passes)
        expected = scorer.records(scorer.detections(subset), with_keypoints=True)
        assert scorer.score(subset, with_keypoints=True).keypoint_AP == tradeoff["chosen"]["keypoint_AP"]
    assert any("keypoints" in d for r in expected for d in r["detections"])
    (tmp_path / "list.txt").write_text("".join(f"{images / name}\n" for name, _ in files))
    assert main(["label", "--detector", str(teacher), "--list", str(tmp_path / "list.txt"), "--plan",
                 str(tmp_path / "plan"), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    records, failures = read_run(tmp_path / "run")
    assert not failures
    assert_same_records([{**r, "file_name": Path(r["file_name"]).name} for r in records], expected)

