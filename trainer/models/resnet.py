"""ResNet backbones (basic and bottleneck blocks) with GroupNorm, BatchNorm or frozen BatchNorm.

From scratch, GroupNorm keeps small detection batches stable and BatchNorm is cheaper for
crop batches. Started from ImageNet weights (trainer.pretrained), the backbone follows
Detectron's fine-tuning recipe: "FrozenBN" (fixed statistics and affine) and the first
`freeze_at` parts (1 the stem, 2 the stem and res2, ...) not trained at all.
"""

from __future__ import annotations

import torch
from torch import nn

from trainer.config import BackboneConfig


NORMS = ("GN", "BN", "FrozenBN")


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters, in train mode too.

    weight, bias, running_mean and running_var are buffers: in the state dict (same
    names as nn.BatchNorm2d's, less num_batches_tracked), never in the optimizer. With a
    few images per step, batch statistics are noise; ImageNet's are kept instead.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            # batch_norm's backward would also compute (and hold memory for) gradients of
            # weight and bias, which never train: a plain scale and shift instead.
            scale = self.weight * (self.running_var + self.eps).rsqrt()
            shift = self.bias - self.running_mean * scale
            return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)
        # Inference and export: an eval BatchNormalization node, which the exporter folds
        # into the convolution before it.
        return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                        training=False, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def make_norm(kind: str, channels: int) -> nn.Module:
    """GroupNorm with 32 groups (fewer for thin layers), BatchNorm2d or FrozenBatchNorm2d."""
    if kind == "GN":
        groups = 32
        while channels % groups:
            groups //= 2
        return nn.GroupNorm(min(groups, channels), channels)
    if kind == "BN":
        return nn.BatchNorm2d(channels)
    if kind == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    raise ValueError(f"unknown norm {kind!r} (expected one of {', '.join(NORMS)})")


def conv_norm(cin: int, cout: int, k: int, stride: int, norm: str) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), make_norm(norm, cout)]


class _ResidualBlock(nn.Module):
    """`relu(body(x) + shortcut(x))`; subclasses build `body`, the projection shortcut
    (1x1 conv + norm when the shape changes) is shared."""

    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int, norm: str, body: list[nn.Module]):
        super().__init__()
        self.body = nn.Sequential(*body)
        self.shortcut = (
            nn.Sequential(*conv_norm(cin, cout, 1, stride, norm))
            if stride != 1 or cin != cout else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class BasicBlock(_ResidualBlock):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int, norm: str):
        cout = width * self.expansion
        super().__init__(cin, cout, stride, norm, [
            *conv_norm(cin, width, 3, stride, norm), nn.ReLU(inplace=True),
            *conv_norm(width, cout, 3, 1, norm),
        ])


class Bottleneck(_ResidualBlock):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, norm: str):
        cout = width * self.expansion
        # Stride on the 3x3 conv (the "ResNet v1.5" placement).
        super().__init__(cin, cout, stride, norm, [
            *conv_norm(cin, width, 1, 1, norm), nn.ReLU(inplace=True),
            *conv_norm(width, width, 3, stride, norm), nn.ReLU(inplace=True),
            *conv_norm(width, cout, 1, 1, norm),
        ])


class ResNet(nn.Module):
    """Returns the stage outputs C2..C5 (strides 4, 8, 16, 32) as a list.

    `config.freeze_at` parts (the stem is part 1, stage k part k + 1) get no gradient, and
    their BatchNorms are frozen whatever `config.norm` says, as Detectron freezes them:
    a part that does not train must not drift through its statistics either.
    """

    def __init__(self, config: BackboneConfig):
        super().__init__()
        parts = 1 + len(config.depths)
        if not 0 <= config.freeze_at <= parts:
            raise ValueError(f"freeze_at {config.freeze_at} is outside 0..{parts} (stem + {parts - 1} stages)")
        block = {"basic": BasicBlock, "bottleneck": Bottleneck}[config.block]

        def norm_of(part: int) -> str:
            return "FrozenBN" if config.norm == "BN" and part <= config.freeze_at else config.norm

        self.stem = nn.Sequential(
            *conv_norm(3, config.stem_width, 7, 2, norm_of(1)), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages, cin = [], config.stem_width
        self.out_channels: list[int] = []
        for index, (width, depth) in enumerate(zip(config.widths, config.depths)):
            blocks = []
            for b in range(depth):
                stride = 2 if (b == 0 and index > 0) else 1
                blocks.append(block(cin, width, stride, norm_of(index + 2)))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
            self.out_channels.append(cin)
        self.stages = nn.ModuleList(stages)
        self._init_weights()
        for part in [self.stem, *self.stages][: config.freeze_at]:
            part.requires_grad_(False)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # Zero the last norm of each residual branch so every block starts as identity:
        # from-scratch training of deeper nets converges much faster this way.
        for m in self.modules():
            if isinstance(m, _ResidualBlock):
                nn.init.zeros_(m.body[-1].weight)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs
