"""FCOS target assignment and losses (sigmoid focal loss, GIoU, centerness BCE).

Assignment (per image): a location is a positive candidate for a ground-truth box when it
lies inside the box's centre region (the box centre +- `center_radius` strides, clipped to
the box) and the largest of its four distances to the box sides falls in its level's
range; among several candidates it takes the box of smallest area. Locations inside a
crowd region that are not positive are *ignored* (neither positive nor negative).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.config import DetectorConfig
from trainer.distributed import all_reduce_mean


def level_bounds(level_sizes: list[int], size_bounds: tuple[int, ...], device) -> torch.Tensor:
    """(L, 2) [lo, hi) regression range of each location's level, in input pixels."""
    edges = [0.0] + [float(b) for b in size_bounds] + [float("inf")]
    if len(edges) - 1 != len(level_sizes):
        raise ValueError(f"{len(level_sizes)} levels but {len(edges) - 1} size ranges")
    rows = [torch.tensor([[edges[i], edges[i + 1]]], device=device).expand(n, 2) for i, n in enumerate(level_sizes)]
    return torch.cat(rows)


def level_strides(level_sizes: list[int], strides: tuple[int, ...], device) -> torch.Tensor:
    """(L,) stride of each location's level."""
    return torch.cat([torch.full((n,), float(s), device=device) for n, s in zip(level_sizes, strides)])


def assign_targets(
    points: torch.Tensor,
    bounds: torch.Tensor,
    strides: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    crowd: torch.Tensor,
    center_radius: float,
):
    """FCOS targets for one image.

    points (L, 2) xy; bounds (L, 2); strides (L,); boxes (M, 4) xyxy; labels (M,) int64;
    crowd (K, 4) xyxy. Returns cls_target (L,) int64 (class index, -1 background, -2
    ignored), box_target (L, 4) ltrb distances in pixels, ctr_target (L,) in [0, 1].
    """
    num_points = points.shape[0]
    cls_target = torch.full((num_points,), -1, dtype=torch.int64, device=points.device)
    box_target = points.new_zeros(num_points, 4)
    ctr_target = points.new_zeros(num_points)
    if boxes.numel():
        x, y = points[:, 0:1], points[:, 1:2]  # (L, 1)
        ltrb = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], dim=2)  # (L, M, 4)
        # Centre sampling: a sub-box of radius r * stride around the centre, within the box.
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        radius = strides[:, None] * center_radius
        cx1, cy1 = torch.maximum(cx - radius, boxes[:, 0]), torch.maximum(cy - radius, boxes[:, 1])
        cx2, cy2 = torch.minimum(cx + radius, boxes[:, 2]), torch.minimum(cy + radius, boxes[:, 3])
        in_center = (x > cx1) & (x < cx2) & (y > cy1) & (y < cy2)
        max_dist = ltrb.max(dim=2).values
        in_range = (max_dist >= bounds[:, 0:1]) & (max_dist <= bounds[:, 1:2])
        area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand(num_points, -1).clone()
        area[~(in_center & in_range)] = float("inf")
        min_area, gt_index = area.min(dim=1)
        positive = torch.isfinite(min_area)
        cls_target[positive] = labels[gt_index[positive]]
        chosen = ltrb[torch.arange(num_points, device=points.device), gt_index]  # (L, 4)
        box_target[positive] = chosen[positive]
        lr, tb = chosen[positive][:, 0::2], chosen[positive][:, 1::2]
        ratio = (lr.min(1).values / lr.max(1).values.clamp(min=1e-6)) * (tb.min(1).values / tb.max(1).values.clamp(min=1e-6))
        ctr_target[positive] = ratio.clamp(min=0).sqrt()
    if crowd.numel():
        x, y = points[:, 0:1], points[:, 1:2]
        in_crowd = ((x > crowd[:, 0]) & (x < crowd[:, 2]) & (y > crowd[:, 1]) & (y < crowd[:, 3])).any(dim=1)
        cls_target[in_crowd & (cls_target == -1)] = -2
    return cls_target, box_target, ctr_target


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Summed focal loss; logits and one-hot targets (N, C) float."""
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * loss).sum()


def giou_loss_ltrb(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N,) 1 - GIoU of boxes given as ltrb distances from the same point, (N, 4) each."""
    pred_area = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3])
    target_area = (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3])
    inter_w = torch.minimum(pred[:, 0], target[:, 0]) + torch.minimum(pred[:, 2], target[:, 2])
    inter_h = torch.minimum(pred[:, 1], target[:, 1]) + torch.minimum(pred[:, 3], target[:, 3])
    inter = inter_w.clamp(min=0) * inter_h.clamp(min=0)
    union = pred_area + target_area - inter
    iou = inter / union.clamp(min=1e-6)
    enclose_w = torch.maximum(pred[:, 0], target[:, 0]) + torch.maximum(pred[:, 2], target[:, 2])
    enclose_h = torch.maximum(pred[:, 1], target[:, 1]) + torch.maximum(pred[:, 3], target[:, 3])
    enclose = (enclose_w * enclose_h).clamp(min=1e-6)
    return 1 - (iou - (enclose - union) / enclose)


def fcos_losses(
    logits: torch.Tensor,
    distances: torch.Tensor,
    centerness: torch.Tensor,
    points: torch.Tensor,
    level_sizes: list[int],
    targets: list[dict],
    config: DetectorConfig,
) -> dict[str, torch.Tensor]:
    """logits (B, L, C), distances (B, L, 4) ltrb pixels, centerness (B, L) logits."""
    device = logits.device
    bounds = level_bounds(level_sizes, config.size_bounds, device)
    strides = level_strides(level_sizes, config.strides, device)
    assigned = [
        assign_targets(points, bounds, strides, t["boxes"].to(device), t["labels"].to(device), t["crowd"].to(device), config.center_radius)
        for t in targets
    ]
    cls_t = torch.stack([a[0] for a in assigned]).flatten()
    box_t = torch.stack([a[1] for a in assigned]).flatten(0, 1)
    ctr_t = torch.stack([a[2] for a in assigned]).flatten()
    logits = logits.flatten(0, 1).float()
    distances = distances.flatten(0, 1).float()
    centerness = centerness.flatten().float()

    positive = cls_t >= 0
    valid = cls_t >= -1
    # Normalizers averaged over DDP ranks so every rank scales its gradient the same way.
    num_pos = max(all_reduce_mean(positive.sum().float()).item(), 1.0)
    one_hot = torch.zeros_like(logits)
    one_hot[positive, cls_t[positive]] = 1.0
    loss_cls = sigmoid_focal_loss(logits[valid], one_hot[valid], config.focal_alpha, config.focal_gamma) / num_pos
    # Outside the branch below: every rank must join the same collectives.
    ctr_sum = max(all_reduce_mean(ctr_t[positive].sum()).item(), 1e-6)
    if positive.any():
        loss_box = (giou_loss_ltrb(distances[positive], box_t[positive]) * ctr_t[positive]).sum() / ctr_sum
        loss_ctr = F.binary_cross_entropy_with_logits(centerness[positive], ctr_t[positive], reduction="sum") / num_pos
    else:
        # Keep the graph connected (DDP needs every parameter to get a gradient).
        loss_box = distances.sum() * 0.0
        loss_ctr = centerness.sum() * 0.0
    return {"loss_cls": loss_cls, "loss_box": loss_box, "loss_ctr": loss_ctr}
