"""Keypoint voting in the per-image merge (ensemble_pose_detections) against a plain NumPy
reference.

The reference redoes the whole merge for clarity (per-class NMS or soft-NMS, box voting
with `id` scoring, the final order) and votes each kept box's keypoints with the rule of
engine.ensemble.keypoint_voting, vectorised over the voters. It uses the kernels' IoU
arithmetic order, so the kept boxes and the voters match exactly; sums are formed in
another order, hence tolerances, except for joints the rule says to keep as they are,
which must come back bit for bit. (Scoring methods that average scores would round
differently here and reorder near-ties; keypoint voting does not depend on the scoring,
and `ensemble_detections`, tested against its own reference, must give the same boxes,
scores and labels byte for byte under every scoring.)
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from engine.ensemble import SCORING_METHODS, ensemble_detections, ensemble_pose_detections
from tests.engine.ensemble.conftest import ref_iou, ref_nms, ref_soft_nms

IMAGE_WIDTH = 320.0

# ---------------------------------------------------------------- NumPy reference


def ref_vote_keypoints(own, voter_scores, voter_keypoints):
    """`(J, 3)` voted keypoints and the `(J,)` mask of joints kept as `own` (weight 0):
    x, y weighted by score x confidence, confidence the score-weighted mean."""
    weights = voter_scores[:, None] * voter_keypoints[:, :, 2]  # (V, J)
    weight = weights.sum(axis=0)
    kept = ~(weight > 0)
    safe = np.where(kept, 1.0, weight)
    voted = np.stack([
        (weights * voter_keypoints[:, :, 0]).sum(axis=0) / safe,
        (weights * voter_keypoints[:, :, 1]).sum(axis=0) / safe,
        weight / max(voter_scores.sum(), np.finfo(float).tiny),
    ], axis=1)
    return np.where(kept[:, None], own, voted), kept


def ref_pose_ensemble(boxes, scores, labels, keypoints, nms_threshold, vote_threshold,
                      score_floor, max_detections, soft_nms, sigma=0.5, soft_floor=0.001,
                      mirrored=None, seen=None):
    """(boxes, scores, labels, keypoints, kept-joint mask) of the merge, best first.
    `seen` (a Counter), when given, counts what the votes involved (`note_voting`);
    `mirrored` `(N,)` bool says which candidates came from a mirrored pass."""
    boxes, scores = boxes.astype(np.float64), scores.astype(np.float64)
    own_keypoints = keypoints.astype(np.float64)
    parts = []
    for c in np.unique(labels):
        rows = np.flatnonzero((labels == c) & (scores > score_floor))
        if rows.size == 0:
            continue
        if soft_nms is None:
            keep = ref_nms(boxes[rows], scores[rows], nms_threshold)
            kept_scores = scores[rows][keep]
        else:
            keep, kept_scores = ref_soft_nms(boxes[rows], scores[rows], nms_threshold, sigma,
                                             soft_nms, soft_floor)
        for k, kept_score in zip(rows[keep], kept_scores):
            box = boxes[k]
            kps, kept = own_keypoints[k], np.ones(keypoints.shape[1], dtype=bool)
            if vote_threshold is not None:
                voters = rows[ref_iou(boxes[k], boxes[rows]) >= vote_threshold]
                ws = scores[voters]
                if ws.sum() != 0:
                    box = np.average(boxes[voters], axis=0, weights=ws)
                kps, kept = ref_vote_keypoints(own_keypoints[k], ws, own_keypoints[voters])
                if seen is not None:
                    note_voting(seen, k, voters, ws, keypoints, kept, mirrored)
            parts.append((box, kept_score, c, kps, kept))
    if not parts:
        j = keypoints.shape[1]
        return (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), np.zeros((0, j, 3)),
                np.zeros((0, j), bool))
    b, s, l, kp, kept = (np.array(x) for x in zip(*parts))
    order = np.argsort(-s, kind="stable")[:max_detections]
    return b[order], s[order], l[order], kp[order], kept[order]


def note_voting(seen, kept_row, voters, ws, keypoints, kept, mirrored):
    """Count what one kept box's keypoint vote involved, so that the random test can
    prove each situation the kernel could get wrong was met."""
    confidences = keypoints[voters, :, 2]
    several = voters.size >= 2
    seen["several voters"] += several
    seen["voters with tied scores"] += several and np.unique(ws).size < ws.size
    seen["a voter from a mirrored pass"] += several and bool(mirrored[voters].any())
    seen["a zero-confidence joint beside seen ones"] += bool(
        ((confidences == 0).any(axis=0) & (confidences > 0).any(axis=0)).any())
    seen["a joint kept: no weight"] += bool(voters.size and kept.any())
    seen["lone box: only itself votes"] += voters.size == 1 and voters[0] == kept_row
    seen["nobody votes"] += voters.size == 0


# ---------------------------------------------------------------- random cases

def swap_permutation(joints):
    """Left/right pairs (1, 2), (3, 4), ...; joint 0 (the nose, say) is its own mirror."""
    perm = np.arange(joints)
    for a in range(1, joints - 1, 2):
        perm[a], perm[a + 1] = a + 1, a
    return perm


def random_pose_image(rng, box_dtype, keypoint_dtype):
    """One image's candidates from a few passes, some mirrored, over a few classes.

    Every pass sees each person as a few jittered candidates. A mirrored pass's detector
    works in the mirrored frame, where its joint j is the person's joint perm[j], and is
    less confident on its odd joints; the caller's mapping back (x -> W - x, joints
    swapped by the pairs) is done here, so the candidates reach the merge the way the
    label pipeline hands them over. Scores and confidences are coarse half the time
    (ties, zeros); some joints are invisible in every candidate of a person; exact
    duplicates, isolated clutter and zero-area boxes are mixed in. Returns boxes, scores,
    labels, keypoints and `(N,)` bool: which candidates came from a mirrored pass.
    """
    joints = int(rng.choice([1, 4, 17]))
    perm = swap_permutation(joints)
    coarse = rng.random() < 0.5
    passes = [False] + list(rng.random(int(rng.integers(0, 4))) < 0.5)
    parts = []  # (boxes, scores, labels, keypoints, mirrored)
    for _ in range(int(rng.integers(0, 5))):
        corner = rng.uniform(0, 240, 2)
        person = np.concatenate([corner, corner + rng.uniform(10, 80, 2)])
        label = int(rng.integers(0, 3))
        truth = rng.uniform(person[:2], person[2:], size=(joints, 2))
        invisible = rng.random(joints) < 0.15
        for mirrored in passes:
            count = int(rng.integers(1, 5))
            boxes = person + rng.normal(0, 2.0, size=(count, 4))
            if coarse:
                scores = rng.integers(0, 6, count) / 5.0
                confidence = rng.integers(0, 3, (count, joints)) / 2.0
            else:
                scores = rng.uniform(0, 1, count)
                confidence = rng.uniform(0, 1, (count, joints))
            seen = truth.copy()
            if mirrored:
                seen = seen[perm]
                seen[:, 0] = IMAGE_WIDTH - seen[:, 0]
                confidence[:, 1::2] *= 0.5
            xy = seen + rng.normal(0, 1.5, size=(count, joints, 2))
            confidence[:, invisible[perm] if mirrored else invisible] = 0.0
            keypoints = np.concatenate([xy, confidence[..., None]], axis=2)
            if mirrored:  # the caller's mapping back to the original image
                keypoints = keypoints[:, perm]
                keypoints[..., 0] = IMAGE_WIDTH - keypoints[..., 0]
            parts.append((boxes, scores, np.full(count, label), keypoints,
                          np.full(count, mirrored)))
    clutter = int(rng.integers(0, 8))
    if clutter:
        xy = rng.uniform(0, 300, (clutter, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(0, 30, (clutter, 2))], axis=1)
        flat = rng.random(clutter) < 0.3
        boxes[flat, 2] = boxes[flat, 0]  # zero area: overlaps nothing, not even itself
        keypoints = np.concatenate([rng.uniform(0, 300, (clutter, joints, 2)),
                                    rng.integers(0, 3, (clutter, joints, 1)) / 2.0], axis=2)
        parts.append((boxes, rng.integers(0, 10, clutter) / 10.0, rng.integers(0, 4, clutter),
                      keypoints, np.zeros(clutter, bool)))
    if not parts:
        return (np.zeros((0, 4), box_dtype), np.zeros(0, box_dtype), np.zeros(0, np.int32),
                np.zeros((0, joints, 3), keypoint_dtype), np.zeros(0, bool))
    boxes, scores, labels, keypoints, mirrored = (np.concatenate(x) for x in zip(*parts))
    duplicates = rng.random(len(scores)) < 0.05  # exact copies of candidate 0
    boxes[duplicates], scores[duplicates] = boxes[0], scores[0]
    keypoints[duplicates] = keypoints[0]
    mirrored[duplicates] = mirrored[0]
    return (boxes.astype(box_dtype), scores.astype(box_dtype), labels.astype(np.int32),
            keypoints.astype(keypoint_dtype), mirrored)


def random_options(rng):
    return dict(
        nms_threshold=float(rng.choice([0.3, 0.5, 0.7])),
        # 1.5: nobody votes, not even the kept box; 0.0: the whole class votes.
        vote_threshold=(None, 0.5, 0.8, 0.8, 1.5, 0.0)[rng.integers(6)],
        # -inf lets the candidates scoring 0 in: they vote, with weight 0.
        score_floor=float(rng.choice([-np.inf, 0.0, 0.05, 0.3])),
        max_detections=(None, 100, 3)[rng.integers(3)],
        soft_nms=(None, None, "linear", "gaussian")[rng.integers(4)],
    )


def assert_close_keypoints(out, ref, kept, dtype, message):
    """Voted joints to the dtype's precision; joints the rule keeps, bit for bit."""
    assert out.dtype == dtype and out.shape == ref.shape, message
    np.testing.assert_array_equal(out[kept], ref[kept].astype(dtype), err_msg=message)
    if dtype == np.float32:
        np.testing.assert_allclose(out[..., :2], ref[..., :2], rtol=1e-6, atol=1e-4,
                                   err_msg=message)
        np.testing.assert_allclose(out[..., 2], ref[..., 2], rtol=1e-6, atol=1e-6,
                                   err_msg=message)
    else:
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-9, err_msg=message)


