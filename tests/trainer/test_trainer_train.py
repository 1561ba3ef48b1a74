"""End-to-end training on a few synthetic images: checkpoints, resume, eval, DDP, coco-mini."""

from __future__ import annotations

import json
import shutil
import socket

import numpy as np
import pytest
import torch

import trainer.evaluate
import trainer.train
from engine.cli import main as distill
from engine.coco.geometry import xyxy_to_xywh
from trainer.checkpoint import build_model, build_model_from_checkpoint, load_checkpoint, save_checkpoint
from trainer.config import config_to_dict, tiny_detector, tiny_keypoints
from trainer.data.coco import load_annotations, person_category_id, read_image
from trainer.data.keypoints import KeypointDataset, keypoint_collate
from trainer.evaluate import detect_image
from trainer.loop import Trainer
from trainer.models.keypoint_net import KeypointNet
from trainer.schedule import WarmupMultiStepLR
from trainer.train import TrainOptions, _keypoint_loss, train


def options(data: dict, task: str, out, **kw) -> TrainOptions:
    base = dict(
        task=task, train_json=str(data["train_json"]), train_images=str(data["train_images"]),
        model="tiny", iters=3, batch_size=2, out=str(out), workers=0, threads=2,
        checkpoint_every=0,
    )
    base.update(kw)
    return TrainOptions(**base)


def test_detector_trains_saves_evaluates_and_reloads(synth_small, tmp_path, trainers):
    metrics = train(options(synth_small, "detect", tmp_path / "det", val_json=str(synth_small["val_json"]), val_images=str(synth_small["val_images"])))
    written = json.loads((tmp_path / "det" / "metrics.json").read_text())
    for key in ("box_AP", "box_AP50", "box_AP75", "box_APs", "box_AR100"):
        assert key in written and 0.0 <= written[key] <= 1.0
    assert written == json.loads(json.dumps(metrics))
    ckpt = torch.load(tmp_path / "det" / "model.pt", map_location="cpu", weights_only=True)
    assert ckpt["format"] == "distill-checkpoint-v1" and ckpt["task"] == "detect" and ckpt["model_name"] == "tiny"
    assert ckpt["iteration"] == 3 and [c["name"] for c in ckpt["categories"]][0] == "person"
    assert ckpt["config"]["strides"] == [8, 16, 32, 64]
    # The file holds the weights training ended with (the model still in memory), and
    # those moved away from the starting ones: a save of the initial weights fails here.
    (run,) = trainers
    trained = run.model.state_dict()
    assert ckpt["state_dict"].keys() == trained.keys()
    assert all(torch.equal(ckpt["state_dict"][k], trained[k]) for k in trained)
    assert not all(torch.equal(run.initial[k], trained[k]) for k in trained)
    model = build_model_from_checkpoint(load_checkpoint(tmp_path / "det" / "model.pt"))
    assert not model.training and model.strides == (8, 16, 32, 64)
    images = torch.rand(1, 3, 128, 128) * 255
    with torch.no_grad():
        assert torch.equal(model.candidates(images, 50)[1], run.model.eval().candidates(images, 50)[1])


