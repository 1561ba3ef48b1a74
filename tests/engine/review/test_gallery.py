"""`distill gallery` (engine/review): matching against hand-computed cases, the drawing,
the sampled and paged site, every link resolving on disk, unreadable images, the
almost-labels band, the plots with and without matplotlib, the errors, and the index
and a category page rendered by headless Chromium.

The label set is made from a tiny synthetic dataset (engine/synth): its ground truth,
slightly shifted, with every fifth instance dropped (missed), a false box on every other
image, one image left without labels, one unreadable file and one missing file; the
labeling run beside it holds the labels plus predictions under the thresholds.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import cv2
import numpy as np
import pytest

from engine.cli import main
from engine.coco.geometry import box_iou, xywh_to_xyxy
from engine.coco.read import load_coco
from engine.errors import UserError
from engine.review.draw import (CENTRE, FALSE_COLOR, LEFT, MISSED_COLOR, RIGHT, Job, Mark, make_style,
                                write_thumbnails)
from engine.review.match import FALSE, IGNORED, TRUE, match_boxes, match_labels
from engine.review.read import PLOT_BINS, score_bin
from engine.review.sample import sample_ids
from engine.synth.dataset import coco_categories, generate_dataset
from tests.conftest import REPO_ROOT, assert_cli_error
from tests.engine.conftest import write_run

THRESHOLD, KEYPOINT_THRESHOLD = 0.5, 0.3
IMAGES = 10


# ---- matching: hand-computed cases ------------------------------------------------------
def test_match_boxes_hand_cases():
    # IoU exactly 0.5 matches ([0,0,10,5] covers half of [0,0,10,10]); just under does not.
    state, hit = match_boxes([[0, 0, 10, 5]], [0.9], [[0, 0, 10, 10]], [False])
    assert state.tolist() == [TRUE] and hit.tolist() == [True]
    state, hit = match_boxes([[0, 0, 10, 4.9]], [0.9], [[0, 0, 10, 10]], [False])
    assert state.tolist() == [FALSE] and hit.tolist() == [False]
    # Two labels on one GT box: the higher score takes it, whatever the IoU.
    state, _ = match_boxes([[0, 0, 10, 10], [1, 0, 10, 10]], [0.6, 0.8], [[0, 0, 10, 10]], [False])
    assert state.tolist() == [FALSE, TRUE]
    # Greedy, not optimal: A (0.9) overlaps G1 (IoU 7/13) and G2 (9/11), takes G2; B (0.8)
    # overlaps only G2 (7/13; G1 3/17) and is left false, although A->G1, B->G2 would match both.
    boxes = np.array([[0, 0, 10, 10], [4, 0, 10, 10]], float)
    gt = np.array([[-3, 0, 10, 10], [1, 0, 10, 10]], float)
    np.testing.assert_allclose(box_iou(xywh_to_xyxy(boxes), xywh_to_xyxy(gt)), [[7 / 13, 9 / 11], [3 / 17, 7 / 13]])
    before = boxes.copy(), gt.copy()
    state, hit = match_boxes(boxes, [0.9, 0.8], gt, [False, False])
    assert state.tolist() == [TRUE, FALSE] and hit.tolist() == [False, True]
    np.testing.assert_array_equal(boxes, before[0])  # inputs untouched
    np.testing.assert_array_equal(gt, before[1])
    # A crowd region: a label inside it is ignored; the region is never matched.
    state, hit = match_boxes([[10, 10, 5, 5], [80, 80, 5, 5]], [0.9, 0.9], [[0, 0, 40, 40]], [True])
    assert state.tolist() == [IGNORED, FALSE] and hit.tolist() == [False]
    # Nothing on one side.
    assert match_boxes(np.zeros((0, 4)), [], [[0, 0, 1, 1]], [False])[1].tolist() == [False]
    assert match_boxes([[0, 0, 1, 1]], [1.0], np.zeros((0, 4)), [])[0].tolist() == [FALSE]


def test_match_labels_counts_per_category():
    person, kite = 1, 38
    labels = {
        1: [{"category_id": person, "bbox": [0, 0, 10, 10], "score": 0.9},   # right
            {"category_id": person, "bbox": [0, 0, 10, 10], "score": 0.7},   # duplicate: false
            {"category_id": kite, "bbox": [0, 0, 10, 10], "score": 0.8},     # wrong category: false
            {"category_id": kite, "bbox": [52, 52, 4, 4], "score": 0.6}],    # in a crowd: ignored
        2: [],
        3: [{"category_id": kite, "bbox": [5, 5, 5, 5]}],                    # no score, no GT image
    }
    gt = {
        1: [{"category_id": person, "bbox": [0, 0, 10, 10]},
            {"category_id": person, "bbox": [30, 30, 10, 10]},               # missed
            {"category_id": kite, "bbox": [50, 50, 20, 20], "iscrowd": 1}],  # crowd: never missed
        2: [{"category_id": kite, "bbox": [0, 0, 10, 10]}],                  # missed
    }
    counts, images = match_labels(labels, gt, [person, kite, 72])
    assert (counts[person].true, counts[person].false, counts[person].gt) == (1, 1, 2)
    assert (counts[kite].true, counts[kite].false, counts[kite].gt) == (0, 1, 1)
    assert counts[person].precision == 0.5 and counts[person].recall == 0.5
    assert counts[kite].precision == 0.0 and counts[kite].recall == 0.0
    assert counts[72].precision is None and counts[72].recall is None  # nothing either side
    assert images[1].states == [TRUE, FALSE, FALSE, IGNORED]
    assert [g["bbox"] for g in images[1].missed] == [[30, 30, 10, 10]]
    assert images[2].states == [] and len(images[2].missed) == 1
    assert 3 not in images  # images without ground truth are not scored


# ---- drawing ------------------------------------------------------------------------------
def pixels_of(image: np.ndarray, color) -> int:
    return int(np.all(np.abs(image.astype(int) - color) <= 8, axis=2).sum())


def test_marks_use_their_colours(tmp_path):
    from engine.review.draw import draw_marks

    categories = coco_categories()
    style = make_style(categories)
    # a standing person: left joints at x=60, right at x=40, nose in the middle
    keypoints = []
    for name in categories[0]["keypoints"]:
        x = 50 if name == "nose" else 60 if name.startswith("left") else 40
        keypoints += [x, 20 + 4 * len(keypoints) // 3, 2]
    image = np.zeros((120, 120, 3), np.uint8)
    draw_marks(image, [Mark("label", (30, 10, 40, 100), 1, "", tuple(keypoints))], style, 1.0, 1.0)
    for color in (style.colors[1], LEFT, RIGHT, CENTRE):
        assert pixels_of(image, color) > 5, color
    image = np.zeros((120, 120, 3), np.uint8)
    draw_marks(image, [Mark("false", (10, 10, 30, 30), 13, "false"), Mark("missed", (60, 60, 40, 40), 13, "missed")],
               style, 1.0, 1.0)
    assert pixels_of(image, FALSE_COLOR) > 50 and pixels_of(image, MISSED_COLOR) > 50
    assert pixels_of(image, style.colors[13]) == 0


def test_thumbnails_are_the_same_with_any_number_of_workers(tmp_path):
    source = tmp_path / "a.png"
    cv2.imwrite(str(source), np.random.default_rng(0).integers(0, 255, (90, 160, 3), np.uint8))
    style = make_style(coco_categories())
    outputs = {}
    for workers in (1, 3):
        folder = tmp_path / str(workers)
        folder.mkdir()
        jobs = [Job(source, folder / f"{i}.jpg", 160, 90, [Mark("label", (i, i, 20, 20), 13, f"{i}")])
                for i in range(6)]
        jobs.append(Job(tmp_path / "missing.jpg", folder / "missing.jpg", 160, 90, []))
        failures = write_thumbnails(jobs, style, workers, progress=False)
        assert failures == {tmp_path / "missing.jpg": "file not found"}
        outputs[workers] = [job.target.read_bytes() for job in jobs]
    assert outputs[1] == outputs[3]
    thumb = cv2.imread(str(tmp_path / "1" / "0.jpg"))
    assert thumb.shape == (180, 320, 3)  # enlarged 2x, the most MAX_UPSCALE allows
    assert cv2.imread(str(tmp_path / "1" / "missing.jpg")).shape == (180, 320, 3)  # placeholder


def test_sample_is_seeded_and_capped():
    total, chosen = sample_ids(range(100), 10, seed=0, key="category-1")
    assert total == 100 and len(chosen) == 10 and chosen == sorted(chosen)
    assert sample_ids(reversed(range(100)), 10, seed=0, key="category-1")[1] == chosen  # input order: no matter
    assert sample_ids(range(100), 10, seed=1, key="category-1")[1] != chosen
    assert sample_ids(range(100), 10, seed=0, key="category-2")[1] != chosen
    assert sample_ids(range(5), 10, seed=0, key="x") == (5, [0, 1, 2, 3, 4])


def test_score_bins_are_exact_on_the_grid():
    assert [score_bin(s) for s in (0.0, 0.123, 0.12399, 0.999, 1.0, 1.7, -0.2)] == [0, 123, 123, 999, 999, 999, 0]
    assert PLOT_BINS == 1000


# ---- a synthetic label set, its run and its gallery ------------------------------------------------
def make_case(root: Path) -> dict:
    """Synthetic images + GT, labels derived from the GT, a labeling run; see the module docstring."""
    gt_path = generate_dataset(root / "data", IMAGES, seed=5)
    images = root / "data" / "images"
    gt = json.loads(gt_path.read_text())
    categories = coco_categories()
    labels, records = [], []
    instances = [a for a in gt["annotations"] if not a["iscrowd"]]
    for k, a in enumerate(instances):
        if k % 5 == 4 or a["image_id"] == IMAGES or a["category_id"] == 72:
            continue  # missed; the last image gets no label; tv gets none at all
        x, y, w, h = a["bbox"]
        label = {"id": len(labels) + 1, "image_id": a["image_id"], "category_id": a["category_id"],
                 "bbox": [x + 0.05 * w, y, w, h], "area": w * h, "iscrowd": 0,
                 "score": round(0.55 + 0.04 * (k % 10), 5)}
        if "keypoints" in a:
            triplets = np.reshape(a["keypoints"], (-1, 3))
            label["keypoints"] = [v for px, py, vis in triplets.tolist() for v in ((px, py, 2) if vis else (0, 0, 0))]
            label["num_keypoints"] = int((triplets[:, 2] > 0).sum())
            label["keypoint_scores"] = [0.9 if vis else 0.1 for vis in triplets[:, 2].tolist()]
        labels.append(label)
    for image in gt["images"][:-1:2]:  # a 4x4 box, IoU < 0.5 with any GT object: false
        labels.append({"id": len(labels) + 1, "image_id": image["id"], "category_id": 13, "bbox": [0, 0, 4, 4],
                       "area": 16, "iscrowd": 0, "score": 0.6})
    label_images = [dict(i) for i in gt["images"]]
    for name, content in (("broken #1.jpg", b"not an image at all"), ("gone.jpg", None)):
        image_id = len(label_images) + 1
        label_images.append({"id": image_id, "file_name": name, "width": 100, "height": 80})
        labels.append({"id": len(labels) + 1, "image_id": image_id, "category_id": 38, "bbox": [10, 10, 30, 30],
                       "area": 900, "iscrowd": 0, "score": 0.99})
        if content is not None:
            (images / name).write_bytes(content)
    for image in label_images:
        detections = [{"bbox": a["bbox"], "score": a["score"], "category_id": a["category_id"],
                       **({"keypoints": [v for i, (px, py, _) in enumerate(np.reshape(a["keypoints"], (-1, 3)).tolist())
                                         for v in (px, py, a["keypoint_scores"][i])]} if "keypoints" in a else {})}
                      for a in labels if a["image_id"] == image["id"]]
        w, h = image["width"], image["height"]
        person = [v for j in range(17) for v in (w * 0.3 + j, h * 0.2 + 3 * j, 0.2 + 0.04 * j)]
        detections += [  # just under the threshold (almost-labels) and far under it (not)
            {"bbox": [w * 0.2, h * 0.2, w * 0.3, h * 0.4], "score": 0.45, "category_id": 37},
            {"bbox": [w * 0.25, h * 0.15, w * 0.3, h * 0.7], "score": 0.42, "category_id": 1, "keypoints": person},
            {"bbox": [w * 0.5, h * 0.5, w * 0.2, h * 0.2], "score": 0.2, "category_id": 38}]
        records.append({"file_name": image["file_name"], "width": w, "height": h, "detections": detections})
    run = write_run(root / "run", records, categories, shard_size=5)
    rows = {str(c["id"]): {"name": c["name"], "labeled_per_image": 1.5, "threshold": THRESHOLD, "count": 0,
                           "generated_per_image": 0.0} for c in categories}
    rows["72"]["threshold"] = None  # the calibrated rule gave tv no threshold: no labels, no almost-labels
    info = {"description": "test labels", "thresholds": {
        "rule": "calibrated", "labeled": "labeled.json", "categories": rows,
        "keypoint": {"labeled_mean_visible": 12.5, "threshold": KEYPOINT_THRESHOLD, "generated_mean_visible": 13.0}}}
    labels_path = root / "labels.json"
    labels_path.write_text(json.dumps({"info": info, "images": label_images, "annotations": labels,
                                       "categories": categories}))
    return {"root": root, "labels": labels_path, "images": images, "gt": gt_path, "run": run,
            "records": records, "label_list": labels}


def gallery(case: dict, out: Path, *extra: str) -> int:
    return main(["gallery", "--labels", str(case["labels"]), "--images", str(case["images"]), "--out", str(out),
                 *extra])


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict:
    case = make_case(tmp_path_factory.mktemp("gallery-case"))
    case["out"] = case["root"] / "gallery"
    assert gallery(case, case["out"], "--gt", str(case["gt"]), "--predictions", str(case["run"]),
                   "--sample", "5", "--per-page", "2", "--workers", "2") == 0
    return case


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("href", "src"):
                self.links.append((tag, value))


def parse(page: Path) -> Links:
    parser = Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def figures(page: Path) -> list[str]:
    """The thumbnails of a page, in order."""
    return [v for tag, v in parse(page).links if tag == "img" and v.startswith("thumbs/")]


def test_every_link_resolves_and_nothing_is_remote(case):
    pages = sorted(case["out"].glob("*.html"))
    assert len(pages) > 10
    for page in pages:
        parser = parse(page)
        assert "script" not in parser.tags, page.name
        for tag, value in parser.links:
            parsed = urlparse(value)
            assert not parsed.scheme and not parsed.netloc and not value.startswith("/"), (page.name, value)
            assert (page.parent / unquote(parsed.path)).is_file(), (page.name, value)
    index = (case["out"] / "index.html").read_text()
    linked = {v for _, v in parse(case["out"] / "index.html").links}
    assert {"category-1-1.html", "unlabeled-1.html", "almost-37-1.html", "plots/category-1.png",
            "plots/keypoints-1.png", "unreadable.txt"} <= linked
    assert "thumbs/" not in index and "synth_000001.jpg" not in index  # the index lists no image


def test_pages_are_sampled_and_paged(case):
    labels = load_coco(case["labels"])
    with_person = {i for i, anns in labels.annotations.items() if any(a["category_id"] == 1 for a in anns)}
    assert len(with_person) > 5  # the sample below is a real sample
    pages = sorted(case["out"].glob("category-1-*.html"))
    assert len(pages) == math.ceil(5 / 2)
    thumbs = [t for page in pages for t in figures(page)]
    assert [len(figures(p)) for p in pages] == [2, 2, 1]
    assert len(set(thumbs)) == 5 and {int(Path(t).stem) for t in thumbs} <= with_person
    assert f"a random sample of 5 of {len(with_person)} images (seed 0)" in pages[0].read_text()
    unlabeled = figures(case["out"] / "unlabeled-1.html")
    assert unlabeled == [f"thumbs/{IMAGES}.jpg"]  # the one image left without labels
    assert "No image." in (case["out"] / "category-72-1.html").read_text()  # tv has no labels


def test_index_reports_thresholds_precision_and_recall(case):
    labels = load_coco(case["labels"])
    gt = json.loads(case["gt"].read_text())
    by_image = {i["id"]: [] for i in gt["images"]}
    for a in gt["annotations"]:
        by_image[a["image_id"]].append(a)
    counts, _ = match_labels(labels.annotations, by_image, list(labels.categories))
    index = (case["out"] / "index.html").read_text()
    row = re.search(r"<tr><td><a href=\"category-1-1.html\">1 person</a></td>(.*?)</tr>", index).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row)
    person = counts[1]
    # labels, images, labels/image, labeled set/image, threshold, GT, precision, recall, almost
    assert cells[3:8] == ["1.500", "0.50000", str(person.gt), f"{person.precision:.3f}", f"{person.recall:.3f}"]
    assert person.precision == 1.0 and 0.6 < person.recall < 1.0  # 1 in 5 dropped; no false person
    assert counts[13].false == IMAGES // 2  # the 4x4 boxes
    assert "Calibrated rule on labeled.json" in index and "threshold 0.30000" in index


def test_false_and_missed_labels_are_drawn(case):
    labels = load_coco(case["labels"])
    image_id = 1  # has a false 4x4 stop sign at the corner, drawn red
    thumb = cv2.imread(str(case["out"] / "thumbs" / f"{image_id}.jpg")).astype(int)
    corner = thumb[:20, :80]  # the box and its "false" text; JPEG dulls a thin red line, hence "reddish"
    b, g, r = corner[..., 0], corner[..., 1], corner[..., 2]
    assert ((r > 100) & (r > 2 * g) & (r > 2 * b)).sum() > 20
    page = next(p for p in case["out"].glob("category-13-*.html") if f"thumbs/{image_id}.jpg" in figures(p))
    assert "false, " in page.read_text() and labels.images[image_id]["file_name"] in page.read_text()


def test_unreadable_and_missing_images_get_placeholders(case):
    unreadable = (case["out"] / "unreadable.txt").read_text().splitlines()
    assert sorted(Path(line.split("\t")[0]).name for line in unreadable) == ["broken #1.jpg", "gone.jpg"]
    assert any(line.endswith("\tnot an image (unrecognized format)") for line in unreadable)
    labels = load_coco(case["labels"])
    for name in ("broken #1.jpg", "gone.jpg"):
        thumb = case["out"] / "thumbs" / f"{labels.ids_by_file[name]}.jpg"
        assert cv2.imread(str(thumb)).shape[:2] == (160, 200)  # 100x80 enlarged 2x, grey placeholder
    page = next(p for p in case["out"].glob("category-38-*.html") if "gone.jpg" in p.read_text())
    text = page.read_text()
    assert "unreadable: file not found" in text
    assert 'href="../data/images/gone.jpg"' not in text  # a missing original gets no link
    index = (case["out"] / "index.html").read_text()
    assert "<td>unreadable images</td><td>2</td>" in index and "broken #1.jpg" in index


def test_almost_labels_are_the_predictions_just_under_the_threshold(case):
    page = (case["out"] / "almost-37-1.html").read_text()
    captions = " ".join(re.findall(r"<figcaption>(.*?)</figcaption>", page))
    assert "sports ball 0.450 (threshold 0.500)" in captions and "person" not in captions
    assert "thumbs/almost-37-" in page
    assert "person 0.420 (threshold 0.500)" in (case["out"] / "almost-1-1.html").read_text()
    assert "0.200" not in page  # kite 0.2 is far under 0.5 - 0.1
    assert "No image." in (case["out"] / "almost-38-1.html").read_text()
    assert "No image." in (case["out"] / "almost-72-1.html").read_text()  # tv has no threshold
    index = (case["out"] / "index.html").read_text()
    readable = sum(1 for r in case["records"])
    assert f'<a href="almost-37-1.html">{readable}</a>' in index


def test_plots_are_written_and_embedded(case):
    from engine.review.plots import instance_curves
    from engine.review.read import category_thresholds, read_predictions

    plots = sorted(p.name for p in (case["out"] / "plots").glob("*.png"))
    assert plots == sorted([f"category-{c['id']}.png" for c in coco_categories()] + ["keypoints-1.png"])
    assert 'src="plots/category-1.png"' in (case["out"] / "category-1-1.html").read_text()
    labels = load_coco(case["labels"])
    thresholds = category_thresholds(labels)
    near = read_predictions(case["run"], labels, thresholds, 0.1)
    curve = next(c for c in instance_curves(labels, thresholds, near) if c.category_id == 38)
    scores = [d["score"] for r in case["records"] for d in r["detections"] if d["category_id"] == 38]
    for t in (0.0, 0.2, 0.201, 0.5, 0.99):
        k = round(t * PLOT_BINS)
        assert curve.per_image[k] == sum(s >= t for s in scores) / len(case["records"])
    from_labels = next(c for c in instance_curves(labels, thresholds, None) if c.category_id == 38)
    assert from_labels.source == "labels" and from_labels.grid[0] == THRESHOLD  # labels exist above it only


def test_rebuild_with_band_seed_and_without_matplotlib(case, monkeypatch, capsys):
    out = case["root"] / "gallery-2"
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.ticker"):  # as without the plots extra
        monkeypatch.setitem(sys.modules, name, None)
    assert gallery(case, out, "--predictions", str(case["run"]), "--sample", "3", "--per-page", "50",
                   "--band", "0.4", "--seed", "1", "--workers", "1") == 0
    settings = json.loads((out / "gallery.json").read_text())["settings"]
    assert (settings["band"], settings["seed"], settings["sample"], settings["per_page"], settings["workers"]) == \
        (0.4, 1, 3, 50, 1)
    printed = capsys.readouterr().out
    assert "plots skipped: matplotlib is not installed" in printed
    index = (out / "index.html").read_text()
    assert "Plots skipped: matplotlib is not installed" in index and not (out / "plots").exists()
    assert f'<a href="almost-38-1.html">{len(case["records"])}</a>' in index  # 0.2 >= 0.5 - 0.4
    first = figures(out / "category-1-1.html")
    assert len(first) == 3 and not (out / "category-1-2.html").exists()
    # rebuilt in place with another seed: another sample, the old pages gone
    (out / "category-1-9.html").write_text("stale")
    assert gallery(case, out, "--sample", "3", "--per-page", "2", "--seed", "2") == 0
    assert not (out / "category-1-9.html").exists() and not list(out.glob("almost-*"))
    again = figures(out / "category-1-1.html") + figures(out / "category-1-2.html")
    assert len(again) == 3 and again != first
    assert json.loads((out / "gallery.json").read_text())["settings"]["predictions"] is None


# ---- errors: one line, exit status 2 ------------------------------------------------------------
def assert_error(capsys, code: int, *fragments: str) -> None:
    assert_cli_error(capsys, code, "gallery", *fragments)


def test_errors(case, tmp_path, capsys):
    labels, images, out = str(case["labels"]), str(case["images"]), str(tmp_path / "g")

    def run(*args: str, labels: str = labels, images: str = images, out: str = out) -> int:
        return main(["gallery", "--labels", labels, "--images", images, "--out", out, *args])

    def write(name: str, content) -> str:
        (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))
        return str(tmp_path / name)

    image = {"id": 1, "file_name": "a.jpg", "width": 9, "height": 9}
    person = {"id": 1, "name": "person"}
    assert_error(capsys, run(labels=str(tmp_path / "no.json")), "no.json does not exist")
    assert_error(capsys, run(labels=write("bad.json", "{not json")), "cannot read", "bad.json")
    assert_error(capsys, run(labels=write("list.json", [1])), "not a JSON object but a list")
    orphan = {"images": [image], "categories": [person],
              "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}]}
    assert_error(capsys, run(labels=write("orphan.json", orphan)),
                 "orphan.json: annotation 1 refers to image 2, which is not in 'images'")
    assert_error(capsys, run(images=str(tmp_path / "nowhere")), "--images", "does not exist")
    assert_error(capsys, run(images=labels), "is not a folder")
    assert_error(capsys, run(out=labels), "exists and is a file")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert_error(capsys, run(out=str(tmp_path / "busy")), "holds no gallery")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    for flag, value in (("--sample", "0"), ("--per-page", "0"), ("--workers", "0"), ("--band", "0"), ("--band", "1.5")):
        assert_error(capsys, run(flag, value), flag)
    assert_error(capsys, run("--predictions", str(tmp_path)), "holds no labeling run")
    other = write("other.json", {"images": [image], "annotations": [], "categories": [person]})
    assert_error(capsys, run("--gt", other), "shares no file_name", "'a.jpg'")
    renamed = write("renamed.json", {"images": [image], "annotations": [], "categories": [{"id": 1, "name": "dog"}]})
    assert_error(capsys, run("--gt", renamed), "renamed.json is from another label set",
                 "1 is 'person' in the labels, 'dog' in the ground truth")
    data = json.loads(case["labels"].read_text())
    del data["info"]
    assert_error(capsys, run("--predictions", str(case["run"]), labels=write("plain.json", data)),
                 "records no thresholds")
    (tmp_path / "empty").mkdir()
    assert_error(capsys, run(images=str(tmp_path / "empty")), "holds none of the", "is it the folder")
    assert not (tmp_path / "g").exists()  # every check comes before the first write
    with pytest.raises(UserError):
        load_coco(tmp_path / "list.json")


def test_importing_the_gallery_does_not_import_matplotlib():
    code = ("import sys, engine.cli, engine.review.build; engine.cli.build_parser(); "
            "sys.exit('matplotlib' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT).returncode == 0


# ---- headless Chromium ----------------------------------------------------------------------------
def chromium() -> str:
    """The Chromium binary; installed with apt-get where absent and possible (within
    about 8 minutes, under pytest's 10-minute timeout), else a skip that says why."""
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    deadline = time.monotonic() + 480
    install = ["apt-get", "install", "-y", "-q", "chromium"]
    result = None
    try:
        for command in (install, ["apt-get", "update", "-q"], install):  # update only if needed
            result = subprocess.run(command, env=env, capture_output=True, text=True,
                                    timeout=max(1.0, deadline - time.monotonic()))
            if command is install and result.returncode == 0:
                break
    except subprocess.TimeoutExpired:
        pytest.skip("chromium could not be installed: apt-get took too long")
    if not shutil.which("chromium"):
        last = (result.stderr.strip().splitlines() or ["no output"])[-1] if result else "not run"
        pytest.skip(f"chromium could not be installed: {last}")
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium_binary() -> str:
    return chromium()


def render(binary: str, page: Path, screenshot: Path) -> str:
    """Screenshot `page` into `screenshot`; return its DOM after rendering."""
    return subprocess.run([binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1280,1600", "--virtual-time-budget=3000", f"--screenshot={screenshot}",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60, check=True).stdout


def test_chromium_renders_the_index_and_a_category_page(case, chromium_binary, tmp_path_factory):
    shots = tmp_path_factory.mktemp("screenshots")
    for page, heading, shown in (("index.html", "Labels: labels.json", 1), ("category-1-1.html", "person", 2)):
        source = (case["out"] / page).read_text()
        screenshot = shots / page.replace(".html", ".png")
        dom = render(chromium_binary, case["out"] / page, screenshot)
        print(f"screenshot: {screenshot}")
        assert f"<h1>{heading}</h1>" in dom
        assert dom.count("<img ") == source.count("<img ") > 0
        shot = cv2.imread(str(screenshot))
        assert shot is not None and shot.shape[:2] == (1600, 1280)
        # The first images of the page (a plot; on a category page also the first
        # thumbnail) are drawn at their own size near the top: each must be found in
        # the screenshot pixel for pixel, which fails for a broken or missing image.
        for src in [v for tag, v in parse(case["out"] / page).links if tag == "img"][:shown]:
            image = cv2.imread(str(case["out"] / src))
            found = cv2.matchTemplate(shot, image, cv2.TM_CCOEFF_NORMED).max()
            assert found > 0.9, (page, src, found)
