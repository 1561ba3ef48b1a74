"""Numba ensembling kernels for multi-transform inference (issue 3).

Boxes: `nms`, `soft_nms`, `box_voting`, `ensemble_detections`; with a one-stage pose
detector's keypoints voted along, `ensemble_pose_detections`.
Keypoints: `flip_heatmaps`, `average_heatmaps`, `heatmap_argmax`, `keypoints_to_image`.
Semantics in docs/ensemble.md; conventions in DESIGN.md (continuous coordinates, no +1).
"""

from engine.ensemble.detections import ensemble_detections, ensemble_pose_detections
from engine.ensemble.heatmaps import average_heatmaps, flip_heatmaps
from engine.ensemble.keypoints import heatmap_argmax, keypoints_to_image
from engine.ensemble.nms import nms, soft_nms
from engine.ensemble.voting import SCORING_METHODS, box_voting

__all__ = [
    "SCORING_METHODS",
    "average_heatmaps",
    "box_voting",
    "ensemble_detections",
    "ensemble_pose_detections",
    "flip_heatmaps",
    "heatmap_argmax",
    "keypoints_to_image",
    "nms",
    "soft_nms",
]
