"""NMS, soft-NMS, box voting and the per-image merge against plain NumPy references.

The references below are written for clarity, vectorised over the candidates of one
step; they share the kernels' IoU arithmetic order (inter / (area_a + area_b - inter))
so kept indices must match exactly, even for integer boxes sitting on a threshold.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from engine.ensemble import box_voting, ensemble_detections, nms, soft_nms
from engine.ensemble.boxes import class_layouts
from engine.ensemble.detections import _fused_classes, _separate_classes
from engine.ensemble.sorting import descending_order, stable_argsort_descending
from tests.engine.ensemble.conftest import ref_iou, ref_nms, ref_soft_nms

# ---------------------------------------------------------------- NumPy references


def ref_vote_score(method, top_score, ws, ious, beta):
    if method == "id" or ws.size == 0:
        return top_score
    if method == "avg":
        return ws.mean()
    if method == "iou_avg":
        return np.average(ws, weights=ious) if ious.sum() > 0 else top_score
    if method == "generalized_avg":
        return np.mean(ws**beta) ** (1.0 / beta)
    if method == "quasi_sum":
        return ws.sum() / float(ws.size) ** beta
    if method == "temp_avg":  # Detectron's formulation, in log space
        p = np.vstack((ws, 1.0 - ws))
        with np.errstate(divide="ignore"):
            x = np.log(p / p.max(axis=0))
        p_temp = np.exp(x / beta)
        return (p_temp[0] / p_temp.sum(axis=0)).mean()
    raise AssertionError(method)


def ref_box_voting(top_boxes, top_scores, all_boxes, all_scores, threshold, method, beta,
                   seen=None):
    """Voted boxes and scores; `seen` (a Counter), when given, counts the top boxes that
    met each situation a kernel could get wrong (see `note_voting`)."""
    top_boxes, all_boxes = top_boxes.astype(np.float64), all_boxes.astype(np.float64)
    top_scores, all_scores = top_scores.astype(np.float64), all_scores.astype(np.float64)
    out_boxes, out_scores = top_boxes.copy(), top_scores.copy()
    for k in range(top_boxes.shape[0]):
        ious = ref_iou(top_boxes[k], all_boxes)
        voters = ious >= threshold
        ws = all_scores[voters]
        if seen is not None:
            note_voting(seen, top_boxes[k], all_boxes, ws, threshold)
        if ws.sum() != 0:
            out_boxes[k] = np.average(all_boxes[voters], axis=0, weights=ws)
        out_scores[k] = ref_vote_score(method, top_scores[k], ws, ious[voters], beta)
    return out_boxes, out_scores


def note_voting(seen, top_box, all_boxes, ws, threshold):
    """Count what one top box's vote involved: several voters, a voter scoring 0 beside
    others (it counts for `avg` but weighs nothing), only voters scoring 0 (the box is
    kept as it is), and a candidate inverted in y that would vote if it were upright
    (inverted boxes have zero area, so it must not)."""
    seen["several voters"] += ws.size >= 2
    seen["zero-score voter"] += bool((ws == 0).any() and (ws != 0).any())
    seen["only zero-score voters"] += bool(ws.size and not ws.any())
    inverted = all_boxes[:, 3] < all_boxes[:, 1]
    if inverted.any():
        upright = all_boxes[inverted][:, [0, 3, 2, 1]]
        seen["inverted in y, upright it would vote"] += bool(
            (ref_iou(top_box, upright) >= threshold).any())


def ref_ensemble(boxes, scores, labels, nms_threshold, vote_threshold, scoring, score_floor,
                 max_detections, soft, beta=1.0, sigma=0.5, soft_floor=0.001, seen=None):
    boxes, scores = boxes.astype(np.float64), scores.astype(np.float64)
    parts = []
    for c in np.unique(labels):
        rows = np.flatnonzero((labels == c) & (scores > score_floor))
        if rows.size == 0:
            continue
        if soft is None:
            keep = ref_nms(boxes[rows], scores[rows], nms_threshold)
            kept_scores = scores[rows][keep]
        else:
            keep, kept_scores = ref_soft_nms(boxes[rows], scores[rows], nms_threshold, sigma,
                                             soft, soft_floor)
        kept_boxes = boxes[rows][keep]
        if vote_threshold is not None:
            kept_boxes, kept_scores = ref_box_voting(kept_boxes, kept_scores, boxes[rows],
                                                     scores[rows], vote_threshold, scoring, beta,
                                                     seen)
        parts.append((kept_boxes, kept_scores, np.full(keep.size, c)))
    if not parts:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
    b, s, l = (np.concatenate(x) for x in zip(*parts))
    order = np.argsort(-s, kind="stable")
    if max_detections is not None:
        order = order[:max_detections]
    return b[order], s[order], l[order]


# ---------------------------------------------------------------- random cases


def random_boxes(rng, n, dtype):
    """Clustered boxes with ties, integer corners, zero-area boxes and boxes inverted in x
    or in y mixed in; coarse scores (many exact ties, zeros among them) or uniform ones."""
    kind = rng.integers(4)
    if n == 0:
        return np.zeros((0, 4), dtype=dtype), np.zeros(0, dtype=dtype)
    if kind == 0:  # integer grid: IoUs land exactly on thresholds such as 0.5
        xy = rng.integers(0, 6, size=(n, 2)).astype(float)
        wh = rng.integers(0, 5, size=(n, 2)).astype(float)
    else:
        centres = rng.uniform(0, 100, size=(rng.integers(1, 5), 2))
        xy = centres[rng.integers(len(centres), size=n)] + rng.normal(0, 3 * kind, size=(n, 2))
        wh = rng.uniform(5, 40, size=(n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    odd = rng.random(n)
    boxes[odd < 0.05, 2] = boxes[odd < 0.05, 0]  # zero width
    inverted = (odd >= 0.05) & (odd < 0.08)
    boxes[inverted, 0], boxes[inverted, 2] = boxes[inverted, 2], boxes[inverted, 0].copy()
    inverted = (odd >= 0.08) & (odd < 0.11)
    boxes[inverted, 1], boxes[inverted, 3] = boxes[inverted, 3], boxes[inverted, 1].copy()
    dup = rng.random(n) < 0.1  # exact duplicates of the first box
    boxes[dup] = boxes[0]
    if rng.random() < 0.5:  # coarse scores: many exact ties, and zeros that vote
        scores = rng.integers(0, 6, size=n) / 5.0
    else:
        scores = rng.uniform(0, 1, size=n)
    return boxes.astype(dtype), scores.astype(dtype)


def cases(seed, count):
    rng = np.random.default_rng(seed)
    for k in range(count):
        n = [0, 1, 2][k] if k < 3 else int(rng.integers(1, 60))
        dtype = np.float32 if k % 2 else np.float64
        boxes, scores = random_boxes(rng, n, dtype)
        yield rng, boxes, scores


def assert_unchanged(before, *arrays):
    for old, new in zip(before, arrays):
        np.testing.assert_array_equal(old, new)


# ---------------------------------------------------------------- nms


def test_nms_matches_reference_on_random_cases():
    for rng, boxes, scores in cases(0, 3000):
        threshold = float(rng.choice([0.0, 0.3, 0.5, 0.7, 1.0]))
        before = (boxes.copy(), scores.copy())
        keep = nms(boxes, scores, threshold)
        assert keep.dtype == np.int64
        np.testing.assert_array_equal(keep, ref_nms(boxes, scores, threshold))
        assert_unchanged(before, boxes, scores)


def test_nms_threshold_is_strict_and_ties_prefer_lower_index():
    boxes = np.array([[0, 0, 2, 1], [1, 0, 3, 1], [0, 0, 2, 1]], dtype=np.float32)
    scores = np.array([0.5, 0.9, 0.9], dtype=np.float32)
    # IoU(box1, box2) = 1/3; IoU(box1, box0) = 1/3; box0 == box2.
    np.testing.assert_array_equal(nms(boxes, scores, 1 / 3), [1, 2])
    np.testing.assert_array_equal(nms(boxes, scores, 0.3), [1])
    assert nms(boxes[:1], scores[:1], 0.5).tolist() == [0]


def test_nms_order_with_negative_and_signed_zero_scores():
    # The visiting order is a radix sort of the float bits: negatives, -0.0 == 0.0 and
    # extreme magnitudes must order exactly like a stable sort of the values.
    rng = np.random.default_rng(5)
    values = np.array([0.0, -0.0, 1.0, -1.0, 1e-300, -1e-300, 1e300, -1e300, 0.5, -0.5])
    for k in range(300):
        n = int(rng.integers(1, 40))
        boxes, _ = random_boxes(rng, n, np.float64)
        scores = rng.choice(values, size=n)
        if k % 2:  # float32 keeps the signs and zeros, with magnitudes it can hold
            scores = np.clip(scores, -1e30, 1e30).astype(np.float32)
        threshold = float(rng.choice([0.3, 0.7]))
        np.testing.assert_array_equal(nms(boxes, scores, threshold),
                                      ref_nms(boxes, scores, threshold))


def test_nms_zero_area_boxes_never_suppress():
    boxes = np.array([[1, 1, 1, 5], [1, 1, 1, 5], [0, 0, 0, 0]], dtype=np.float64)
    np.testing.assert_array_equal(nms(boxes, np.array([0.3, 0.2, 0.1]), 0.0), [0, 1, 2])


def test_nms_empty_input():
    keep = nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5)
    assert keep.shape == (0,) and keep.dtype == np.int64


@pytest.mark.parametrize(
    "boxes, scores, message",
    [
        (np.zeros((3, 5)), np.zeros(3), r"\(N, 4\)"),
        (np.zeros(4), np.zeros(1), r"\(N, 4\)"),
        (np.zeros((3, 4)), np.zeros(2), r"shape \(3,\)"),
        (np.full((1, 4), np.nan), np.zeros(1), "NaN"),
        (np.zeros((1, 4)), np.array([np.inf]), "NaN or infinite"),
        (np.zeros((1, 4), dtype=bool), np.zeros(1), "numeric"),
    ],
)
def test_nms_rejects_bad_shapes(boxes, scores, message):
    with pytest.raises(ValueError, match=message):
        nms(boxes, scores, 0.5)


# ---------------------------------------------------------------- soft-NMS


@pytest.mark.parametrize("method", ["linear", "gaussian"])
def test_soft_nms_matches_reference(method):
    for rng, boxes, scores in cases(1, 1500):
        threshold = float(rng.choice([0.0, 0.3, 0.5]))
        sigma = float(rng.choice([0.1, 0.5, 2.0]))
        floor = float(rng.choice([0.001, 0.3]))
        before = (boxes.copy(), scores.copy())
        keep, new_scores = soft_nms(boxes, scores, threshold, sigma, method, floor)
        ref_keep, ref_scores = ref_soft_nms(boxes, scores, threshold, sigma, method, floor)
        np.testing.assert_array_equal(keep, ref_keep)
        assert new_scores.dtype == scores.dtype
        np.testing.assert_allclose(new_scores, ref_scores, rtol=1e-6, atol=1e-7)
        assert np.all(np.diff(new_scores) <= 0)
        assert_unchanged(before, boxes, scores)


def test_soft_nms_decays_instead_of_deleting():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [50, 50, 60, 60]], dtype=np.float64)
    scores = np.array([0.9, 0.8, 0.7])
    keep, new_scores = soft_nms(boxes, scores, iou_threshold=0.3, method="linear")
    # IoU(box0, box1) = 0.5 > 0.3: 0.8 * (1 - 0.5) = 0.4 drops below the far box's 0.7.
    np.testing.assert_array_equal(keep, [0, 2, 1])
    np.testing.assert_allclose(new_scores, [0.9, 0.7, 0.4])
    keep, new_scores = soft_nms(boxes, scores, method="gaussian", sigma=0.5)
    np.testing.assert_array_equal(keep, [0, 2, 1])
    np.testing.assert_allclose(new_scores, [0.9, 0.7, 0.8 * np.exp(-0.5**2 / 0.5)])


def test_soft_nms_rejects_unknown_method_and_bad_sigma():
    boxes, scores = np.zeros((1, 4)), np.ones(1)
    with pytest.raises(ValueError, match="soft-NMS method"):
        soft_nms(boxes, scores, method="hard")
    with pytest.raises(ValueError, match="sigma"):
        soft_nms(boxes, scores, method="gaussian", sigma=0.0)
    keep, new_scores = soft_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    assert keep.shape == (0,) and new_scores.dtype == np.float32


# ---------------------------------------------------------------- box voting

SCORINGS = ["id", "avg", "iou_avg", "generalized_avg", "quasi_sum", "temp_avg"]


@pytest.mark.parametrize("scoring", SCORINGS)
def test_box_voting_matches_reference(scoring):
    for rng, boxes, scores in cases(2, 500):
        n = boxes.shape[0]
        top = rng.choice(n, size=min(n, int(rng.integers(0, 6))), replace=False)
        top_boxes, top_scores = boxes[top], scores[top]
        threshold = float(rng.choice([0.0, 0.5, 0.8, 1.0]))
        beta = float(rng.choice([0.5, 1.0, 2.0]))
        before = (boxes.copy(), scores.copy(), top_boxes.copy(), top_scores.copy())
        out_boxes, out_scores = box_voting(top_boxes, top_scores, boxes, scores, threshold,
                                           scoring, beta)
        ref_boxes, ref_scores = ref_box_voting(top_boxes, top_scores, boxes, scores, threshold,
                                               scoring, beta)
        assert out_boxes.dtype == boxes.dtype and out_scores.dtype == scores.dtype
        assert out_boxes.shape == (top.size, 4)
        np.testing.assert_allclose(out_boxes, ref_boxes, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(out_scores, ref_scores, rtol=1e-6, atol=1e-6)
        assert_unchanged(before, boxes, scores, top_boxes, top_scores)


def test_box_voting_worked_example():
    top = np.array([[0.0, 0.0, 10.0, 10.0]])
    voters = np.array([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [30, 30, 40, 40]])
    voter_scores = np.array([0.9, 0.3, 0.8])
    # IoU(top, voter1) = 90 / 110 >= 0.8; the far box does not vote.
    boxes, scores = box_voting(top, np.array([0.9]), voters, voter_scores, 0.8, "avg")
    np.testing.assert_allclose(boxes, [[0.25, 0.0, 10.25, 10.0]])
    np.testing.assert_allclose(scores, [0.6])
    _, scores = box_voting(top, np.array([0.9]), voters, voter_scores, 0.8, "quasi_sum", 0.5)
    np.testing.assert_allclose(scores, [1.2 / np.sqrt(2)])


def test_box_voting_without_voters_keeps_the_box():
    top = np.array([[5.0, 5.0, 5.0, 9.0]], dtype=np.float32)  # zero area: overlaps nothing
    boxes, scores = box_voting(top, np.array([0.4], np.float32), top, np.array([0.4], np.float32),
                               0.5, "avg")
    np.testing.assert_array_equal(boxes, top)
    np.testing.assert_array_equal(scores, np.array([0.4], np.float32))


def test_box_voting_against_no_candidates_keeps_everything():
    top = np.array([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 2.0, 2.0]])
    for threshold in (0.8, 0.0):
        boxes, scores = box_voting(top, np.array([0.5, 0.7]), np.zeros((0, 4)), np.zeros(0),
                                   threshold, "avg")
        np.testing.assert_array_equal(boxes, top)
        np.testing.assert_array_equal(scores, [0.5, 0.7])


def test_box_voting_rejects_bad_input():
    good = np.zeros((1, 4))
    with pytest.raises(ValueError, match="scoring"):
        box_voting(good, np.ones(1), good, np.ones(1), 0.8, "median")
    with pytest.raises(ValueError, match="all_boxes"):
        box_voting(good, np.ones(1), np.zeros((2, 3)), np.ones(2))
    with pytest.raises(ValueError, match="top_scores"):
        box_voting(good, np.ones(2), good, np.ones(1))
    with pytest.raises(ValueError, match="beta"):
        box_voting(good, np.ones(1), good, np.ones(1), beta=0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        box_voting(good, np.ones(1), good, np.array([1.5]), scoring="temp_avg")


# ---------------------------------------------------------------- ensemble_detections


def random_detections(rng, dtype):
    """A few transforms' worth of jittered candidates over a handful of classes; some
    candidates score exactly 0 and some are inverted in y (zero area)."""
    n_objects = int(rng.integers(0, 6))
    n_transforms = int(rng.integers(1, 5))
    parts_b, parts_s, parts_l = [], [], []
    for _ in range(n_objects):
        corner = rng.uniform(0, 200, 2)
        box = np.concatenate([corner, rng.uniform(0, 200, 2) + rng.uniform(5, 80, 2)])
        box[2:] = np.maximum(box[2:], box[:2] + 5)
        label = int(rng.integers(0, 4))
        count = n_transforms * int(rng.integers(1, 6))
        candidates = box + rng.normal(0, 3, size=(count, 4))
        flip = rng.random(count) < 0.05
        candidates[flip, 1], candidates[flip, 3] = candidates[flip, 3], candidates[flip, 1]
        candidate_scores = np.clip(rng.normal(0.6, 0.25, count), 0, 1)
        candidate_scores[rng.random(count) < 0.15] = 0.0
        parts_b.append(candidates)
        parts_s.append(candidate_scores)
        parts_l.append(np.full(count, label))
    clutter = int(rng.integers(0, 30))
    if clutter:
        xy = rng.uniform(0, 250, (clutter, 2))
        parts_b.append(np.concatenate([xy, xy + rng.uniform(0, 40, (clutter, 2))], axis=1))
        parts_s.append(rng.integers(0, 10, clutter) / 10.0)  # ties and scores at the floor
        parts_l.append(rng.integers(0, 6, clutter))
    if not parts_b:
        return np.zeros((0, 4), dtype), np.zeros(0, dtype), np.zeros(0, np.int32)
    return (np.concatenate(parts_b).astype(dtype), np.concatenate(parts_s).astype(dtype),
            np.concatenate(parts_l).astype(np.int32))


def test_ensemble_matches_reference_on_random_images():
    # Every option is drawn on its own, from a generator per case: no option decides
    # another, so each scoring meets both dtypes, both vote thresholds, soft-NMS and every
    # floor. The counters at the end prove that every scoring voted (several voters per
    # kept box) in both dtypes, and met voters scoring 0 and boxes inverted in y.
    reached = Counter()
    for k in range(600):
        rng = np.random.default_rng([3, k])
        dtype = (np.float32, np.float64)[rng.integers(2)]
        scoring = SCORINGS[rng.integers(len(SCORINGS))]
        options = dict(
            nms_threshold=float(rng.choice([0.3, 0.5, 0.7])),
            vote_threshold=(None, 0.5, 0.8)[rng.integers(3)],
            scoring=scoring,
            # -inf lets the candidates scoring 0 in: they vote, with weight 0.
            score_floor=float(rng.choice([-np.inf, 0.0, 0.05, 0.3])),
            max_detections=(None, 100, 3)[rng.integers(3)],
            soft_nms=(None, None, "linear", "gaussian")[rng.integers(4)],
            # Not 1: generalized_avg, quasi_sum and temp_avg all reduce to avg there.
            beta=float(rng.choice([0.5, 2.0])),
        )
        boxes, scores, labels = random_detections(rng, dtype)
        before = (boxes.copy(), scores.copy(), labels.copy())
        out = ensemble_detections(boxes, scores, labels, **options)
        seen = Counter()
        ref = ref_ensemble(boxes, scores, labels, options["nms_threshold"],
                           options["vote_threshold"], scoring, options["score_floor"],
                           options["max_detections"], options["soft_nms"], beta=options["beta"],
                           seen=seen)
        message = f"case {k}, {dtype.__name__}, {options}"
        assert out[0].dtype == dtype and out[1].dtype == dtype and out[2].dtype == np.int32
        np.testing.assert_array_equal(out[2], ref[2], err_msg=message)
        np.testing.assert_allclose(out[0], ref[0], rtol=1e-6, atol=1e-4, err_msg=message)
        np.testing.assert_allclose(out[1], ref[1], rtol=1e-5, atol=1e-6, err_msg=message)
        assert_unchanged(before, boxes, scores, labels)
        reached[scoring, dtype.__name__, "several voters"] += seen["several voters"] > 0
        for situation, count in seen.items():
            reached[scoring, situation] += count > 0
    for scoring in SCORINGS:
        for dtype in ("float32", "float64"):
            assert reached[scoring, dtype, "several voters"] >= 5, (scoring, dtype, "too rarely")
        for situation in ("zero-score voter", "only zero-score voters",
                          "inverted in y, upright it would vote"):
            assert reached[scoring, situation] >= 3, (scoring, situation, "too rarely")


# Voting runs inside the NMS scan when 0 < vote_threshold and nms_threshold <=
# vote_threshold (voting.can_fuse), in a scan of its own otherwise; both must match the
# reference, including the window special cases of NMS (threshold 0 or negative).
THRESHOLD_PAIRS = [
    (0.5, 0.8),  # the defaults: fused
    (0.5, 0.5),  # equal: fused, integer boxes put IoUs exactly on both thresholds
    (0.0, 0.6),  # NMS window: every box starting before x2; fused
    (-0.1, 0.3),  # negative NMS threshold: every box in the window; fused
    (0.5, 1.5),  # nobody reaches the vote threshold; fused
    (0.7, 0.5),  # vote below NMS: separate scans
    (0.5, 0.0),  # every candidate votes: separate scans
    (0.3, -0.2),
]


def random_labelled(rng, k):
    """Jittered objects (`random_detections`) or integer-grid/degenerate boxes
    (`random_boxes`) with random labels, alternating dtypes."""
    dtype = np.float32 if k % 2 else np.float64
    if k % 4 < 2:
        return random_detections(rng, dtype)
    boxes, scores = random_boxes(rng, int(rng.integers(1, 60)), dtype)
    return boxes, scores, rng.integers(0, 3, boxes.shape[0]).astype(np.int32)


@pytest.mark.parametrize("nms_threshold, vote_threshold", THRESHOLD_PAIRS)
def test_ensemble_fused_and_separate_voting_match_reference(nms_threshold, vote_threshold):
    rng = np.random.default_rng(7)
    for k in range(240):
        boxes, scores, labels = random_labelled(rng, k)
        scoring = SCORINGS[k % len(SCORINGS)]
        beta = float(rng.choice([0.5, 1.0, 2.0]))
        floor = float(rng.choice([0.0, 0.05, 0.3]))
        out = ensemble_detections(boxes, scores, labels, nms_threshold, vote_threshold, scoring,
                                  floor, None, beta=beta)
        ref = ref_ensemble(boxes, scores, labels, nms_threshold, vote_threshold, scoring, floor,
                           None, None, beta=beta)
        message = f"case {k}, {scoring}, beta {beta}, floor {floor}"
        np.testing.assert_array_equal(out[2], ref[2], err_msg=message)
        np.testing.assert_allclose(out[0], ref[0], rtol=1e-6, atol=1e-4, err_msg=message)
        np.testing.assert_allclose(out[1], ref[1], rtol=1e-5, atol=1e-6, err_msg=message)


def merge_both_ways(boxes, scores, labels, nms_threshold, vote_threshold, method, beta):
    """(fused, separate) outputs of the internal merge paths over the same layouts."""
    boxes, scores = boxes.astype(np.float64), scores.astype(np.float64)
    labels = labels.astype(np.int64)
    n = boxes.shape[0]
    ranked = descending_order(scores, np.arange(n))
    layouts = class_layouts(boxes, labels, ranked, int(labels.max()) + 1)
    voter_scores = scores[layouts.source]
    results = []
    for fused in (True, False):
        out = (np.empty((n, 4)), np.empty(n), np.empty(n, np.int64))
        if fused:
            m = _fused_classes(layouts, voter_scores, nms_threshold, vote_threshold, method,
                               beta, *out)
        else:
            m = _separate_classes(boxes, scores, layouts, voter_scores, nms_threshold, 0, 0.5,
                                  0.001, True, vote_threshold, method, beta, *out)
        results.append([a[:m] for a in out])
    return results


def test_fused_voting_is_bit_identical_to_a_separate_scan():
    # The fused scan adds the same voters in the same order as vote_one: not close, equal.
    rng = np.random.default_rng(8)
    for k in range(600):
        boxes, scores, labels = random_labelled(rng, k)
        if boxes.shape[0] == 0:
            continue
        nms_threshold, vote_threshold = [p for p in THRESHOLD_PAIRS if p[1] > 0 and p[1] >= p[0]][
            k % 5]
        fused, separate = merge_both_ways(boxes, scores, labels, nms_threshold, vote_threshold,
                                          k % len(SCORINGS), float(rng.choice([0.5, 1.0, 2.0])))
        for a, b in zip(fused, separate):
            assert a.tobytes() == b.tobytes(), (k, nms_threshold, vote_threshold)


def test_stable_argsort_descending_is_numpy_mergesort():
    values = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-300, -5e-324, 0.5])
    rng = np.random.default_rng(9)
    for k in range(2000):
        pool = values if k % 2 else values[~np.isnan(values)]
        sample = rng.choice(pool, size=int(rng.integers(0, 30)))
        np.testing.assert_array_equal(stable_argsort_descending(sample),
                                      np.argsort(-sample, kind="mergesort"))


def test_ensemble_nan_scores_sort_last():
    # generalized_avg of a negative score to the power 0.5 is NaN; like np.argsort, the
    # final ordering puts it after every number.
    boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], np.float64)
    scores = np.array([-0.5, 0.3, 0.1])
    labels = np.array([0, 1, 2])
    out = ensemble_detections(boxes, scores, labels, scoring="generalized_avg", beta=0.5,
                              score_floor=-np.inf)
    with np.errstate(invalid="ignore"):
        ref = ref_ensemble(boxes, scores, labels, 0.5, 0.8, "generalized_avg", -np.inf, 100,
                           None, beta=0.5)
    np.testing.assert_array_equal(out[2], [1, 2, 0])
    np.testing.assert_array_equal(out[2], ref[2])
    np.testing.assert_allclose(out[1], ref[1])


def test_ensemble_without_voting_is_per_class_nms():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 9], [0, 0, 10, 10], [40, 40, 50, 50]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.04], np.float32)
    labels = np.array([2, 2, 7, 2], np.int64)
    out_boxes, out_scores, out_labels = ensemble_detections(boxes, scores, labels,
                                                            vote_threshold=None)
    # Box 1 overlaps box 0 of its class (IoU 0.9); box 2 is another class; box 3 < floor.
    np.testing.assert_array_equal(out_boxes, boxes[[0, 2]])
    np.testing.assert_array_equal(out_scores, scores[[0, 2]])
    np.testing.assert_array_equal(out_labels, [2, 7])
    assert out_labels.dtype == np.int64


def test_ensemble_votes_and_limits():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 0, 30, 10]], np.float64)
    scores = np.array([0.9, 0.3, 0.6])
    labels = np.array([0, 0, 1])
    out_boxes, out_scores, out_labels = ensemble_detections(boxes, scores, labels,
                                                            scoring="avg", max_detections=1)
    np.testing.assert_allclose(out_boxes, [[0.25, 0, 10.25, 10]])
    np.testing.assert_allclose(out_scores, [0.6])
    np.testing.assert_array_equal(out_labels, [0])  # ties with class 1's 0.6: lower label


def test_ensemble_sparse_labels_are_renumbered():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float64)
    labels = np.array([10**9, 3], np.int64)
    _, _, out_labels = ensemble_detections(boxes, np.array([0.5, 0.6]), labels)
    np.testing.assert_array_equal(out_labels, [3, 10**9])


def test_ensemble_empty_and_all_below_floor():
    for n in (0, 3):
        out = ensemble_detections(np.ones((n, 4), np.float32), np.full(n, 0.01, np.float32),
                                  np.zeros(n, np.int32))
        assert [a.shape for a in out] == [(0, 4), (0,), (0,)]
        assert out[0].dtype == np.float32 and out[2].dtype == np.int32


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(labels=np.zeros(2)), "integer"),
        (dict(labels=np.array([0, -1])), "non-negative"),
        (dict(labels=np.zeros(3, int)), r"shape \(2,\)"),
        (dict(max_detections=-1), "max_detections"),
        (dict(max_detections=2.5), "max_detections"),
        (dict(soft_nms="hard"), "soft-NMS method"),
        (dict(scoring="sum"), "scoring"),
        (dict(nms_threshold="x"), "nms_threshold"),
        (dict(score_floor=float("nan")), "score_floor"),
    ],
)
def test_ensemble_rejects_bad_arguments(kwargs, message):
    args = dict(boxes=np.zeros((2, 4)), scores=np.ones(2) * 0.5, labels=np.zeros(2, int))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ensemble_detections(**args)
