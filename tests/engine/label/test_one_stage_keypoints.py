"""A one-stage pose detector's keypoints (card output `keypoints`, distill import): mapped
back through each view with the detector's boxes, kept by a merge without voting as the
kept candidate's own, voted with their boxes otherwise, and written into records."""

from __future__ import annotations

import dataclasses

import numpy as np

from engine.label.detect import detect_passes
from engine.label.labeler import Labeler, LabelSettings
from engine.label.merge import MergeSettings, merge_candidates
from engine.label.models import one_stage_person_label
from engine.label.views import TransformPlan
from engine.modelcard import ModelCard

JOINTS = 3  # middle, left, right
CARD = ModelCard(task="detect", categories=[{"id": 1, "name": "person"}], input_name="images",
                 outputs=["boxes", "scores", "labels", "keypoints"], strides=[32], topk=2,
                 keypoint_names=["nose", "left_eye", "right_eye"], flip_pairs=[[1, 2]], pad_multiple=32,
                 pad_value=114, pad_position="center")


class StandIn:
    """Two candidates per view, at fixed view pixels of the image's top-left region: a
    person box with its three joints, and a weaker box overlapping it."""

    card = CARD

    def infer(self, feed):
        batch = feed["images"].shape[0]
        boxes = np.tile(np.array([[[10, 10, 50, 90], [12, 12, 52, 88]]], np.float32), (batch, 1, 1))
        scores = np.tile(np.array([[0.9, 0.6]], np.float32), (batch, 1))
        joints = np.array([[30, 20, 0.9], [20, 20, 0.8], [40, 20, 0.7]], np.float32)
        keypoints = np.tile(joints, (batch, 2, 1, 1))
        return {"boxes": boxes, "scores": scores, "labels": np.zeros((batch, 2), np.int32), "keypoints": keypoints}


def test_keypoints_ride_with_their_boxes_to_the_records():
    image = np.zeros((96, 128, 3), np.uint8)  # scale 96: view 96x128, no padding, offset 0
    settings = LabelSettings(TransformPlan.grid((96,), flip=True, max_size=1000),
                             MergeSettings(vote_threshold=None, nms_threshold=0.5))
    labeler = Labeler(StandIn(), None, one_stage_person_label(CARD), settings, batch_size=4)
    plain, mirrored = detect_passes([labeler.views(image)], StandIn(), 4, 0.05)[0]
    np.testing.assert_allclose(plain.keypoints[0], [[30, 20, 0.9], [20, 20, 0.8], [40, 20, 0.7]])
    # mirrored: x -> 128 - x, and the joint seen on the left is the right one
    np.testing.assert_allclose(mirrored.keypoints[0], [[98, 20, 0.9], [88, 20, 0.7], [108, 20, 0.8]])

    (candidates,) = labeler.detect([labeler.views(image)])
    detections = labeler.merge(candidates)
    assert len(detections.boxes) == 2  # the two passes' best boxes do not overlap
    for box, points in zip(detections.boxes, detections.keypoints):
        row = np.flatnonzero((candidates.boxes == box).all(1))[0]
        np.testing.assert_array_equal(points, candidates.keypoints[row])
    (keypoints,) = labeler.estimate_keypoints([image], [detections])
    record = labeler.record("a.jpg", image, detections, keypoints)
    assert [len(d["keypoints"]) for d in record["detections"]] == [3 * JOINTS] * 2
    assert record["detections"][0]["keypoints"][:3] == [30.0, 20.0, 0.9]

    # With voting, each kept box's joints are its voters' (here the same joints in every
    # voter of a pass: the vote returns them).
    voted = merge_candidates(candidates, dataclasses.replace(settings.merge, vote_threshold=0.8))
    assert voted.keypoints.shape == (2, JOINTS, 3) and voted.keypoints.dtype == np.float32
    np.testing.assert_allclose(voted.keypoints[0], [[30, 20, 0.9], [20, 20, 0.8], [40, 20, 0.7]], atol=1e-5)
    (keypoints,) = labeler.estimate_keypoints([image], [voted])
    assert len(labeler.record("a.jpg", image, voted, keypoints)["detections"][0]["keypoints"]) == 3 * JOINTS
