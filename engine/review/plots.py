"""The threshold plots: per category, generated instances per image against the score
threshold (the labeled set's mean and the chosen threshold marked); the histogram of
visible keypoints per person (the labeled mean marked).

The curve comes from the labeling run's score histograms when `--predictions` is given
(every threshold from 0 to 1), otherwise from the labels' own scores, which exist only
at and above the threshold, so that curve starts there. The plots say which.

matplotlib is the optional `plots` extra: it is imported here, lazily, through its
object API (no pyplot, no global backend switch), and without it the gallery is built
all the same and says the plots were skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.coco.read import CocoSet
from engine.review.read import PLOT_BINS, NearThreshold, category_records, score_bin

SKIPPED = "matplotlib is not installed (pip install 'distill[plots]')"


@dataclass
class Curve:
    """Instances per image `per_image` `(K,)` kept at each score threshold `grid` `(K,)`
    (multiples of 1 / PLOT_BINS) for one category; `source` is "predictions" or
    "labels"; `threshold`, `labeled_mean`: what the labels record (None: not recorded)."""

    category_id: int
    name: str
    grid: np.ndarray
    per_image: np.ndarray
    source: str
    images: int
    threshold: float | None
    labeled_mean: float | None


def _at_or_above(histogram: np.ndarray) -> np.ndarray:
    """`(PLOT_BINS,)` number of scores >= k / PLOT_BINS for every k."""
    return np.cumsum(histogram[::-1])[::-1]


def instance_curves(labels: CocoSet, thresholds: dict[int, float | None],
                    near: NearThreshold | None) -> list[Curve]:
    """One curve per category of the labels, in their order."""
    rows = category_records(labels)
    grid = np.arange(PLOT_BINS) / PLOT_BINS
    label_scores: dict[int, list[float]] = {cid: [] for cid in labels.categories}
    if near is None:  # one pass over the labels, not one per category
        for image_labels in labels.annotations.values():
            for a in image_labels:
                label_scores[a["category_id"]].append(a.get("score", 1.0))
    curves = []
    for cid, category in labels.categories.items():
        labeled_mean = rows.get(cid, {}).get("labeled_per_image")
        threshold = thresholds.get(cid)
        if near is not None:
            histogram = near.histograms.get(cid, np.zeros(PLOT_BINS, np.int64))
            counts, images, start, source = _at_or_above(histogram), near.records, 0, "predictions"
        else:
            scores = label_scores[cid]
            histogram = np.bincount([score_bin(s) for s in scores], minlength=PLOT_BINS)
            lowest = threshold if threshold is not None else min(scores, default=1.0)
            counts, images, start, source = _at_or_above(histogram), len(labels.images), score_bin(lowest), "labels"
        curves.append(Curve(cid, category["name"], grid[start:], counts[start:] / images, source, images,
                            threshold, labeled_mean))
    return curves


def visible_keypoints(labels: CocoSet) -> dict[int, tuple[str, np.ndarray]]:
    """{category id: (name, `(J + 1,)` int64 number of its labels with 0..J visible
    keypoints)} for every category with keypoints."""
    joints = {cid: len(c.get("keypoints") or []) for cid, c in labels.categories.items() if c.get("keypoints")}
    visible: dict[int, list[int]] = {cid: [] for cid in joints}
    for image_labels in labels.annotations.values():
        for a in image_labels:
            if a["category_id"] in visible and a.get("keypoints"):
                visible[a["category_id"]].append(sum(1 for v in a["keypoints"][2::3] if v > 0))
    return {cid: (labels.categories[cid]["name"],
                  np.bincount(np.asarray(visible[cid], np.int64), minlength=n + 1)[:n + 1])
            for cid, n in joints.items()}


@dataclass
class Plots:
    """Written PNGs ({"category-<id>" or "keypoints-<id>": path}), or why none was."""

    files: dict[str, Path]
    skipped: str | None = None


def _figure(Figure):
    """A 384 x 256 px figure with fixed margins (a constrained layout would draw every
    figure twice, and doubles the plotting time)."""
    figure = Figure(figsize=(4.8, 3.2), dpi=80)
    figure.subplots_adjust(left=0.13, right=0.97, bottom=0.15, top=0.85)
    return figure


def write_plots(out_dir: Path, curves: list[Curve], visible: dict[int, tuple[str, np.ndarray]],
                keypoint_info: dict | None) -> Plots:
    """PNGs of `curves` and `visible` into `out_dir`; `keypoint_info` is the calibrated
    rule's `info["thresholds"]["keypoint"]` (its labeled mean) or None."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return Plots({}, SKIPPED)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for curve in curves:
        figure = _figure(Figure)
        ax = figure.add_subplot()
        ax.plot(curve.grid, curve.per_image, color="#1f77b4", label="generated / image")
        if curve.threshold is not None:
            ax.axvline(curve.threshold, color="#d62728", linestyle="--", label=f"threshold {curve.threshold:.3f}")
        if curve.labeled_mean is not None:
            ax.axhline(curve.labeled_mean, color="#2ca02c", linestyle=":",
                       label=f"labeled mean {curve.labeled_mean:.3f}")
        source = (f"from the predictions, {curve.images} images" if curve.source == "predictions"
                  else f"from the labels (above threshold only), {curve.images} images")
        if curve.labeled_mean is None:
            source += "; no labeled mean recorded"
        ax.set(xlim=(0, 1), xlabel="score threshold", ylabel="instances per image",
               title=f"{curve.name}\n{source}")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
        path = out_dir / f"category-{curve.category_id}.png"
        figure.savefig(path)
        files[f"category-{curve.category_id}"] = path
    labeled = keypoint_info.get("labeled_mean_visible") if isinstance(keypoint_info, dict) else None
    for cid, (name, counts) in visible.items():
        figure = _figure(Figure)
        ax = figure.add_subplot()
        ax.bar(np.arange(len(counts)), counts, color="#9467bd", label=f"generated ({int(counts.sum())})")
        if counts.sum():
            mean = float((np.arange(len(counts)) * counts).sum() / counts.sum())
            ax.axvline(mean, color="#1f77b4", linestyle="--", label=f"generated mean {mean:.2f}")
        if labeled is not None:
            ax.axvline(labeled, color="#2ca02c", linestyle=":", label=f"labeled mean {labeled:.2f}")
        ax.set(xlabel="visible keypoints", ylabel=f"{name} labels", title=f"visible keypoints per {name}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7, loc="upper left")
        path = out_dir / f"keypoints-{cid}.png"
        figure.savefig(path)
        files[f"keypoints-{cid}"] = path
    return Plots(files)
