"""ResNet backbones (basic and bottleneck blocks) with a choice of GroupNorm or BatchNorm.

No pretrained weights exist in this workplace, so the backbone is trained from scratch;
GroupNorm keeps small detection batches stable, BatchNorm is cheaper for crop batches.
"""

from __future__ import annotations

import torch
from torch import nn

from trainer.config import BackboneConfig


def make_norm(kind: str, channels: int) -> nn.Module:
    """GroupNorm with 32 groups (fewer for thin layers) or BatchNorm2d."""
    if kind == "GN":
        groups = 32
        while channels % groups:
            groups //= 2
        return nn.GroupNorm(min(groups, channels), channels)
    if kind == "BN":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"unknown norm {kind!r}")


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
    """Returns the stage outputs C2..C5 (strides 4, 8, 16, 32) as a list."""

    def __init__(self, config: BackboneConfig):
        super().__init__()
        block = {"basic": BasicBlock, "bottleneck": Bottleneck}[config.block]
        self.stem = nn.Sequential(
            *conv_norm(3, config.stem_width, 7, 2, config.norm), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages, cin = [], config.stem_width
        self.out_channels: list[int] = []
        for index, (width, depth) in enumerate(zip(config.widths, config.depths)):
            blocks = []
            for b in range(depth):
                stride = 2 if (b == 0 and index > 0) else 1
                blocks.append(block(cin, width, stride, config.norm))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
            self.out_channels.append(cin)
        self.stages = nn.ModuleList(stages)
        self._init_weights()

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
