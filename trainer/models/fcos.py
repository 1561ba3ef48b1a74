"""FCOS: a fully convolutional one-stage, anchor-free detector on ResNet + FPN.

Contract (the exporter relies on it): the module takes float32 NCHW RGB pixel values in
0..255 and normalizes inside; `strides` lists the FPN strides; `candidates(images, topk)`
returns the pre-NMS top-K (boxes xyxy in input pixels, scores, class indices), traceable
for dynamic batch, height and width (multiples of max(strides)).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trainer.config import DetectorConfig
from trainer.models.fpn import FPN
from trainer.models.resnet import ResNet, make_norm

PIXEL_MEAN = (123.675, 116.28, 103.53)  # RGB, 0..255
PIXEL_STD = (58.395, 57.12, 57.375)


class Scale(nn.Module):
    """A learnable scalar per FPN level for the regression branch."""

    def __init__(self, value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class FCOSHead(nn.Module):
    """Shared towers (conv + GroupNorm + ReLU); centerness rides on the box tower."""

    def __init__(self, channels: int, num_classes: int, num_convs: int, num_levels: int):
        super().__init__()

        def tower() -> nn.Sequential:
            layers: list[nn.Module] = []
            for _ in range(num_convs):
                layers += [nn.Conv2d(channels, channels, 3, padding=1), make_norm("GN", channels), nn.ReLU(inplace=True)]
            return nn.Sequential(*layers)

        self.cls_tower, self.box_tower = tower(), tower()
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale() for _ in range(num_levels))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        # Focal-loss prior: start every location at p(object) = 0.01 so the flood of
        # easy negatives does not blow up the first iterations.
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - 0.01) / 0.01))

    def forward(self, features: list[torch.Tensor], strides: tuple[int, ...]):
        """Per level: logits (B, C, h, w), ltrb distances in pixels (B, 4, h, w), centerness logits (B, 1, h, w)."""
        logits, distances, centerness = [], [], []
        for feature, scale, stride in zip(features, self.scales, strides):
            cls = self.cls_tower(feature)
            box = self.box_tower(feature)
            logits.append(self.cls_logits(cls))
            # Distances normalized by the stride, so every level regresses O(1) values.
            distances.append(torch.relu(scale(self.bbox_pred(box))) * stride)
            centerness.append(self.centerness(box))
        return logits, distances, centerness


def level_locations(height: int, width: int, stride: int, device, dtype=torch.float32) -> torch.Tensor:
    """(h*w, 2) xy centres of a level's cells in input pixels: ((j + 0.5) s, (i + 0.5) s)."""
    xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) * stride
    ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) * stride
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)


def flatten_levels(per_level: list[torch.Tensor]) -> torch.Tensor:
    """[(B, C, h, w)] -> (B, sum h*w, C), level-major then row-major."""
    return torch.cat([x.flatten(2).transpose(1, 2) for x in per_level], dim=1)


class FCOS(nn.Module):
    def __init__(self, config: DetectorConfig, num_classes: int):
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        self.strides = tuple(int(s) for s in config.strides)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1))
        self.backbone = ResNet(config.backbone)
        self.fpn = FPN(self.backbone.out_channels[1:], config.fpn_channels, len(self.strides))
        self.head = FCOSHead(config.fpn_channels, num_classes, config.head_convs, len(self.strides))

    def head_outputs(self, images: torch.Tensor):
        """images (B, 3, H, W) float32 0..255 -> flattened logits (B, L, C), ltrb (B, L, 4),
        centerness logits (B, L), and the per-level feature shapes."""
        x = (images - self.pixel_mean) / self.pixel_std
        features = self.fpn(self.backbone(x)[1:])
        logits, distances, centerness = self.head(features, self.strides)
        return (
            flatten_levels(logits),
            flatten_levels(distances),
            flatten_levels(centerness).squeeze(2),
            features,
        )

    def locations(self, features: list[torch.Tensor]) -> torch.Tensor:
        """(L, 2) xy of every location, in the same order as `flatten_levels`."""
        return torch.cat(
            [level_locations(f.shape[2], f.shape[3], s, f.device) for f, s in zip(features, self.strides)]
        )

    def candidates(self, images: torch.Tensor, topk: int):
        """Pre-NMS top-K detections per image.

        images: (B, 3, H, W) float32 RGB 0..255, H and W multiples of max(strides).
        Returns boxes (B, K, 4) float32 xyxy in input pixels, scores (B, K) float32 with
        score = sqrt(sigmoid(cls) * sigmoid(centerness)), labels (B, K) int64 class
        indices; padded with score 0 and zero boxes when fewer than K candidates exist.
        """
        logits, distances, centerness, features = self.head_outputs(images)
        points = self.locations(features)  # (L, 2)
        batch, num_classes = logits.shape[0], logits.shape[2]
        scores = torch.sqrt(torch.sigmoid(logits) * torch.sigmoid(centerness).unsqueeze(2))
        boxes = torch.cat([points.unsqueeze(0) - distances[..., :2], points.unsqueeze(0) + distances[..., 2:]], dim=2)
        # Clip to the input; sizes come from the tensor so the graph stays dynamic.
        width = images.new_ones(()) * images.shape[3]
        height = images.new_ones(()) * images.shape[2]
        limits = torch.stack([width, height, width, height])
        boxes = torch.minimum(boxes.clamp(min=0.0), limits)
        # Pad with K zero-score entries so topk(K) is always valid without Python control
        # flow on the (dynamic) number of locations.
        flat = torch.cat([scores.flatten(1), scores.new_zeros(batch, topk)], dim=1)
        boxes = torch.cat([boxes, boxes.new_zeros(batch, topk, 4)], dim=1)
        top_scores, index = flat.topk(topk, dim=1)
        location = torch.div(index, num_classes, rounding_mode="floor")
        labels = index - location * num_classes
        top_boxes = torch.gather(boxes, 1, location.unsqueeze(2).expand(batch, topk, 4))
        valid = top_scores > 0
        labels = torch.where(valid, labels, torch.zeros_like(labels))
        top_boxes = top_boxes * valid.unsqueeze(2).to(top_boxes.dtype)
        return top_boxes, top_scores, labels

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None):
        """Training losses when `targets` are given (the path DDP wraps), else candidates
        with the config's top-K."""
        if targets is not None:
            return self.losses(images, targets)
        return self.candidates(images, self.config.topk_candidates)

    def losses(self, images: torch.Tensor, targets: list[dict]) -> dict[str, torch.Tensor]:
        """Training losses; targets[i] has "boxes" (M, 4) float32 xyxy, "labels" (M,)
        int64 class indices and "crowd" (K, 4) float32 xyxy regions to ignore."""
        from trainer.losses import fcos_losses

        logits, distances, centerness, features = self.head_outputs(images)
        points = self.locations(features)
        level_sizes = [f.shape[2] * f.shape[3] for f in features]
        return fcos_losses(logits, distances, centerness, points, level_sizes, targets, self.config)
