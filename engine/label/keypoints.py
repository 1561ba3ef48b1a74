"""The keypoint stage: crops of the merged person boxes (and, by default, their mirror
images) through the keypoint model; heatmaps averaged in each RoI's frame, decoded with
the refinement the keypoint card names, mapped back to original-image pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.backends.base import ActiveModel
from engine.coco.geometry import xyxy_to_xywh
from engine.crops import person_crop_box, warp_crop
from engine.ensemble import average_heatmaps, heatmap_argmax, keypoints_to_image
from engine.label.merge import Detections
from engine.modelcard import ModelCard

# Card names -> engine.ensemble.keypoints refinements.
_REFINE = {"argmax": None, "quarter": "quarter", "dark": "dark", "window": "window"}


@dataclass
class Keypoints:
    """Of one image's person detections `rows` `(P,)` (indices into its Detections):
    `points` `(P, J, 2)` float32 xy in original-image pixels, `scores` `(P, J)` float32
    heatmap peaks of the averaged maps."""

    rows: np.ndarray
    points: np.ndarray
    scores: np.ndarray


def one_stage_keypoints(detections: Detections, person_label: int | None) -> Keypoints | None:
    """The keypoints a one-stage pose detector gave its kept person detections (label
    `person_label`: only that category has a keypoint schema), or None where the
    detections carry none. Scores are the detector's joint confidences."""
    if detections.keypoints is None or person_label is None:
        return None
    rows = person_rows(detections, person_label)
    points = detections.keypoints[rows]
    return Keypoints(rows, points[..., :2], points[..., 2])


def person_rows(detections: Detections, person_label: int) -> np.ndarray:
    return np.flatnonzero(detections.labels == person_label)


def crop_boxes_for(detections: Detections, rows: np.ndarray, card: ModelCard) -> np.ndarray:
    """`(P, 4)` float32 xyxy crop boxes of the person boxes `rows`."""
    hc, wc = card.input_size
    boxes = detections.boxes[rows]
    return person_crop_box(xyxy_to_xywh(boxes), wc / hc, card.crop_padding).reshape(-1, 4)


def estimate_keypoints(images: list[np.ndarray], detections: list[Detections], backend: ActiveModel,
                       person_label: int, flip: bool, batch_size: int) -> list[Keypoints]:
    """Keypoints of every person detection of a chunk of images `(H, W, 3)` uint8 RGB.

    Crops of all images go through the model together in batches of `batch_size` crops
    (a mirrored crop is one more crop); a record does not depend on its batch-mates.
    """
    card = backend.card
    hc, wc = card.input_size
    rows = [person_rows(d, person_label) for d in detections]
    crop_boxes = [crop_boxes_for(d, r, card) for d, r in zip(detections, rows)]
    crops = [warp_crop(image, box, (hc, wc)) for image, boxes in zip(images, crop_boxes) for box in boxes]
    joints = len(card.keypoint_names)
    if not crops:
        return [Keypoints(r, np.zeros((0, joints, 2), np.float32), np.zeros((0, joints), np.float32))
                for r in rows]
    stack = np.stack(crops).transpose(0, 3, 1, 2)  # (R, 3, Hc, Wc)
    passes = [stack, np.ascontiguousarray(stack[..., ::-1])] if flip else [stack]
    maps = np.stack([_infer_crops(backend, crops_, batch_size) for crops_ in passes])  # (T, R, J, h, w)
    averaged = average_heatmaps(maps, np.array([False, True][:len(passes)]), np.ones(len(passes)),
                                card.flip_pairs)
    decoded = heatmap_argmax(averaged, refine=_REFINE[card.heatmap_decoder])
    all_boxes = np.concatenate(crop_boxes)
    points = keypoints_to_image(decoded, all_boxes, averaged.shape[2:]).astype(np.float32)
    peaks = decoded[..., 2].astype(np.float32)
    result, start = [], 0
    for r in rows:
        result.append(Keypoints(r, points[start:start + len(r)], peaks[start:start + len(r)]))
        start += len(r)
    return result


def _infer_crops(backend: ActiveModel, crops: np.ndarray, batch_size: int) -> np.ndarray:
    """`(R, 3, Hc, Wc)` uint8 crops -> `(R, J, h, w)` float32 heatmaps, in batches (of one
    for a graph that takes no other batch size)."""
    name = backend.card.input_name
    batch_size = batch_size if backend.card.fixed_batch is None else backend.card.fixed_batch
    out = [backend.infer({name: np.ascontiguousarray(crops[s:s + batch_size])})["heatmaps"]
           for s in range(0, len(crops), batch_size)]
    return np.concatenate(out).astype(np.float32, copy=False)
