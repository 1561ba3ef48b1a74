"""The top-down keypoint stage of a remerge: only on the person boxes that changed.

A person's keypoints depend on its image and its box alone (the crop is cut from the
box), so a merged person box that equals, bit for bit, one the labeling run cropped gets
that run's keypoints back from the candidates file; only the other boxes are cropped
and go through the keypoint model, and only their images are read and decoded.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.backends.base import ActiveModel
from engine.label.keypoints import Keypoints, estimate_keypoints, person_rows
from engine.label.merge import Detections
from engine.remerge.candidates import PersonKeypoints


def changed_rows(detections: Detections, person_label: int,
                 kept: PersonKeypoints) -> tuple[np.ndarray, np.ndarray, dict]:
    """(rows of `detections`' person boxes, those of them that the labeling run did not
    crop, {row: index into `kept`} of those it did). Boxes are compared as exact float32
    bytes."""
    known = {box.tobytes(): i for i, box in enumerate(np.ascontiguousarray(kept.boxes, np.float32))}
    changed, reused = [], {}
    rows = person_rows(detections, person_label)
    for row in rows.tolist():
        index = known.get(np.ascontiguousarray(detections.boxes[row], np.float32).tobytes())
        if index is None:
            changed.append(row)
        else:
            reused[row] = index
    return rows, np.array(changed, np.int64), reused


def keypoints_with_reuse(detections: list[Detections], kept: list[PersonKeypoints],
                         image_of: Callable[[int], np.ndarray], backend: Callable[[], ActiveModel], person_label: int, flip: bool,
                         batch_size: int) -> tuple[list[Keypoints], int]:
    """Keypoints of every person detection of a chunk of images, as the keypoint stage
    of labeling makes them: reused from `kept` (the run's results, one per image) where a
    box is unchanged, else from the keypoint model (`backend()`, opened on first use) on
    the image `image_of(i)` (decoded only then). Returns (keypoints per image, person
    boxes that went through the model)."""
    plans = [changed_rows(d, person_label, k) for d, k in zip(detections, kept)]
    todo = [i for i, (_, changed, _) in enumerate(plans) if len(changed)]
    fresh: dict[int, Keypoints] = {}
    if todo:
        # Only the changed boxes, as detections of their own: each crop is cut from its box alone.
        subsets = [Detections(detections[i].boxes[plans[i][1]], detections[i].scores[plans[i][1]],
                              detections[i].labels[plans[i][1]]) for i in todo]
        results = estimate_keypoints([image_of(i) for i in todo], subsets, backend(), person_label, flip, batch_size)
        fresh = dict(zip(todo, results))
    out = []
    for i, (k, (rows, changed, reused)) in enumerate(zip(kept, plans)):
        joints = k.points.shape[1]
        points = np.zeros((len(rows), joints, 2), np.float32)
        peaks = np.zeros((len(rows), joints), np.float32)
        position = {row: n for n, row in enumerate(rows.tolist())}
        for row, index in reused.items():
            points[position[row]], peaks[position[row]] = k.points[index], k.peaks[index]
        if i in fresh:
            for n, row in enumerate(changed.tolist()):
                points[position[row]], peaks[position[row]] = fresh[i].points[n], fresh[i].scores[n]
        out.append(Keypoints(rows, points, peaks))
    return out, sum(len(changed) for _, changed, _ in plans)
