"""`distill select --shards`: one COCO file per labeling shard, an index and offset tables.

The acceptance test is that the shards, concatenated, are the single file: the same
images, labels and thresholds. The reader (`ShardedLabels`) is checked entry by entry
against the same single file.
"""

from __future__ import annotations

import json
import weakref

import numpy as np
import pytest
from pycocotools.coco import COCO

from engine.cli import main
from engine.errors import UserError
from engine.select.sharded import FORMAT, ShardedLabels, is_sharded
from tests.conftest import assert_cli_error
from tests.engine.conftest import write_run
from tests.engine.select.test_select_calibrated import RUN_CATEGORIES, make_records, write_labeled

SHARD = 16


@pytest.fixture
def case(tmp_path):
    records = make_records(np.random.default_rng(7), 45)  # 16 + 16 + 13
    return {"run": write_run(tmp_path / "run", records, RUN_CATEGORIES, shard_size=SHARD), "records": records,
            "labeled": tmp_path / "labeled.json", "single": tmp_path / "pseudo.json", "sharded": tmp_path / "pseudo",
            "tmp": tmp_path, "_": write_labeled(tmp_path / "labeled.json")}


def select(case, out, *extra: str) -> int:
    return main(["select", "--predictions", str(case["run"]), "--out", str(out), *extra])


def without_date(info: dict) -> dict:
    return {k: v for k, v in info.items() if k != "date_created"}


@pytest.mark.parametrize("rule", [["--labeled"], ["--threshold", "0.4", "--keypoint-threshold", "0.3"]])
def test_sharded_output_concatenated_is_the_single_file(case, rule):
    rule = [*rule, str(case["labeled"])] if rule == ["--labeled"] else rule
    assert select(case, case["single"], *rule) == 0
    assert select(case, case["sharded"], *rule, "--shards") == 0
    single = json.loads(case["single"].read_text())
    index = json.loads((case["sharded"] / "index.json").read_text())
    assert index["format"] == FORMAT
    assert without_date(index["info"]) == without_date(single["info"])
    assert index["categories"] == single["categories"]
    assert (index["images"], index["annotations"]) == (len(single["images"]), len(single["annotations"]))
    assert [s["images"] for s in index["shards"]] == [16, 16, 13]

    images, annotations = [], []
    for shard in index["shards"]:
        path = case["sharded"] / shard["file"]
        part = json.loads(path.read_text())
        assert len(COCO(str(path)).getImgIds()) == shard["images"]  # each shard is a COCO file of its own
        assert part["categories"] == single["categories"]
        assert len(part["annotations"]) == shard["annotations"]
        images += part["images"]
        annotations += part["annotations"]
    assert images == single["images"]
    assert annotations == single["annotations"]
    assert len(annotations) > 0

    labels = ShardedLabels.open(case["sharded"])
    assert without_date(labels.info) == without_date(single["info"])
    assert labels.to_coco()["annotations"] == single["annotations"]


def test_the_reader_finds_every_entry_through_the_tables(case):
    assert select(case, case["single"], "--labeled", str(case["labeled"])) == 0
    assert select(case, case["sharded"], "--labeled", str(case["labeled"]), "--shards") == 0
    single = json.loads(case["single"].read_text())
    by_image = {image["id"]: [] for image in single["images"]}
    for annotation in single["annotations"]:
        by_image[annotation["image_id"]].append(annotation)
    link = case["tmp"] / "generated.json"  # as the loop links it (Makefile, SHARDS_ABOVE)
    link.symlink_to(case["sharded"].relative_to(case["tmp"]) / "index.json")
    for path in (case["sharded"], case["sharded"] / "index.json", link):
        labels = ShardedLabels.open(path)
        assert is_sharded(path)
        rows = labels.image_rows(0, labels.images)
        np.testing.assert_array_equal(rows["id"], np.arange(1, labels.images + 1))
        for row, image in enumerate(single["images"]):
            assert labels.image(row) == image
            assert labels.image_annotations(row) == by_image[image["id"]]
        table = np.concatenate([chunk for _, chunk in labels.iter_annotation_rows(chunk=7)])
        for row, annotation in enumerate(single["annotations"]):
            assert labels.annotation(row) == (annotation, single["images"][annotation["image_id"] - 1])
            entry = table[row]
            assert (entry["id"], entry["category_id"], entry["iscrowd"]) == (annotation["id"],
                                                                             annotation["category_id"], 0)
            assert entry["num_keypoints"] == annotation.get("num_keypoints", -1)
            assert (entry["width"], entry["height"]) == tuple(annotation["bbox"][2:])
            assert rows[entry["image"]]["id"] == annotation["image_id"]
    assert not is_sharded(case["single"])