# ---------------------------------------------------------------- tests


def test_keypoint_voting_matches_reference_on_random_images():
    # 1200 images, a generator each, keypoints alternating float32/float64 and the boxes'
    # dtype drawn apart. The counters at the end prove that, in both keypoint dtypes, the
    # vote met each situation the kernel could get wrong at least ten times.
    reached = Counter()
    for k in range(1200):
        rng = np.random.default_rng([21, k])
        box_dtype = (np.float32, np.float64)[rng.integers(2)]
        keypoint_dtype = (np.float32, np.float64)[k % 2]
        options = random_options(rng)
        boxes, scores, labels, keypoints, mirrored = random_pose_image(rng, box_dtype,
                                                                       keypoint_dtype)
        if rng.random() < 0.1:
            labels = labels * 100_003  # sparse labels: renumbered inside the merge
        before = [a.copy() for a in (boxes, scores, labels, keypoints)]
        out = ensemble_pose_detections(boxes, scores, labels, keypoints, **options)
        seen = Counter()
        ref = ref_pose_ensemble(boxes, scores, labels, keypoints, mirrored=mirrored, seen=seen,
                                **options)
        message = (f"case {k}, boxes {box_dtype.__name__}, keypoints {keypoint_dtype.__name__}, "
                   f"{options}")
        np.testing.assert_array_equal(out[2], ref[2], err_msg=message)
        np.testing.assert_allclose(out[0], ref[0], rtol=1e-6, atol=1e-4, err_msg=message)
        np.testing.assert_allclose(out[1], ref[1], rtol=1e-6, atol=1e-6, err_msg=message)
        assert_close_keypoints(out[3], ref[3], ref[4], keypoint_dtype, message)
        for old, new in zip(before, (boxes, scores, labels, keypoints)):
            np.testing.assert_array_equal(old, new)
        name = keypoint_dtype.__name__
        reached[name, "voting off"] += options["vote_threshold"] is None and len(out[0]) > 0
        reached[name, "soft-NMS"] += options["soft_nms"] is not None and seen["several voters"] > 0
        for situation, count in seen.items():
            reached[name, situation] += count > 0
    for name in ("float32", "float64"):
        for situation in ("voting off", "soft-NMS", "several voters", "voters with tied scores",
                          "a voter from a mirrored pass",
                          "a zero-confidence joint beside seen ones", "a joint kept: no weight",
                          "lone box: only itself votes", "nobody votes"):
            assert reached[name, situation] >= 10, (name, situation, "too rarely")


