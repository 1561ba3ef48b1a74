"""Feature pyramid: lateral 1x1 + top-down nearest upsampling + 3x3 smoothing on C3..C5,
and extra stride-2 levels computed from P5 (as FCOS does) up to the configured count."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FPN(nn.Module):
    def __init__(self, in_channels: list[int], channels: int, num_levels: int):
        """in_channels: channels of C3, C4, C5; num_levels >= 3 output levels from P3."""
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels)
        self.extra = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, stride=2, padding=1)
            for _ in range(num_levels - len(in_channels))
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """features: [C3, C4, C5]; returns [P3, ..., Pn], each (B, channels, H/s, W/s)."""
        laterals = [conv(f) for conv, f in zip(self.lateral, features)]
        for i in range(len(laterals) - 1, 0, -1):
            # Input sizes are multiples of the largest stride, so x2 upsampling is exact.
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], scale_factor=2.0, mode="nearest")
        outputs = [conv(x) for conv, x in zip(self.output, laterals)]
        x = outputs[-1]
        for i, conv in enumerate(self.extra):
            x = conv(x if i == 0 else F.relu(x))
            outputs.append(x)
        return outputs
