"""A student on sharded generated labels (`distill select --shards`) equals one on the
single file: the same items, the same minibatches, the same losses, for a fixed seed.

The generated labels are made the way the loop makes them: a labeling run (written by
hand from the synthetic validation set's ground truth, as if a teacher had predicted it)
selected by `distill select` into one file and into shards of two images.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.cli import main
from engine.coco.schema import KEYPOINT_NAMES, SKELETON
from engine.errors import UserError
from tests.engine.conftest import write_run
from trainer.config import tiny_detector, tiny_keypoints
from trainer.data.coco import load_generated
from trainer.data.detection import DetectionDataset
from trainer.data.keypoints import KeypointDataset
from trainer.data.labels import ShardedTrainingLabels
from trainer.train import TrainOptions, train


@pytest.fixture(scope="module")
def generated(synth_small, tmp_path_factory) -> dict:
    """{"single": PSEUDO.json, "sharded": PSEUDO folder, "images": their folder}."""
    root = tmp_path_factory.mktemp("generated")
    data = json.loads(synth_small["val_json"].read_text())
    rng = np.random.default_rng(0)
    records = []
    for image in data["images"]:
        detections = []
        for ann in (a for a in data["annotations"] if a["image_id"] == image["id"]):
            detection = {"bbox": ann["bbox"], "score": round(float(rng.uniform(0.3, 1)), 5),
                         "category_id": ann["category_id"]}
            if "keypoints" in ann:  # labelled joints score high, the others low
                points = np.array(ann["keypoints"], np.float64).reshape(-1, 3)
                points[:, 2] = np.where(points[:, 2] > 0, 0.9, 0.1)
                detection["keypoints"] = points.ravel().tolist()
            detections.append(detection)
        records.append({"file_name": image["file_name"], "width": image["width"], "height": image["height"],
                        "detections": detections})
    categories = [dict(c, keypoints=list(KEYPOINT_NAMES), skeleton=[list(p) for p in SKELETON])
                  if c["name"] == "person" else c for c in data["categories"]]
    run = write_run(root / "run", records, categories, shard_size=2)
    paths = {"single": root / "pseudo.json", "sharded": root / "pseudo", "images": synth_small["val_images"]}
    for out, extra in ((paths["single"], []), (paths["sharded"], ["--shards"])):
        assert main(["select", "--predictions", str(run), "--out", str(out), "--threshold", "0.4",
                     "--keypoint-threshold", "0.5", *extra]) == 0
    return paths


def test_sharded_labels_open_as_a_folder_or_an_index(generated):
    assert isinstance(load_generated(generated["sharded"], generated["images"]), ShardedTrainingLabels)
    assert isinstance(load_generated(generated["sharded"] / "index.json", generated["images"]), ShardedTrainingLabels)
    with pytest.raises(UserError, match="but absent"):
        load_generated(generated["sharded"], generated["sharded"])


def assert_same_items(a, b) -> None:
    assert len(a) == len(b) > 0
    for index in range(len(a)):
        for x, y in zip(a[index], b[index]):
            if isinstance(x, dict):
                assert x.keys() == y.keys()
                for key in x:
                    np.testing.assert_array_equal(np.asarray(x[key]), np.asarray(y[key]), err_msg=key)
            else:
                assert torch.equal(x, y)


def test_datasets_give_the_same_items(generated):
    single = load_generated(generated["single"], generated["images"])
    sharded = load_generated(generated["sharded"], generated["images"])
    images = str(generated["images"])
    sizes = tiny_detector().train_min_sizes, tiny_detector().train_max_size
    # train=True: the same seed draws the same scales and flips from either
    assert_same_items(DetectionDataset(single, images, *sizes, True, seed=3),
                      DetectionDataset(sharded, images, *sizes, True, seed=3))
    assert_same_items(KeypointDataset(single, images, tiny_keypoints(), True, seed=3),
                      KeypointDataset(sharded, images, tiny_keypoints(), True, seed=3))


@pytest.mark.parametrize("task", ["detect", "keypoints"])
def test_student_from_shards_equals_student_from_the_file(synth_small, generated, tmp_path, trainers, task):
    def student(pseudo, out):
        return train(TrainOptions(
            task=task, train_json=str(synth_small["train_json"]), train_images=str(synth_small["train_images"]),
            model="tiny", iters=3, batch_size=4, out=str(tmp_path / out), workers=0, threads=2, checkpoint_every=0,
            pseudo_json=str(pseudo), pseudo_images=str(generated["images"]), seed=5))

    single = student(generated["single"], "single")
    sharded = student(generated["sharded"], "sharded")
    assert single["generated"]["items"] == sharded["generated"]["items"] > 0
    a, b = trainers
    assert len(a.loss_history) == 3 and a.loss_history == b.loss_history
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
