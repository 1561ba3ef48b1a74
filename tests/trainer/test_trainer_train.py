"""End-to-end training on a few synthetic images: checkpoints, resume, eval, DDP, coco-mini."""

from __future__ import annotations

import json
import socket

import torch

from engine.cli import main as distill
from trainer.checkpoint import build_model_from_checkpoint, load_checkpoint
from trainer.config import tiny_keypoints
from trainer.data.coco import load_coco
from trainer.data.keypoints import KeypointDataset, keypoint_collate
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


def test_detector_trains_saves_evaluates_and_reloads(synth_small, tmp_path):
    metrics = train(options(synth_small, "detect", tmp_path / "det", val_json=str(synth_small["val_json"]), val_images=str(synth_small["val_images"])))
    written = json.loads((tmp_path / "det" / "metrics.json").read_text())
    for key in ("bbox_AP", "bbox_AP50", "bbox_AP75", "bbox_APs", "bbox_AR100"):
        assert key in written and 0.0 <= written[key] <= 1.0
    assert written == json.loads(json.dumps(metrics))
    ckpt = torch.load(tmp_path / "det" / "model.pt", map_location="cpu", weights_only=True)
    assert ckpt["format"] == "distill-checkpoint-v1" and ckpt["task"] == "detect" and ckpt["model_name"] == "tiny"
    assert ckpt["iteration"] == 3 and [c["name"] for c in ckpt["categories"]][0] == "person"
    assert ckpt["config"]["strides"] == [8, 16, 32, 64]
    model = build_model_from_checkpoint(load_checkpoint(tmp_path / "det" / "model.pt"))
    assert not model.training and model.strides == (8, 16, 32, 64)
    images = torch.rand(1, 3, 128, 128) * 255
    reference = build_model_from_checkpoint(ckpt)
    with torch.no_grad():
        assert torch.equal(model.candidates(images, 50)[1], reference.candidates(images, 50)[1])


def test_resume_continues_from_the_saved_iteration(synth_small, tmp_path):
    first = train(options(synth_small, "detect", tmp_path / "run", iters=2))
    assert first["start_iteration"] == 0
    resumed = train(options(synth_small, "detect", tmp_path / "run", iters=4, resume=True))
    assert resumed["start_iteration"] == 2
    ckpt = load_checkpoint(tmp_path / "run" / "model.pt")
    assert ckpt["iteration"] == 4 and ckpt["scheduler"] == {"iteration": 4}
    assert "momentum_buffer" in next(iter(ckpt["optimizer"]["state"].values()))


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
    coco = load_coco(synth_small["train_json"], synth_small["train_images"])
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


def test_keypoints_eval_cli_on_gt_and_detector_boxes(synth_small, tmp_path, capsys):
    train(options(synth_small, "keypoints", tmp_path / "kp", iters=2))
    train(options(synth_small, "detect", tmp_path / "det", iters=2))
    common = ["eval", "--json", str(synth_small["val_json"]), "--images", str(synth_small["val_images"]), "--threads", "2"]
    assert distill(common + ["--checkpoint", str(tmp_path / "kp" / "model.pt")]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(stats) >= {"keypoints_AP", "keypoints_AP50", "keypoints_AR"}
    assert distill(common + ["--checkpoint", str(tmp_path / "kp" / "model.pt"), "--detector", str(tmp_path / "det" / "model.pt")]) == 0
    assert "keypoints_AP" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert distill(common + ["--checkpoint", str(tmp_path / "det" / "model.pt")]) == 0
    assert "bbox_AP" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])


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
    assert 0.0 <= det["bbox_AP"] <= 1.0
    ckpt = load_checkpoint(tmp_path / "det" / "model.pt")
    assert len(ckpt["categories"]) == 80 and ckpt["categories"][0] == {"id": 1, "name": "person"}
    kp = train(TrainOptions(task="keypoints", train_json=str(kp_json), train_images=images, val_json=str(subset),
                            val_images=images, model="tiny", iters=3, batch_size=4, out=str(tmp_path / "kp"),
                            workers=0, threads=2))
    assert 0.0 <= kp["keypoints_AP"] <= 1.0
