"""Tiny real models shared by the test packages: the trainer's `tiny` detector and
keypoint model, trained a few SGD steps on synthetic images with their own losses, saved
as trainer checkpoints and exported to ONNX once per session (fixtures in conftest.py).
Needs torch, onnx and onnxscript; the fixtures skip without them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engine.coco.schema import FLIP_PAIRS, KEYPOINT_NAMES, SKELETON  # noqa: E402

CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]
DETECTOR_TOPK = 100
STEPS = 3


def synthetic_detection_batch(rng: np.random.Generator, batch: int, size: int):
    images = np.full((batch, 3, size, size), 90, np.float32)
    targets = []
    for b in range(batch):
        boxes, labels = [], []
        for _ in range(3):
            w, h = rng.uniform(24, size / 2, 2)
            x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
            label = int(rng.integers(0, len(CATEGORIES)))
            images[b, :, int(y):int(y + h), int(x):int(x + w)] = np.array(
                (220, 60, 40) if label == 0 else (40, 200, 90), np.float32)[:, None, None]
            boxes.append([x, y, x + w, y + h])
            labels.append(label)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32),
                        "labels": torch.tensor(labels, dtype=torch.int64),
                        "crowd": torch.zeros((0, 4), dtype=torch.float32)})
    return torch.from_numpy(images), targets


def train_detector(path: Path) -> None:
    from trainer.checkpoint import build_model, save_checkpoint
    from trainer.config import config_to_dict, get_config

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    config = get_config("detect", "tiny")
    model = build_model("detect", config, len(CATEGORIES)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    for _ in range(STEPS):
        images, targets = synthetic_detection_batch(rng, 2, 128)
        loss = sum(model.losses(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    save_checkpoint(path, model=model, task="detect", model_name="tiny", config=config_to_dict(config),
                    meta={"categories": CATEGORIES}, iteration=STEPS)


def train_keypoints(path: Path) -> None:
    from trainer.checkpoint import build_model, save_checkpoint
    from trainer.config import config_to_dict, get_config

    torch.manual_seed(0)
    config = get_config("keypoints", "tiny")
    model = build_model("keypoints", config, 1).train()
    hc, wc = config.input_size
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    ys, xs = torch.meshgrid(torch.arange(hc // 4) + 0.5, torch.arange(wc // 4) + 0.5, indexing="ij")
    for _ in range(STEPS):
        crops = torch.rand(8, 3, hc, wc) * 255
        centres = torch.rand(8, len(KEYPOINT_NAMES), 2) * torch.tensor([wc / 4, hc / 4])
        target = torch.exp(-((xs - centres[..., 0, None, None]) ** 2 + (ys - centres[..., 1, None, None]) ** 2) / 4.5)
        loss = ((model(crops) - target) ** 2).sum(dim=(2, 3)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    meta = {"categories": CATEGORIES[:1], "keypoint_names": list(KEYPOINT_NAMES),
            "flip_pairs": [list(p) for p in FLIP_PAIRS], "skeleton": [list(e) for e in SKELETON],
            "input_size": [hc, wc]}
    save_checkpoint(path, model=model.eval(), task="keypoints", model_name="tiny",
                    config=config_to_dict(config), meta=meta, iteration=STEPS)


