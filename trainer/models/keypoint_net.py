"""Top-down keypoint model (SimpleBaseline style): a ResNet (stride 32 for r50, 16 for
tiny), transposed convolutions back to stride 4, a 1x1 conv to one heatmap per joint.

Contract: `input_size = (Hc, Wc)`; `forward(crops (B, 3, Hc, Wc) float32 RGB 0..255)`
returns heatmaps (B, J, Hc/4, Wc/4) float32; heatmap pixel (i, j) has its centre at
(j + 0.5, i + 0.5) heatmap units = crop pixels / 4.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trainer.config import KeypointConfig
from trainer.models.fcos import PIXEL_MEAN, PIXEL_STD
from trainer.models.resnet import ResNet, make_norm


class KeypointNet(nn.Module):
    def __init__(self, config: KeypointConfig, num_keypoints: int = 17):
        super().__init__()
        self.config = config
        self.input_size = tuple(int(v) for v in config.input_size)
        multiple = 4 * 2**config.deconv_layers
        if self.input_size[0] % multiple or self.input_size[1] % multiple:
            raise ValueError(f"crop size {self.input_size} must be a multiple of {multiple}")
        self.num_keypoints = num_keypoints
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1))
        self.backbone = ResNet(config.backbone)
        layers: list[nn.Module] = []
        cin = self.backbone.out_channels[-1]
        # The head starts from random weights: its norms train even where the backbone's are frozen.
        head_norm = "BN" if config.backbone.norm == "FrozenBN" else config.backbone.norm
        for _ in range(config.deconv_layers):
            # kernel 4, stride 2, padding 1: exactly doubles the size, no output padding.
            layers += [
                nn.ConvTranspose2d(cin, config.deconv_channels, 4, stride=2, padding=1, bias=False),
                make_norm(head_norm, config.deconv_channels),
                nn.ReLU(inplace=True),
            ]
            cin = config.deconv_channels
        self.deconv = nn.Sequential(*layers)
        self.final = nn.Conv2d(cin, num_keypoints, 1)
        for m in self.deconv.modules():
            if isinstance(m, nn.ConvTranspose2d):
                # He init, not SimpleBaseline's std 0.001: a norm layer follows, and under
                # SGD tiny weights before a norm mean a huge effective learning rate.
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.final.weight, std=0.001)
        nn.init.zeros_(self.final.bias)
        # The stem has stride 4 and every stage after the first halves the resolution.
        backbone_stride = 4 * 2 ** (len(config.backbone.widths) - 1)
        if backbone_stride != 4 * 2**config.deconv_layers:
            raise ValueError(f"{config.deconv_layers} deconvolutions cannot bring stride {backbone_stride} back to 4")

    def forward(self, crops: torch.Tensor, logits: bool = False) -> torch.Tensor:
        """crops (B, 3, Hc, Wc) float32 RGB 0..255 -> heatmaps (B, J, Hc/4, Wc/4) float32.

        Heatmaps are each joint's spatial softmax scaled by 2 pi sigma^2, the mass of the
        Gaussian target, so a prediction equal to its target peaks at 1 and the peak value
        serves as the keypoint's confidence. `logits=True` returns the raw scores (the
        training loss works on them).
        """
        x = (crops - self.pixel_mean) / self.pixel_std
        scores = self.final(self.deconv(self.backbone(x)[-1]))
        if logits:
            return scores
        batch, joints, height, width = scores.shape
        probs = torch.softmax(scores.flatten(2), dim=2).reshape(batch, joints, height, width)
        return probs * (2 * math.pi * self.config.sigma**2)
