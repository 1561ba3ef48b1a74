"""Named model configurations as plain dataclasses (`tiny` for CPUs, `r50` for GPUs).

A config travels inside every checkpoint as a plain dict (`dataclasses.asdict`), so that
the exporter can rebuild the exact module with `config_from_dict`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from engine.errors import UserError


@dataclass
class BackboneConfig:
    """A ResNet: `block` is "basic" (ResNet-18 style) or "bottleneck" (ResNet-50 style)."""

    block: str = "bottleneck"
    stem_width: int = 64
    widths: tuple[int, ...] = (64, 128, 256, 512)  # bottleneck inner widths per stage
    depths: tuple[int, ...] = (3, 4, 6, 3)
    norm: str = "GN"  # "GN" (from-scratch friendly), "BN", or "FrozenBN" (fixed statistics and affine)
    # Detectron's FREEZE_AT: parts without gradients, 0 none, 1 the stem, 2 stem + res2, ...
    freeze_at: int = 0


@dataclass
class DetectorConfig:
    """FCOS on ResNet + FPN."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    fpn_channels: int = 256
    strides: tuple[int, ...] = (8, 16, 32, 64, 128)
    head_convs: int = 4
    # Regression ranges per level (max distance to a box side, input pixels); last is open.
    size_bounds: tuple[int, ...] = (64, 128, 256, 512)
    center_radius: float = 1.5  # FCOS centre sampling, in strides
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    train_min_sizes: tuple[int, ...] = (640, 672, 704, 736, 768, 800)
    train_max_size: int = 1333
    test_min_size: int = 800
    test_max_size: int = 1333
    base_lr: float = 0.02  # LR for batch 16; scaled linearly with the batch size
    warmup_iters: int = 500
    topk_candidates: int = 1000


@dataclass
class KeypointConfig:
    """Top-down SimpleBaseline-style model: ResNet, deconvolutions, 1x1 to heatmaps."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    input_size: tuple[int, int] = (256, 192)  # (Hc, Wc)
    deconv_channels: int = 256
    deconv_layers: int = 3
    sigma: float = 2.0  # Gaussian sigma in heatmap pixels
    padding: float = 1.25
    scale_jitter: float = 0.25  # crop box scaled by U(1 - j, 1 + j)
    shift_jitter: float = 0.1  # centre shifted by U(-s, s) x box size
    base_lr: float = 0.02
    warmup_iters: int = 500


def _tiny_backbone(norm: str) -> BackboneConfig:
    return BackboneConfig(
        block="basic", stem_width=16, widths=(16, 32, 64, 128), depths=(1, 1, 1, 1), norm=norm
    )


def tiny_detector() -> DetectorConfig:
    # Small widths, four FPN levels and ~300 px inputs keep a training step well under a
    # second on two CPU cores. LR 0.02 x batch/16 (0.01 at batch 8) is kept from the
    # recipe; GroupNorm everywhere keeps it stable from scratch.
    return DetectorConfig(
        backbone=_tiny_backbone("GN"),
        fpn_channels=64,
        strides=(8, 16, 32, 64),
        head_convs=2,
        size_bounds=(32, 64, 128),
        train_min_sizes=(256, 288, 320, 352),
        train_max_size=512,
        test_min_size=320,
        test_max_size=512,
        base_lr=0.02,
        warmup_iters=100,
        topk_candidates=1000,
    )


def r50_detector() -> DetectorConfig:
    return DetectorConfig(base_lr=0.02)


def tiny_keypoints() -> KeypointConfig:
    # 128x96 crops (heatmaps 32x24) and BatchNorm over batches of crops: fast on a CPU.
    # The backbone stops at stride 16 (8x6 cells for a 128x96 crop, three stages) and two
    # deconvolutions return to stride 4: at stride 32 the tiny crop is only 4x3 cells,
    # which made localization very slow to learn from scratch.
    return KeypointConfig(
        backbone=BackboneConfig(block="basic", stem_width=16, widths=(32, 64, 128), depths=(1, 1, 2), norm="BN"),
        input_size=(128, 96),
        deconv_channels=64,
        deconv_layers=2,
        sigma=1.5,
        base_lr=0.02,
        warmup_iters=100,
    )


def r50_keypoints() -> KeypointConfig:
    return KeypointConfig(backbone=BackboneConfig(norm="BN"))


CONFIGS = {
    ("detect", "tiny"): tiny_detector,
    ("detect", "r50"): r50_detector,
    ("keypoints", "tiny"): tiny_keypoints,
    ("keypoints", "r50"): r50_keypoints,
}
MODEL_NAMES = ("tiny", "r50")
TASKS = ("detect", "keypoints")


def with_pretrained_backbone(
    config: DetectorConfig | KeypointConfig, freeze_at: int, frozen_bn: bool
) -> DetectorConfig | KeypointConfig:
    """`config` for a backbone started from ImageNet weights: BatchNorm, whose statistics
    the weights carry (frozen, Detectron's default, or trained), and `freeze_at` parts
    without gradients (a frozen part's BatchNorms are frozen in any case)."""
    parts = 1 + len(config.backbone.depths)
    if not 0 <= freeze_at <= parts:
        raise UserError(f"freeze_at {freeze_at} is outside 0..{parts} for this backbone (stem + {parts - 1} stages)")
    backbone = dataclasses.replace(config.backbone, norm="FrozenBN" if frozen_bn else "BN", freeze_at=freeze_at)
    return dataclasses.replace(config, backbone=backbone)


def get_config(task: str, model_name: str) -> DetectorConfig | KeypointConfig:
    """The named config for `task` ("detect" | "keypoints") and `model_name`."""
    try:
        return CONFIGS[(task, model_name)]()
    except KeyError:
        raise UserError(
            f"unknown model {model_name!r} for task {task!r} (choose from {', '.join(MODEL_NAMES)})"
        ) from None


def config_to_dict(config: DetectorConfig | KeypointConfig) -> dict:
    """Plain data (lists, numbers, strings) that `torch.load(weights_only=True)` accepts."""

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))