def test_boxes_scores_and_labels_are_those_of_ensemble_detections():
    # Byte for byte, whatever the scoring, NMS flavour or dtypes: voting keypoints along
    # must not change what callers without keypoints get.
    for k in range(300):
        rng = np.random.default_rng([22, k])
        boxes, scores, labels, keypoints, _ = random_pose_image(
            rng, (np.float32, np.float64)[k % 2], (np.float16, np.float32, np.float64)[k % 3])
        options = random_options(rng)
        options.update(scoring=list(SCORING_METHODS)[k % len(SCORING_METHODS)],
                       beta=float(rng.choice([0.5, 2.0])))
        if options["score_floor"] < 0:
            options["score_floor"] = 0.0  # temp_avg needs the voters' scores in [0, 1]
        plain = ensemble_detections(boxes, scores, labels, **options)
        pose = ensemble_pose_detections(boxes, scores, labels, keypoints, **options)
        for a, b in zip(plain, pose[:3]):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), (k, options)
        expected = np.float64 if keypoints.dtype == np.float64 else np.float32
        assert pose[3].dtype == expected and pose[3].shape == (len(plain[0]),) + keypoints.shape[1:]


def test_worked_example():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]],
                     np.float64)
    scores = np.array([0.8, 0.4, 0.9, 0.7])
    labels = np.array([0, 0, 1, 0])  # the third box is another class: it does not vote
    keypoints = np.array([
        [[10.0, 20.0, 1.0], [5.0, 5.0, 0.0]],
        [[16.0, 26.0, 0.5], [7.0, 7.0, 0.0]],
        [[90.0, 90.0, 1.0], [90.0, 90.0, 1.0]],
        [[55.0, 52.0, 0.3], [56.0, 58.0, 0.0]],
    ])
    out_boxes, out_scores, out_labels, out = ensemble_pose_detections(
        boxes, scores, labels, keypoints, vote_threshold=0.8)
    np.testing.assert_array_equal(out_labels, [1, 0, 0])
    np.testing.assert_array_equal(out_scores, [0.9, 0.8, 0.7])
    np.testing.assert_array_equal(out[0], keypoints[2])  # the only box of its class
    # Box 1 votes for box 0 (IoU 90/110): weights 0.8 * 1.0 and 0.4 * 0.5.
    np.testing.assert_allclose(out[1, 0], [(0.8 * 10 + 0.2 * 16) / 1.0,
                                           (0.8 * 20 + 0.2 * 26) / 1.0, 1.0 / 1.2])
    np.testing.assert_array_equal(out[1, 1], keypoints[0, 1])  # no weight: its own joint
    np.testing.assert_array_equal(out[2], keypoints[3])  # nobody else votes for it
    _, _, _, off = ensemble_pose_detections(boxes, scores, labels, keypoints, vote_threshold=None)
    np.testing.assert_array_equal(off, keypoints[[2, 0, 3]])