def test_resume_ends_where_an_uninterrupted_run_ends(synth_small, tmp_path, trainers, monkeypatch):
    """A 6-iteration run killed after its iteration-3 checkpoint and resumed matches the
    same run left alone: the first step after the resume has the same loss and the final
    weights and momentum buffers agree (rtol 1e-5, atol 1e-7: one thread, so in practice
    bit for bit). That needs the weights, the momentum, the LR schedule and the data order
    back. Crop jitter and flips are off: their RNG is not in the checkpoint (a resumed run
    draws new ones), so with them on the two runs train on different crops."""
    build = trainer.train.build_dataset

    def without_augmentation(*args, **kwargs):
        dataset, categories, collate = build(*args, **kwargs)
        dataset.train = False
        return dataset, categories, collate

    monkeypatch.setattr(trainer.train, "build_dataset", without_augmentation)
    # LR 0.1 without warmup (steps at iterations 4 and 5): every piece of state left out
    # moves the weights and the losses well past the tolerance.
    run = dict(iters=6, lr=0.1, threads=1, overrides=("warmup_iters=0",))
    train(options(synth_small, "keypoints", tmp_path / "whole", checkpoint_every=3, **run))
    (tmp_path / "killed").mkdir()
    shutil.copy(tmp_path / "whole" / "last.pt", tmp_path / "killed" / "last.pt")
    resumed = train(options(synth_small, "keypoints", tmp_path / "killed", resume=True, **run))
    assert resumed["start_iteration"] == 3
    whole, rest = trainers
    assert len(whole.loss_history) == 6 and len(rest.loss_history) == 3
    assert rest.loss_history[0] == pytest.approx(whole.loss_history[3], rel=1e-5)  # the step after the resume
    assert rest.loss_history == pytest.approx(whole.loss_history[3:], rel=1e-5)
    expected, got = load_checkpoint(tmp_path / "whole" / "model.pt"), load_checkpoint(tmp_path / "killed" / "model.pt")
    assert got["iteration"] == 6 and got["scheduler"] == {"iteration": 6}
    for name, tensor in expected["state_dict"].items():
        assert torch.allclose(got["state_dict"][name].double(), tensor.double(), rtol=1e-5, atol=1e-7), name
    momentum = [(s["momentum_buffer"], got["optimizer"]["state"][i]["momentum_buffer"])
                for i, s in expected["optimizer"]["state"].items()]
    assert len(momentum) == sum(1 for _ in whole.model.parameters())
    assert all(torch.allclose(b, a, rtol=1e-5, atol=1e-7) for a, b in momentum)


def test_periodic_checkpoint(synth_small, tmp_path):
    train(options(synth_small, "keypoints", tmp_path / "kp", iters=3, checkpoint_every=2))
    assert load_checkpoint(tmp_path / "kp" / "last.pt")["iteration"] == 2
    ckpt = load_checkpoint(tmp_path / "kp" / "model.pt")
    assert ckpt["iteration"] == 3 and ckpt["input_size"] == [128, 96]
    assert ckpt["flip_pairs"][0] == [1, 2] and len(ckpt["keypoint_names"]) == 17 and ckpt["skeleton"][0] == [16, 14]
    model = build_model_from_checkpoint(ckpt)
    assert model.input_size == (128, 96)
    assert model(torch.rand(2, 3, 128, 96) * 255).shape == (2, 17, 32, 24)


def test_keypoint_loss_decreases_on_a_fixed_batch(synth_small):
    torch.manual_seed(0)
    config = tiny_keypoints()
    coco = load_annotations(synth_small["train_json"], synth_small["train_images"])
    dataset = KeypointDataset(coco, str(synth_small["train_images"]), config, train=False)
    batch = keypoint_collate([dataset[i] for i in range(min(4, len(dataset)))])
    model = KeypointNet(config)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = WarmupMultiStepLR(optimizer, 0.05, 20, 3)
    trainer = Trainer(model, optimizer, scheduler, iter([batch] * 20), _keypoint_loss(torch.device("cpu")), 20)
    trainer.train()
    history = trainer.loss_history
    assert all(torch.isfinite(torch.tensor(history)))
    # Cross-entropy has a floor (the targets' entropy, ~3.7 nats here; uniform is ~6.6).
    assert sum(history[-5:]) / 5 < sum(history[:5]) / 5 - 0.05


def everywhere_person_detector(path) -> None:
    """A tiny FCOS checkpoint that sees a person at every location (class bias +4: score
    about 0.7) in a box reaching 2 strides from it on each side: its boxes are nothing
    like the ground truth's."""
    torch.manual_seed(0)
    config = tiny_detector()
    model = build_model("detect", config, 1)
    with torch.no_grad():
        model.head.cls_logits.bias.fill_(4.0)
        model.head.bbox_pred.bias.fill_(2.0)
    save_checkpoint(path, model=model, task="detect", model_name="tiny", config=config_to_dict(config),
                    meta={"categories": [{"id": 1, "name": "person"}]}, iteration=0)