def config_from_dict(task: str, data: dict) -> DetectorConfig | KeypointConfig:
    """Rebuild a config dataclass from `config_to_dict` output (lists become tuples)."""
    cls = DetectorConfig if task == "detect" else KeypointConfig

    def build(klass, values: dict):
        kwargs = {}
        for f in dataclasses.fields(klass):
            if f.name not in values:
                continue
            value = values[f.name]
            if f.name == "backbone":
                value = build(BackboneConfig, value)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[f.name] = value
        return klass(**kwargs)

    return build(cls, data)


# Fields an override may not change: they shape the network or its checkpoint contract.
_FIXED_FIELDS = ("backbone",)


def override_config(config: DetectorConfig | KeypointConfig, assignments: list[str]) -> DetectorConfig | KeypointConfig:
    """A copy of `config` with `KEY=VALUE` assignments applied (VALUE in JSON: `0.01`,
    `[160,192]`), as Detectron's command-line opts: input sizes, warmup, LR for a run on
    small images. The changed config travels in the checkpoint like any other."""
    import json

    fields = {f.name: f for f in dataclasses.fields(config)}
    changes = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or key not in fields or key in _FIXED_FIELDS:
            allowed = ", ".join(k for k in fields if k not in _FIXED_FIELDS)
            raise UserError(f"--set {assignment!r}: expected KEY=VALUE with KEY one of {allowed}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise UserError(f"--set {assignment!r}: {text!r} is not a JSON value") from None
        current = getattr(config, key)
        if isinstance(current, tuple):
            if not isinstance(value, list) or not all(isinstance(v, type(current[0])) for v in value) or not value:
                raise UserError(f"--set {key}: expected a non-empty list like {list(current)}")
            value = tuple(value)
        elif isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif type(value) is not type(current):
            raise UserError(f"--set {key}: expected a {type(current).__name__} like {current!r}")
        changes[key] = value
    return dataclasses.replace(config, **changes)
