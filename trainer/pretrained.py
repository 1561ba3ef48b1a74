"""ImageNet ResNet weights in torchvision's key layout, loaded into our backbone.

torchvision's `resnet50()` and timm's `resnet50` name their tensors alike: `conv1`, `bn1`,
`layer1`..`layer4` of blocks `conv1..3` / `bn1..3` (two of each in a basic block) with
a `downsample.0` / `.1` projection, and the classifier `fc`. Our ResNet
(trainer.models.resnet) holds the same tensors under other names: `stem.0` / `.1`,
`stages.{i}.{b}.body.{3j}` / `.{3j+1}` (conv / norm j, ReLUs between them) and
`shortcut.0` / `.1`. Every name of ours maps to one torchvision name (`torchvision_name`);
a file must hold exactly those tensors with the same shapes, besides `fc.*` (ImageNet's
classifier, unused by a detector) and BatchNorm's `num_batches_tracked` counters.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

from engine.errors import UserError

# How many names or shapes a mismatch message lists per kind before "(+N more)".
_SHOWN = 3
_TORCH_SUFFIXES = (".pth", ".pt", ".bin")
_BODY = re.compile(r"stages\.(\d+)\.(\d+)\.body\.(\d+)\.(\w+)")
_SHORTCUT = re.compile(r"stages\.(\d+)\.(\d+)\.shortcut\.(\d)\.(\w+)")
_STEM = re.compile(r"stem\.([01])\.(\w+)")


def torchvision_name(name: str) -> str:
    """The torchvision / timm name of one of our backbone's state-dict entries.

    `stem.0.weight` -> `conv1.weight`, `stages.2.0.body.4.running_var` ->
    `layer3.0.bn2.running_var`, `stages.0.0.shortcut.1.bias` -> `layer1.0.downsample.1.bias`.
    """
    if match := _STEM.fullmatch(name):
        index, field = match.groups()
        return f"{'conv1' if index == '0' else 'bn1'}.{field}"
    if match := _BODY.fullmatch(name):
        stage, block, index, field = match.groups()
        # body is [conv, norm, relu] repeated: conv j at 3(j-1), its norm right after.
        position, offset = divmod(int(index), 3)
        kind = {0: "conv", 1: "bn"}.get(offset)
        if kind is None:
            raise ValueError(f"{name}: a ReLU holds no tensor")
        return f"layer{int(stage) + 1}.{block}.{kind}{position + 1}.{field}"
    if match := _SHORTCUT.fullmatch(name):
        stage, block, index, field = match.groups()
        return f"layer{int(stage) + 1}.{block}.downsample.{index}.{field}"
    raise ValueError(f"{name} is not a ResNet backbone tensor")


def _ignored(name: str) -> bool:
    """File entries no backbone needs: the ImageNet classifier and BN step counters."""
    return name.startswith("fc.") or name.endswith(".num_batches_tracked")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a `.pth` / `.pt` / `.bin` (torch.load, weights only) or `.safetensors` file.

    A torch file may hold the state dict itself or a training checkpoint with it under
    "state_dict" or "model" (timm's and torchvision's training scripts save those).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise UserError(f"{path}: reading .safetensors needs the safetensors package "
                            "(the train extra: pip install 'distill[train]'); .pth files need nothing more") from None
        try:
            return load_file(path, device="cpu")
        except Exception as error:  # safetensors raises its own error types for bad headers
            raise UserError(f"cannot read {path}: {str(error).splitlines()[0]}") from None
    if suffix not in _TORCH_SUFFIXES:
        raise UserError(f"{path}: expected a {', '.join(_TORCH_SUFFIXES)} or .safetensors file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or pickled-code files
        reason = str(error).splitlines()[0]
        if reason.startswith("Weights only load failed"):
            reason = "not a PyTorch file of tensors and plain data"
        raise UserError(f"cannot read {path}: {reason}") from None
    if isinstance(data, dict):
        for key in ("state_dict", "model"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserError(f"{path} holds no state dict (a dict of tensor names to tensors)")
    return data


def _listed(names: list[str]) -> str:
    more = f" (+{len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def map_state_dict(backbone: nn.Module, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`weights` (torchvision names) renamed to `backbone`'s state-dict names.

    Raises UserError, one line, naming the first few missing names, unexpected names and
    shape differences. `fc.*` and `num_batches_tracked` are ignored on both sides: the
    counter only matters to BatchNorm's cumulative-average mode, which we never use.
    """
    own = backbone.state_dict()
    wanted = {torchvision_name(name): name for name in own if not _ignored(name)}
    missing = [name for name in wanted if name not in weights]
    unexpected = [name for name in weights if name not in wanted and not _ignored(name)]
    shapes = [
        f"{name} {tuple(weights[name].shape)} vs {tuple(own[ours].shape)}"
        for name, ours in wanted.items() if name in weights and weights[name].shape != own[ours].shape
    ]
    problems = [
        f"{label} {_listed(names)}"
        for label, names in (("missing", missing), ("unexpected", unexpected), ("shape (file vs model)", shapes))
        if names
    ]
    if problems:
        raise UserError("; ".join(problems))
    return {ours: weights[name] for name, ours in wanted.items()}


def load_backbone_weights(backbone: nn.Module, path: str | os.PathLike) -> int:
    """Copy the ImageNet ResNet weights of `path` into `backbone` (in place, converted to
    its dtypes); returns how many tensors were loaded. UserError when the file cannot be
    read or does not fit: "FILE does not fit the backbone: missing ...; unexpected ...".
    """
    weights = read_state_dict(path)
    try:
        mapped = map_state_dict(backbone, weights)
    except UserError as error:
        raise UserError(f"{path} does not fit the backbone: {error}") from None
    # strict=False only for the num_batches_tracked counters, which are never mapped.
    result = backbone.load_state_dict(mapped, strict=False)
    assert not result.unexpected_keys and all(k.endswith("num_batches_tracked") for k in result.missing_keys)
    return len(mapped)
