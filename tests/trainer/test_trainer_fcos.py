"""FCOS: target assignment on a hand-made case, losses, and the candidates() contract."""

from __future__ import annotations

import pytest
import torch

from trainer.config import tiny_detector
from trainer.losses import assign_targets, giou_loss_ltrb, level_bounds, level_strides
from trainer.models.fcos import FCOS, level_locations


def _one_level(height: int, width: int, stride: int, bounds=(0.0, float("inf"))):
    points = level_locations(height, width, stride, "cpu")
    n = points.shape[0]
    return points, torch.tensor([bounds]).expand(n, 2), torch.full((n,), float(stride))


def test_level_locations_are_cell_centres():
    points = level_locations(2, 3, 8, "cpu")
    assert points.tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]


def test_assignment_hand_made_case():
    # 8x8 grid of stride 8 (64x64 image); one box [8, 8, 40, 40] with centre (24, 24).
    points, bounds, strides = _one_level(8, 8, 8)
    boxes = torch.tensor([[8.0, 8.0, 40.0, 40.0]])
    cls, box, ctr = assign_targets(points, bounds, strides, boxes, torch.tensor([3]), torch.zeros(0, 4), center_radius=1.5)
    positive = (cls == 3).nonzero().flatten().tolist()
    # Centre region: (24 +- 12) -> x, y in (12, 36): cell centres 20 and 28 -> 4 locations.
    expected = [r * 8 + c for r in (2, 3) for c in (2, 3)]
    assert sorted(positive) == expected
    assert (cls[[i for i in range(64) if i not in expected]] == -1).all()
    index = 2 * 8 + 2  # location (20, 20)
    assert box[index].tolist() == [12.0, 12.0, 20.0, 20.0]
    assert ctr[index].item() == pytest.approx(((12 / 20) * (12 / 20)) ** 0.5)


def test_assignment_prefers_smaller_box_and_respects_level_range_and_crowd():
    points, bounds, strides = _one_level(8, 8, 8)
    boxes = torch.tensor([[0.0, 0.0, 64.0, 64.0], [16.0, 16.0, 48.0, 48.0]])
    cls, _, _ = assign_targets(points, bounds, strides, boxes, torch.tensor([0, 1]), torch.zeros(0, 4), 1.5)
    assert cls[3 * 8 + 3].item() == 1  # (28, 28) lies in both centre regions: smaller wins
    # A level range that excludes max distances > 20 leaves the big box unassigned.
    _, small_bounds, _ = _one_level(8, 8, 8, bounds=(0.0, 20.0))
    cls, _, _ = assign_targets(points, small_bounds, strides, boxes[:1], torch.tensor([0]), torch.zeros(0, 4), 1.5)
    assert (cls == 0).sum() == 0
    # Crowd: negatives inside the crowd box become ignored (-2); positives stay.
    crowd = torch.tensor([[0.0, 0.0, 32.0, 32.0]])
    cls, _, _ = assign_targets(points, bounds, strides, boxes[1:], torch.tensor([1]), crowd, 1.5)
    assert cls[0].item() == -2 and cls[3 * 8 + 3].item() == 1 and cls[7 * 8 + 7].item() == -1


def test_level_tables():
    bounds = level_bounds([2, 1], (64,), "cpu")
    assert bounds.tolist() == [[0, 64], [0, 64], [64, float("inf")]]
    assert level_strides([2, 1], (8, 16), "cpu").tolist() == [8, 8, 16]


# One size bound splits two levels: one level too many and one too few are each refused,
# by the count check (without it, the first fails on an index, the second not at all).
@pytest.mark.parametrize("level_sizes, message", [
    pytest.param([2, 1, 1], "3 levels but 2 size ranges", id="one-level-too-many"),
    pytest.param([2], "1 levels but 2 size ranges", id="one-level-too-few"),
])
def test_level_bounds_refuse_a_level_count_that_misses_the_size_bounds(level_sizes, message):
    with pytest.raises(ValueError, match=message):
        level_bounds(level_sizes, (64,), "cpu")


def test_giou_loss():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert giou_loss_ltrb(a, a).item() == pytest.approx(0.0, abs=1e-6)
    # Same point, box [-1,-1,1,1] vs [-2,-2,2,2]: IoU 1/4, enclosure = union -> loss 0.75.
    assert giou_loss_ltrb(torch.tensor([[1.0] * 4]), torch.tensor([[2.0] * 4])).item() == pytest.approx(0.75)


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    return FCOS(tiny_detector(), num_classes=3).eval()


@pytest.mark.parametrize("batch,height,width", [(1, 64, 64), (2, 128, 192), (3, 256, 128)])
def test_candidates_shapes_padding_and_ranges(detector, batch, height, width):
    topk = 700
    images = torch.rand(batch, 3, height, width) * 255
    with torch.no_grad():
        boxes, scores, labels = detector.candidates(images, topk)
    assert boxes.shape == (batch, topk, 4) and scores.shape == (batch, topk) and labels.shape == (batch, topk)
    assert boxes.dtype == torch.float32 and scores.dtype == torch.float32 and labels.dtype == torch.int64
    locations = sum((height // s) * (width // s) for s in detector.strides)
    real = min(topk, locations * 3)
    assert (scores[:, :real] > 0).all() and (scores[:, real:] == 0).all()
    assert (boxes[:, real:] == 0).all()
    assert (scores[:, :-1] >= scores[:, 1:]).all()  # sorted
    assert labels.min() >= 0 and labels.max() < 3
    assert (boxes[..., 0::2] <= width).all() and (boxes[..., 1::2] <= height).all() and (boxes >= 0).all()


def test_candidates_score_is_geometric_mean(detector):
    images = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        logits, _, centerness, _ = detector.head_outputs(images)
        _, scores, labels = detector.candidates(images, 5)
    expected = torch.sqrt(torch.sigmoid(logits) * torch.sigmoid(centerness)[..., None]).flatten().sort(descending=True).values[:5]
    assert torch.allclose(scores[0], expected)


def test_losses_are_finite_and_reach_every_parameter():
    torch.manual_seed(0)
    model = FCOS(tiny_detector(), num_classes=2).train()
    images = torch.rand(2, 3, 128, 128) * 255
    targets = [
        {"boxes": torch.tensor([[10.0, 10.0, 60.0, 90.0]]), "labels": torch.tensor([1]), "crowd": torch.tensor([[70.0, 70.0, 120.0, 120.0]])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "crowd": torch.zeros(0, 4)},
    ]
    losses = model(images, targets)
    assert set(losses) == {"loss_cls", "loss_box", "loss_ctr"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None for p in model.parameters())