def test_disagreement_lowers_the_confidence():
    # One pass sees the joint at 0.9, three miss it: the confidence is their score-
    # weighted mean, 0.9 / 4, not the 0.9 of the most confident pass.
    boxes = np.tile([[0.0, 0.0, 10.0, 10.0]], (4, 1))
    keypoints = np.array([[[3.0, 4.0, 0.9]], [[9.0, 9.0, 0.0]], [[9.0, 9.0, 0.0]],
                          [[9.0, 9.0, 0.0]]], np.float32)
    _, _, _, out = ensemble_pose_detections(boxes, np.full(4, 0.5), np.zeros(4, int), keypoints)
    np.testing.assert_allclose(out, [[[3.0, 4.0, 0.225]]], rtol=1e-6)


def test_empty_input():
    out = ensemble_pose_detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                                   np.zeros(0, np.int32), np.zeros((0, 17, 3), np.float32))
    assert [a.shape for a in out] == [(0, 4), (0,), (0,), (0, 17, 3)]
    assert out[3].dtype == np.float32


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(keypoints=np.zeros((2, 17, 2))), r"\(2, J, 3\)"),
        (dict(keypoints=np.zeros((3, 17, 3))), r"\(2, J, 3\)"),
        (dict(keypoints=np.full((2, 1, 3), np.nan)), "NaN"),
        (dict(keypoints=np.array([[[1.0, 1.0, -0.1]]] * 2)), "confidences must be >= 0"),
        (dict(keypoints=np.zeros((2, 1, 3), bool)), "numeric"),
        (dict(scores=np.array([0.5, -0.5]), score_floor=-np.inf), "scores above score_floor"),
        (dict(vote_threshold="x"), "vote_threshold"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    args = dict(boxes=np.zeros((2, 4)), scores=np.full(2, 0.5), labels=np.zeros(2, int),
                keypoints=np.zeros((2, 1, 3)))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ensemble_pose_detections(**args)


def test_negative_scores_are_fine_without_voting():
    boxes = np.array([[0.0, 0.0, 10.0, 10.0]])
    keypoints = np.array([[[1.0, 2.0, 0.5]]])
    out = ensemble_pose_detections(boxes, np.array([-0.5]), np.zeros(1, int), keypoints,
                                   vote_threshold=None, score_floor=-np.inf)
    np.testing.assert_array_equal(out[3], keypoints)