def test_sharded_select_holds_one_shard_of_labels(case, monkeypatch):
    """When a shard is written, no label of an earlier shard is alive."""
    import engine.select.cli as cli
    from engine.select.coco import LabelMaker
    from engine.select.sharded import ShardedLabelsWriter

    class Label(dict):  # a dict that a weak reference can follow
        pass

    refs, alive_before = [], []
    plain_label, plain_add = LabelMaker.label, ShardedLabelsWriter.add_shard

    def label(self, record):
        image, annotations = plain_label(self, record)
        wrapped = [Label(a) for a in annotations]
        refs.extend(weakref.ref(a) for a in wrapped)
        return image, wrapped

    def add_shard(self, name, labeled):
        earlier = len(refs) - sum(len(a) for _, a in labeled)
        alive_before.append(sum(ref() is not None for ref in refs[:earlier]))
        plain_add(self, name, labeled)

    monkeypatch.setattr(LabelMaker, "label", label)
    monkeypatch.setattr(cli.ShardedLabelsWriter, "add_shard", add_shard)
    assert select(case, case["sharded"], "--labeled", str(case["labeled"]), "--shards") == 0
    assert len(alive_before) == 3 and refs
    assert alive_before == [0, 0, 0]


def test_sharded_output_replaces_its_earlier_self(case, capsys):
    assert select(case, case["sharded"], "--threshold", "0.9", "--shards") == 0
    first = ShardedLabels.open(case["sharded"]).annotations
    assert select(case, case["sharded"], "--threshold", "0.1", "--shards") == 0
    assert ShardedLabels.open(case["sharded"]).annotations > first
    assert not (case["tmp"] / ".pseudo.tmp").exists() and not (case["tmp"] / ".pseudo.old").exists()
    assert "in 3 shards" in capsys.readouterr().out


def test_shards_into_a_json_name_or_a_foreign_folder_are_errors(case, capsys):
    assert_cli_error(capsys, select(case, case["single"], "--shards"), "select", "--shards writes a folder")
    (case["sharded"]).mkdir()
    (case["sharded"] / "notes.txt").write_text("mine")
    assert_cli_error(capsys, select(case, case["sharded"], "--shards"), "select", "holds no sharded labels")
    assert (case["sharded"] / "notes.txt").read_text() == "mine"


def test_incomplete_sharded_labels_are_refused(case):
    assert select(case, case["sharded"], "--threshold", "0.4", "--shards") == 0
    table = case["sharded"] / "annotations.bin"
    table.write_bytes(table.read_bytes()[:-5])
    with pytest.raises(UserError, match="does not hold the .* annotations"):
        ShardedLabels.open(case["sharded"])
    with pytest.raises(UserError, match="holds no index.json"):
        ShardedLabels.open(case["tmp"])


def test_sharded_run_without_records_is_an_error(case, tmp_path, capsys):
    case["run"] = write_run(tmp_path / "empty", [], RUN_CATEGORIES, shard_size=SHARD)
    assert_cli_error(capsys, select(case, case["sharded"], "--shards"), "select", "holds no records")
    assert not case["sharded"].exists() and not (tmp_path / ".pseudo.tmp").exists()


def test_gallery_and_convert_read_the_shards(case, tmp_path):
    import cv2

    images = tmp_path / "images"
    (images / "u").mkdir(parents=True)
    for record in case["records"]:
        cv2.imwrite(str(images / record["file_name"]), np.full((80, 100, 3), 100, np.uint8))
    assert select(case, case["single"], "--threshold", "0.4") == 0
    assert select(case, case["sharded"], "--threshold", "0.4", "--shards") == 0
    for name, labels in (("single", case["single"]), ("sharded", case["sharded"])):
        assert main(["convert", "--labels", str(labels), "--to", "yolo", "--out", str(tmp_path / f"yolo-{name}")]) == 0
        assert main(["gallery", "--labels", str(labels), "--images", str(images),
                     "--out", str(tmp_path / f"gallery-{name}")]) == 0
    single = sorted((tmp_path / "yolo-single" / "labels").rglob("*.txt"))
    assert len(single) == len(case["records"])
    for path in single:
        other = tmp_path / "yolo-sharded" / path.relative_to(tmp_path / "yolo-single")
        assert other.read_text() == path.read_text()
    pages = sorted(p.name for p in (tmp_path / "gallery-single").glob("category-*.html"))
    assert pages and pages == sorted(p.name for p in (tmp_path / "gallery-sharded").glob("category-*.html"))
    for page in pages:
        assert ((tmp_path / "gallery-single" / page).read_text().replace(str(case["single"]), "LABELS")
                == (tmp_path / "gallery-sharded" / page).read_text().replace(str(case["sharded"]), "LABELS"))


def test_report_scores_sharded_labels_as_the_single_file(case, tmp_path):
    from engine.select.report import labels_row

    assert select(case, case["single"], "--threshold", "0.4") == 0
    assert select(case, case["sharded"], "--threshold", "0.4", "--shards") == 0
    gt = json.loads(case["single"].read_text())
    gt["annotations"] = gt["annotations"][::2]  # a ground truth the labels only half match
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    single = labels_row(case["single"], tmp_path / "gt.json")
    assert 0 < single[0] < 1
    assert labels_row(case["sharded"], tmp_path / "gt.json") == single
