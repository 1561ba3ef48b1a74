"""Crowd regions in the gallery's matching: never a match, whatever the overlap.

test_gallery.py's crowd case has labels that overlap the region by less than IoU 0.5,
where a crowd region offered as a candidate would lose anyway. Here a label covers the
region exactly: matched to it, it would count as right while the region is not a
ground-truth box, and recall (right labels / non-crowd GT boxes) could exceed 1.
"""

from __future__ import annotations

from engine.review.match import IGNORED, TRUE, match_boxes, match_labels


def test_a_label_on_a_crowd_region_is_ignored_not_matched():
    state, hit = match_boxes([[0, 0, 40, 40]], [0.9], [[0, 0, 40, 40]], [True])
    assert state.tolist() == [IGNORED] and hit.tolist() == [False]
    # beside a real GT box, the crowd region does not take the label from it
    state, hit = match_boxes([[0, 0, 40, 40], [50, 50, 10, 10]], [0.9, 0.8], [[0, 0, 40, 40], [50, 50, 10, 10]],
                             [True, False])
    assert state.tolist() == [IGNORED, TRUE] and hit.tolist() == [False, True]


def test_recall_stays_within_one_with_crowd_regions():
    kite = 38
    labels = {1: [{"category_id": kite, "bbox": [0, 0, 40, 40], "score": 0.9},
                  {"category_id": kite, "bbox": [50, 50, 10, 10], "score": 0.8}]}
    gt = {1: [{"category_id": kite, "bbox": [0, 0, 40, 40], "iscrowd": 1},
              {"category_id": kite, "bbox": [50, 50, 10, 10]}]}
    counts, images = match_labels(labels, gt, [kite])
    assert (counts[kite].true, counts[kite].false, counts[kite].gt) == (1, 0, 1)
    assert counts[kite].recall == 1.0 and counts[kite].precision == 1.0
    assert images[1].states == [IGNORED, TRUE] and images[1].missed == []