def test_keypoints_eval_cli_on_gt_and_detector_boxes(synth_small, tmp_path, capsys, monkeypatch):
    """`distill eval` crops people at the ground truth's boxes, or with --detector at that
    detector's person boxes: the boxes handed to the keypoint model show which."""
    train(options(synth_small, "keypoints", tmp_path / "kp", iters=2))
    everywhere_person_detector(tmp_path / "det.pt")
    used = []
    predict = trainer.evaluate.predict_keypoints

    def spy(model, image, boxes_xywh, *args, **kwargs):
        used.append(np.array(boxes_xywh, np.float32))
        return predict(model, image, boxes_xywh, *args, **kwargs)

    monkeypatch.setattr(trainer.evaluate, "predict_keypoints", spy)
    coco = load_annotations(synth_small["val_json"], synth_small["val_images"])
    person = person_category_id(coco)
    gt_boxes, detector_boxes = [], []
    detector = build_model_from_checkpoint(load_checkpoint(tmp_path / "det.pt"))
    for image_id in sorted(coco.getImgIds()):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], catIds=[person]))
        people = [a["bbox"] for a in anns if not a.get("iscrowd", 0)]
        if people:
            gt_boxes.append(np.array(people, np.float32))
        image = read_image(synth_small["val_images"] / coco.imgs[image_id]["file_name"])
        boxes, _, _ = detect_image(detector, image, detector.config.test_min_size, detector.config.test_max_size,
                                   torch.device("cpu"))
        detector_boxes.append(xyxy_to_xywh(boxes))
    assert len(gt_boxes) >= 2 and all(len(b) >= 20 for b in detector_boxes)
    assert [len(b) for b in detector_boxes] != [len(b) for b in gt_boxes]

    common = ["eval", "--json", str(synth_small["val_json"]), "--images", str(synth_small["val_images"]),
              "--threads", "2", "--checkpoint"]
    assert distill(common + [str(tmp_path / "kp" / "model.pt")]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(stats) >= {"keypoint_AP", "keypoint_AP50", "keypoint_AR"}
    assert [b.shape for b in used] == [b.shape for b in gt_boxes]
    assert all(np.array_equal(u, g) for u, g in zip(used, gt_boxes))

    used.clear()
    assert distill(common + [str(tmp_path / "kp" / "model.pt"), "--detector", str(tmp_path / "det.pt")]) == 0
    assert "keypoint_AP" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [b.shape for b in used] == [b.shape for b in detector_boxes], "not the detector's boxes"
    assert all(np.allclose(u, d, rtol=1e-6, atol=1e-4) for u, d in zip(used, detector_boxes))

    assert distill(common + [str(tmp_path / "det.pt")]) == 0
    assert "box_AP" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ddp_single_gloo_process(synth_small, tmp_path, monkeypatch):
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0",
                       "LOCAL_RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(key, value)
    seen = {}
    original = torch.nn.parallel.DistributedDataParallel.__init__

    def spy(self, *args, **kwargs):
        seen["ddp"] = True
        original(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.parallel.DistributedDataParallel, "__init__", spy)
    metrics = train(options(synth_small, "detect", tmp_path / "ddp", iters=2))
    assert seen.get("ddp") and metrics["final_loss"] is not None
    assert not torch.distributed.is_initialized()  # cleaned up
    assert load_checkpoint(tmp_path / "ddp" / "model.pt")["iteration"] == 2


def test_coco_mini_trains_and_evaluates(coco_mini, tmp_path):
    # A 12-image validation subset keeps this quick; training reads the whole file.
    kp_json = coco_mini / "annotations" / "person_keypoints.json"
    data = json.loads(kp_json.read_text())
    keep = sorted({a["image_id"] for a in data["annotations"] if a.get("num_keypoints", 0) > 0})[:12]
    data["images"] = [i for i in data["images"] if i["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    subset = tmp_path / "subset.json"
    subset.write_text(json.dumps(data))
    images = str(coco_mini / "images")
    det = train(TrainOptions(task="detect", train_json=str(coco_mini / "annotations" / "instances_80cls.json"),
                             train_images=images, val_json=str(subset), val_images=images, model="tiny",
                             iters=3, batch_size=2, out=str(tmp_path / "det"), workers=0, threads=2))
    assert 0.0 <= det["box_AP"] <= 1.0
    ckpt = load_checkpoint(tmp_path / "det" / "model.pt")
    assert len(ckpt["categories"]) == 80 and ckpt["categories"][0] == {"id": 1, "name": "person"}
    kp = train(TrainOptions(task="keypoints", train_json=str(kp_json), train_images=images, val_json=str(subset),
                            val_images=images, model="tiny", iters=3, batch_size=4, out=str(tmp_path / "kp"),
                            workers=0, threads=2))
    assert 0.0 <= kp["keypoint_AP"] <= 1.0
