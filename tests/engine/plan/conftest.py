"""Shared by the plan-transforms tests: every pass of a small plan run once by the tiny
exported teachers, and the scorer over that cache."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from engine.label.merge import MergeSettings
from engine.label.views import TransformPlan
from engine.plan.scoring import SubsetScorer

FLOOR = 0.001  # the 3-step tiny detector scores low (as in test_label_pipeline)


@contextlib.contextmanager
def cached_scorer(exported, labeled: Path) -> Iterator[tuple[SubsetScorer, TransformPlan, MergeSettings]]:
    """(scorer, full plan, merge): the full plan (shorter sides 96 and 128, each mirrored)
    run over `labeled`'s images, scored against its ground truth with the top-down
    keypoint model; the backends stay open while the caller uses the scorer."""
    from engine.label.models import make_backend
    from engine.plan.cli import _ground_truth
    from engine.plan.passes import run_passes
    from engine.plan.scoring import KeypointStage

    merge = MergeSettings(score_floor=FLOOR, max_detections=8)
    gt, files = _ground_truth(labeled, labeled.parent / "images", None)
    full = TransformPlan.grid((96, 128), max_size=256)
    with make_backend(exported["detect"][0], "auto") as detector, \
            make_backend(exported["keypoints"][0], "auto") as keypoints:
        cache = run_passes(files, detector, full, 8, FLOOR, 10**8, progress=False)
        yield SubsetScorer(cache, gt, detector.card, merge, KeypointStage(keypoints, 0, True, 8), 1), full, merge
