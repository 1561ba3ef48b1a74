"""Parity: the exported graph against the PyTorch module it came from, on the same images.

Two runners (any `engine.backends` Backend) get identical feeds; outputs are compared
with task-level tolerances, because bit equality is not what labeling needs:

- detector: every one of the reference's top candidates (by score, padding excluded)
  must have a candidate of the same class in the other runner's top-K whose box has
  IoU >= 0.99 (or, for boxes too small for IoU to mean anything, every coordinate within
  0.01 px) and whose score is within 1e-3;
- keypoints: the argmax position of each (crop, joint) heatmap must agree for >= 99% of
  them (a position that differs only where the reference's values tie within 1e-5 is
  counted as agreeing: the argmax of a flat heatmap is arbitrary), and every map's values
  must agree too: its max |diff| within 1e-3 of the reference map's own dynamic range
  (max - min). Argmax alone passes a graph whose heatmaps are doubled, or that sees its
  input shifted, wherever the peaks stay put; the engine also reads the peak's value
  (the keypoint score) and its neighbours (sub-pixel decoding, ensembling).

Every output's max absolute difference is reported too. Images come from a folder of
real photos when one is given, synthetic ones otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.backends.base import Backend
from engine.coco.geometry import box_iou
from engine.modelcard import ModelCard

IOU_MIN = 0.99
SCORE_ATOL = 1e-3
SMALL_BOX_ATOL = 0.01  # px
ARGMAX_AGREEMENT = 0.99
ARGMAX_TIE_ATOL = 1e-5
# Heatmap values: max |diff| of a (crop, joint) map / the reference map's range, worst map.
# Measured on the CPU, ONNX Runtime vs PyTorch in float32, on `tests/export`'s keypoint
# model with real peaks (0.1..12, median ~0.5; 2-16 synthetic images, 3-16 coco-mini):
#   correct export                                  7.4e-6 .. 1.3e-5
#   (experiment's trained tiny teacher-keypoints    2.9e-6 .. 3.3e-6;
#    the shared 3-step test model, flat maps         3.0e-5)
#   deliberate bugs, smallest first:
#   Gaussian noise, 0.01% of every weight's std     3.5e-3 .. 6.9e-3
#   Gaussian noise, 0.1% of the final conv's std    3.7e-3 .. 7.0e-3
#   weights rounded to float16                      9.1e-3 .. 1.4e-2
#   heatmaps x 1.01                                 1.0e-2
#   Gaussian noise, 1% of the final conv's std      3.7e-2 .. 7.1e-2 (argmax agrees 97-100%)
#   input shifted by -1 / -10 grey levels           0.18 .. 0.25 / 3.0 .. 5.9
#   heatmaps doubled                                1.0 (argmax agrees 100%)
#   all-zeros input                                 8.9 .. 12
# 1e-3 sits 75x above the worst correct export and 3.5x below the smallest bug. Reduced
# precision is a different comparison: float16 weights alone cost ~1e-2, and TensorRT's
# TF32 convolutions likely as much (not measured, no GPU here): `run_parity(value_rtol=)`.
HEATMAP_VALUE_RTOL = 1e-3
# A map whose range is under 1% of its largest |value| is nearly constant (an untrained
# head): its range is then taken as that 1%, so float32 rounding of the values (a few
# ulps, ~1e-7 of them) cannot fail it, while a doubled or input-blind map still does.
FLAT_MAP_FRACTION = 1e-2
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class ParityRow:
    output: str
    max_abs_diff: float
    check: str
    ok: bool
    detail: str = ""


@dataclass
class ParityReport:
    reference: str
    candidate: str
    source: str  # where the images came from
    rows: list[ParityRow] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(row.ok for row in self.rows)

    def table(self) -> str:
        header = f"parity: {self.candidate} vs {self.reference} on {self.source}"
        lines = [header, f"{'output':<10} {'max |diff|':>11}  {'check':<44} result"]
        for row in self.rows:
            lines.append(f"{row.output:<10} {row.max_abs_diff:>11.3g}  {row.check:<44} "
                         f"{'ok' if row.ok else 'FAIL'}")
        return "\n".join(lines)

    def failure(self) -> str:
        """One line naming every output that differed and by how much."""
        bad = [f"{row.output}: {row.detail or row.check} (max |diff| {row.max_abs_diff:.3g})"
               for row in self.rows if not row.ok]
        return "parity check failed: " + "; ".join(bad)


@dataclass
class TopMatch:
    """How the reference's top candidates found partners in the test's outputs."""

    checked: int = 0
    unmatched: int = 0
    worst_iou: float = 1.0  # of the best acceptable match (or closest miss) per candidate
    worst_score: float = 0.0
    box_diff: float = 0.0  # max coordinate difference over those pairs, px

    @property
    def matched(self) -> int:
        return self.checked - self.unmatched


def match_top_candidates(ref: list[dict], test: list[dict], top: int, iou_min: float = IOU_MIN,
                         score_atol: float = SCORE_ATOL, box_atol: float = SMALL_BOX_ATOL) -> TopMatch:
    """Each of the reference's `top` candidates per image (score > 0) is matched when the
    test holds a same-class candidate with IoU >= `iou_min` (or every coordinate within
    `box_atol` px: boxes too small for IoU) and a score within `score_atol`.
    ref/test: per feed, {"boxes" (B,K,4) xyxy px, "scores" (B,K), "labels" (B,K)}."""
    result = TopMatch()
    for r, t in zip(ref, test):
        for i in range(r["scores"].shape[0]):
            order = np.argsort(-r["scores"][i], kind="stable")[:top]
            order = order[r["scores"][i][order] > 0]  # padding is not a candidate
            for k in order:
                same = np.flatnonzero(t["labels"][i] == r["labels"][i][k])
                result.checked += 1
                if same.size == 0:
                    result.unmatched += 1
                    result.worst_iou = 0.0
                    continue
                ious = box_iou(r["boxes"][i][k][None], t["boxes"][i][same])[0]
                close = np.abs(t["boxes"][i][same] - r["boxes"][i][k]).max(axis=1) <= box_atol
                ious = np.where(close, 1.0, ious)
                score_diff = np.abs(t["scores"][i][same] - r["scores"][i][k])
                good = (ious >= iou_min) & (score_diff <= score_atol)
                # Report the best acceptable match, or the closest miss when there is none.
                best = int(np.argmax(np.where(good, ious, -1.0))) if good.any() else int(np.argmax(ious - score_diff))
                result.worst_iou = min(result.worst_iou, float(ious[best]))
                result.worst_score = max(result.worst_score, float(score_diff[best]))
                result.box_diff = max(result.box_diff,
                                      float(np.abs(t["boxes"][i][same[best]] - r["boxes"][i][k]).max()))
                result.unmatched += int(not good.any())
    return result


def compare_detector(ref: list[dict], test: list[dict], top: int) -> list[ParityRow]:
    """ref/test: per feed, {"boxes" (B,K,4), "scores" (B,K), "labels" (B,K)}."""
    match = match_top_candidates(ref, test, top)
    checked, unmatched = match.checked, match.unmatched
    worst_iou, worst_score, box_diff = match.worst_iou, match.worst_score, match.box_diff
    # Scores are sorted, so position-wise differences mean something; boxes and labels of
    # near-tied candidates may swap ranks, so their difference is taken over matched pairs.
    score_max = max(float(np.abs(r["scores"].astype(np.float64) - t["scores"]).max(initial=0.0))
                    for r, t in zip(ref, test))
    ok = unmatched == 0 and checked > 0
    detail = (f"{unmatched}/{checked} top candidates unmatched (worst IoU {worst_iou:.4f}, "
              f"worst score diff {worst_score:.3g})" if checked else "reference produced no candidates")
    return [
        ParityRow("boxes", box_diff, f"top-{top} same class, IoU>={IOU_MIN}: {checked - unmatched}/{checked}",
                  ok and worst_iou >= IOU_MIN, detail),
        ParityRow("scores", score_max, f"matched |diff|<={SCORE_ATOL:g} (worst {worst_score:.2g})",
                  ok and worst_score <= SCORE_ATOL, detail),
    ]


def heatmap_value_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per map: max |a - b| over the map / the reference map's dynamic range.

    a, b: (N, P) float32, N maps (crop x joint) of P pixels, `a` the reference. The range
    is max - min of `a`'s map, at least FLAT_MAP_FRACTION of its largest |value|.
    Returns (N,) float64; NaN where either side has NaN.
    """
    span = a.max(axis=1).astype(np.float64) - a.min(axis=1)
    scale = np.maximum(span, FLAT_MAP_FRACTION * np.abs(a).max(axis=1))
    scale = np.maximum(scale, np.finfo(np.float32).tiny)  # an all-zero reference map
    return np.abs(a.astype(np.float64) - b).max(axis=1) / scale


