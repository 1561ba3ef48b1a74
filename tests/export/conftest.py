"""The export tests need torch, onnx and onnxscript; the tiny models and their fixtures
(`tiny_checkpoints`, `exported`) live in tests/tiny_models.py and tests/conftest.py.

`peaked_keypoints` is the keypoint model the parity checks are proved on. The shared
tiny keypoint model trains 3 SGD steps from a final conv at std 0.001, so its heatmaps
are flat (0.0184 +- 0.0001): a graph fed all-zero crops, or one that doubles its output,
still passes any comparison of such maps. Here the same checkpoint gets a constructed
head instead: BatchNorm affines drawn away from identity, running statistics measured on
structured crops (so the folded scale, shift and mean all matter), and a final 1x1 conv
scaled so that each joint's logits have std 1.5 over a crop. Its heatmaps then peak at
0.1..12 (median ~0.5; the trained tiny teacher's: 0.1..1.5, median ~0.35) at positions
that move with the input, which is what labeling reads from a real model. Building and
exporting it takes ~5 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

LOGIT_STD = 1.5  # per-joint logit spread over a crop: peaks like a trained model's


def build_peaked_keypoints(source: Path, out: Path, seed: int = 0) -> None:
    """Write a keypoint checkpoint to `out`: `source`'s model with a constructed head
    (see the module docstring). Deterministic for a given `seed`."""
    import torch

    from export.parity import keypoint_feeds, synthetic_images
    from trainer.checkpoint import build_model_from_checkpoint, load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(source)
    model = build_model_from_checkpoint(ckpt)
    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    # Crops unlike the parity feeds (other seed), so the statistics are not fitted to them.
    crops = keypoint_feeds(synthetic_images(8, seed=seed + 100), tuple(model.input_size), per_image=4,
                           batch=32, seed=seed + 100)
    with torch.no_grad():
        for bn in norms:
            bn.weight.uniform_(0.5, 1.5, generator=generator)
            bn.bias.normal_(0.0, 0.2, generator=generator)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration batches
        model.train()
        for batch in crops:
            model(torch.from_numpy(batch).float())
        model.eval()
        for bn in norms:
            bn.momentum = 0.1
        x = (torch.from_numpy(crops[0]).float() - model.pixel_mean) / model.pixel_std
        features = model.deconv(model.backbone(x)[-1])
        weight = torch.randn(model.final.weight.shape, generator=generator)
        logits = torch.nn.functional.conv2d(features, weight)
        model.final.weight.copy_(weight * (LOGIT_STD / logits.std()))
        model.final.bias.zero_()
    meta = {key: ckpt[key] for key in ("categories", "keypoint_names", "flip_pairs", "skeleton", "input_size")}
    save_checkpoint(out, model=model, task="keypoints", model_name=ckpt["model_name"], config=ckpt["config"],
                    meta=meta, iteration=int(ckpt["iteration"]))


@pytest.fixture(scope="session")
def peaked_keypoints(tiny_checkpoints, tmp_path_factory) -> dict:
    """{"checkpoint", "onnx", "wrapper", "card"} of the keypoint model with real peaks,
    built and exported once per session."""
    from export.onnx_export import export_checkpoint

    root = tmp_path_factory.mktemp("peaked")
    checkpoint = root / "keypoints-peaked.pt"
    build_peaked_keypoints(tiny_checkpoints["keypoints"], checkpoint)
    out, wrapper = export_checkpoint(checkpoint, root / "keypoints-peaked.onnx")
    return {"checkpoint": checkpoint, "onnx": out.path, "wrapper": wrapper, "card": out.card}

