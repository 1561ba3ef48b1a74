"""Checkpoints as plain dicts that load with `torch.load(weights_only=True)`.

Layout ("distill-checkpoint-v1"): format, task, model_name, config (plain dict of the
model config dataclass), state_dict, iteration, categories ([{"id", "name"}] in label
index order) and, for keypoint models, keypoint_names, flip_pairs (0-based), skeleton
(1-based), input_size [Hc, Wc]; optionally optimizer and scheduler state for --resume.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from engine.errors import UserError
from trainer.config import config_from_dict

FORMAT = "distill-checkpoint-v1"


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: torch.nn.Module,
    task: str,
    model_name: str,
    config: dict,
    meta: dict,
    iteration: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a checkpoint.

    meta: plain data merged into the top level: "categories", and for keypoints
    "keypoint_names", "flip_pairs", "skeleton", "input_size".
    """
    state = {
        "format": FORMAT,
        "task": task,
        "model_name": model_name,
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()},
        "iteration": int(iteration),
        **meta,
    }
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint dict on the CPU; a missing or unreadable file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt archives
        reason = str(error).splitlines()[0]
        if reason.startswith("Weights only load failed"):
            # torch's own text goes on to suggest weights_only=False, which we never do.
            reason = "not a PyTorch file of tensors and plain data"
        raise UserError(f"cannot read checkpoint {path}: {reason}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a distill checkpoint (expected format {FORMAT})")
    return ckpt


def build_model(task: str, config, num_classes: int) -> torch.nn.Module:
    """A fresh model for `task` from its config dataclass."""
    if task == "detect":
        from trainer.models.fcos import FCOS

        return FCOS(config, num_classes)
    from trainer.models.keypoint_net import KeypointNet

    return KeypointNet(config)


def build_model_from_checkpoint(ckpt: dict) -> torch.nn.Module:
    """The checkpoint's model with its weights, in eval mode, on the CPU."""
    task = ckpt["task"]
    config = config_from_dict(task, ckpt["config"])
    model = build_model(task, config, len(ckpt.get("categories", [])))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