def compare_keypoints(ref: list[dict], test: list[dict], value_rtol: float | None = None) -> list[ParityRow]:
    """ref/test: per feed, {"heatmaps" (B,J,h,w)}; compares per-joint argmax positions and
    values (max |diff| per map within `value_rtol`, default HEATMAP_VALUE_RTOL, of the
    reference map's range). Returns two rows, both named "heatmaps"."""
    value_rtol = HEATMAP_VALUE_RTOL if value_rtol is None else value_rtol
    agree = total = close = 0
    max_diff = worst = 0.0
    for r, t in zip(ref, test):
        a = r["heatmaps"].astype(np.float32)
        b = t["heatmaps"].astype(np.float32)
        if a.shape != b.shape:  # nothing to compare position by position: every map fails
            total += a.shape[0] * a.shape[1]
            max_diff = worst = float("inf")
            continue
        max_diff = max(max_diff, float(np.abs(a - b).max(initial=0.0)))
        flat_a, flat_b = a.reshape(-1, a.shape[2] * a.shape[3]), b.reshape(-1, b.shape[2] * b.shape[3])
        ia, ib = flat_a.argmax(axis=1), flat_b.argmax(axis=1)
        rows = np.arange(flat_a.shape[0])
        tie = flat_a[rows, ia] - flat_a[rows, ib] <= ARGMAX_TIE_ATOL
        agree += int(np.count_nonzero((ia == ib) | tie))
        error = heatmap_value_error(flat_a, flat_b)
        close += int(np.count_nonzero(error <= value_rtol))  # NaN is never close
        worst = max(worst, float(np.nan_to_num(error, nan=np.inf).max(initial=0.0)))
        total += flat_a.shape[0]
    fraction = agree / total if total else 0.0
    check = f"argmax agrees {agree}/{total} ({fraction:.1%}) >= {ARGMAX_AGREEMENT:.0%}"
    return [
        ParityRow("heatmaps", max_diff, check, total > 0 and fraction >= ARGMAX_AGREEMENT,
                  f"argmax positions agree for {fraction:.2%} of joints, need {ARGMAX_AGREEMENT:.0%}"),
        ParityRow("heatmaps", max_diff, f"|diff|<={value_rtol:g} x map range (worst {worst:.2g})",
                  total > 0 and close == total,
                  f"values differ by up to {worst:.3g} of a map's range in {total - close}/{total} maps, "
                  f"need <= {value_rtol:g}"),
    ]


