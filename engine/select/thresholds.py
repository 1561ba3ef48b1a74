"""Calibrated thresholds (DESIGN.md, Labels): as many labels per unlabeled image as the
labeled set has instances per image, and as many visible keypoints per person.

Records round every score to 1e-5 (engine/label/records.py), so a score is one of the
100001 values k / 1e5 and an exact integer histogram of `BINS` bins per category holds
everything the rule needs: memory does not grow with the number of predictions, and the
shards can be streamed.

The rule, for a histogram of scores and a target count T (a Fraction, so that "equally
near" is decided exactly):
- the candidate thresholds are the distinct scores present;
- threshold s keeps count(s) = #(scores >= s): equal scores are kept or dropped together;
- the candidate with the smallest |count(s) - T| wins; on an equal distance the higher
  threshold (fewer labels) wins;
- T == 0, or no scores at all: no threshold (None), nothing is kept.
A target above the number of scores thus gives the lowest score (keep everything).

Scores outside [0, 1] (raw heatmap peaks can be) fall into the end bins: a peak above 1
counts as 1.0, which the threshold 1.0 keeps as well; a negative peak counts as 0.0 but
is never >= 0.0, so it is the one case where the kept count can be below the histogram's.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from fractions import Fraction

import numpy as np

SCALE = 100_000  # records round scores to 1 / SCALE
BINS = SCALE + 1  # scores 0.00000 .. 1.00000


def score_bins(scores: np.ndarray) -> np.ndarray:
    """`(N,)` int64 bin of each score `(N,)` float (k for k / 1e5), clipped into [0, SCALE]."""
    return np.clip(np.rint(np.asarray(scores, np.float64) * SCALE), 0, SCALE).astype(np.int64)


def category_histograms(items: Iterable[tuple[int, float]], chunk: int = 1 << 16) -> dict[int, np.ndarray]:
    """{key: `(BINS,)` int64 count of scores per bin} from a stream of (key, score) pairs.

    `items` is consumed lazily, `chunk` pairs at a time: a per-item `hist[bin] += 1`
    would be a NumPy scalar operation per detection, and a bincount per image a
    100001-long array per image; one bincount per key and chunk costs neither.
    """
    histograms: dict[int, np.ndarray] = {}
    iterator = iter(items)
    while block := list(itertools.islice(iterator, chunk)):
        keys = np.fromiter((key for key, _ in block), np.int64, len(block))
        bins = score_bins(np.fromiter((score for _, score in block), np.float64, len(block)))
        for key in np.unique(keys).tolist():
            histogram = histograms.setdefault(key, np.zeros(BINS, np.int64))
            histogram += np.bincount(bins[keys == key], minlength=BINS)
    return histograms


def count_threshold(histogram: np.ndarray, target_count: Fraction | int | float) -> float | None:
    """The score threshold (a multiple of 1e-5) whose kept count #(scores >= t) is
    nearest to `target_count`, by the module's rule; None when the target is 0 or the
    `(BINS,)` int64 `histogram` is empty."""
    target = Fraction(target_count)
    candidates = np.flatnonzero(histogram)  # bins present, ascending
    if target <= 0 or not len(candidates):
        return None
    # count kept at each candidate threshold; strictly decreasing along `candidates`
    kept = np.cumsum(histogram[::-1])[::-1][candidates]
    # number of candidates keeping at least the target (integer counts: >= ceil(target))
    reaching = int(np.searchsorted(-kept, -math.ceil(target), side="right"))
    if reaching == 0:  # even the lowest threshold keeps fewer than the target
        best = 0
    elif reaching == len(candidates):  # even the highest threshold keeps too many
        best = len(candidates) - 1
    else:  # the target lies between two neighbours: the nearer wins, the higher on a tie
        above, below = int(kept[reaching - 1]), int(kept[reaching])
        best = reaching if target - below <= above - target else reaching - 1
    return int(candidates[best]) / SCALE


def keypoint_threshold(histogram: np.ndarray, people: int, target_mean: Fraction | float | None) -> float | None:
    """The keypoint-score threshold whose mean number of kept keypoints per person is
    nearest to `target_mean` (keypoints per person), by the module's rule.

    `histogram` `(BINS,)` int64 holds the keypoint scores of `people` persons. A mean over
    a fixed number of people is the total count divided by it, so this is
    `count_threshold` with the target `target_mean * people`; None without people or target.
    """
    if not people or target_mean is None:
        return None
    return count_threshold(histogram, Fraction(target_mean) * people)