def run_parity(reference: Backend, candidate: Backend, feeds: Sequence[np.ndarray], card: ModelCard,
               source: str, value_rtol: float | None = None) -> ParityReport:
    """Activate both runners, feed each (B,3,H,W) uint8 array to both, compare.
    value_rtol: keypoint heatmap tolerance (default HEATMAP_VALUE_RTOL, for float32)."""
    ref_out, test_out = [], []
    with reference, candidate:
        for feed in feeds:
            ref_out.append(reference.infer({card.input_name: feed}))
            test_out.append(candidate.infer({card.input_name: feed}))
    report = ParityReport(reference.name, candidate.name, source)
    if card.task == "detect":
        report.rows = compare_detector(ref_out, test_out, top=max(1, min(100, (card.topk or 2) // 2)))
    else:
        report.rows = compare_keypoints(ref_out, test_out, value_rtol)
    return report


def list_images(folder: str | Path, limit: int) -> list[Path]:
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return paths[:limit]


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; grayscale files become three equal channels."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def synthetic_images(count: int, seed: int = 0, size: tuple[int, int] = (480, 640)) -> list[np.ndarray]:
    """Structured (not white-noise) RGB images: gradients plus filled shapes, (H, W, 3) uint8."""
    import cv2

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        h, w = size
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([xx / w, yy / h, (xx + yy) / (w + h)], axis=2) * rng.uniform(60, 200, 3)
        image = np.ascontiguousarray(base.astype(np.uint8))
        for _ in range(8):
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
            axes = (int(rng.integers(10, w // 4)), int(rng.integers(10, h // 3)))
            cv2.ellipse(image, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
        images.append(image)
    return images


def detector_feeds(images: Sequence[np.ndarray], short_side: int, max_size: int, stride: int) -> list[np.ndarray]:
    """One (1,3,H,W) uint8 feed per image: resized so the shorter side is `short_side`
    (longer side capped at `max_size`), zero-padded right/bottom to multiples of `stride`."""
    from engine.scaling import resize_to_scale, round_up

    feeds = []
    for image in images:
        resized = resize_to_scale(image, short_side, max_size)
        nh, nw = resized.shape[:2]
        ph, pw = round_up(nh, stride), round_up(nw, stride)
        canvas = np.zeros((ph, pw, 3), np.uint8)
        canvas[:nh, :nw] = resized
        feeds.append(canvas.transpose(2, 0, 1)[None].copy())
    return feeds


def keypoint_feeds(images: Sequence[np.ndarray], size: tuple[int, int], per_image: int = 2,
                   batch: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Crops of random boxes of each image, resized to `size` (Hc, Wc), in batches of
    (B,3,Hc,Wc) uint8."""
    import cv2

    rng = np.random.default_rng(seed)
    hc, wc = size
    crops = []
    for image in images:
        h, w = image.shape[:2]
        for _ in range(per_image):
            bh = int(rng.integers(max(2, h // 4), h + 1))
            bw = min(w, max(2, int(bh * wc / hc)))
            y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
            crop = cv2.resize(image[y:y + bh, x:x + bw], (wc, hc), interpolation=cv2.INTER_LINEAR)
            crops.append(crop.transpose(2, 0, 1))
    return [np.stack(crops[i:i + batch]) for i in range(0, len(crops), batch)]


def parity_feeds(card: ModelCard, image_dir: str | Path | None, count: int = 4,
                 short_side: int = 320, max_size: int = 512) -> tuple[list[np.ndarray], str]:
    """Feeds for `card`'s model from real photos in `image_dir` when it holds any, else
    synthetic; returns (feeds, a description of the source)."""
    paths = list_images(image_dir, count) if image_dir and Path(image_dir).is_dir() else []
    if paths:
        images, source = [read_rgb(p) for p in paths], f"{len(paths)} real images from {image_dir}"
    else:
        images, source = synthetic_images(count), f"{count} synthetic images"
    if card.task == "detect":
        return detector_feeds(images, short_side, max_size, card.max_stride), source
    hc, wc = card.input_size or (0, 0)
    return keypoint_feeds(images, (hc, wc)), source
