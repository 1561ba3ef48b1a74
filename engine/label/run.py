"""`distill label` as a function: check the request, open the teachers, run the pipeline.

Everything a user can get wrong (paths, models, settings, an existing run) is checked
here before any image is touched, and refused with a one-line `UserError`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError
from engine.label.batches import chunk_images
from engine.label.decode import DEFAULT_MAX_PIXELS
from engine.label.discover import open_sources
from engine.label.labeler import Labeler, LabelSettings
from engine.label.merge import MergeSettings
from engine.label.models import check_task, make_backend, person_label_for
from engine.label.pipeline import Pipeline, RunSummary
from engine.label.shards import RunFolder
from engine.label.views import TransformPlan, parse_scales


@dataclass
class LabelRequest:
    detector: Path
    out: Path
    keypoints: Path | None = None
    images: Path | None = None
    list_file: Path | None = None
    scales: str = "400:1200:100"
    max_size: int = 2000
    flip: bool = True
    keypoint_flip: bool = True
    batch_size: int = 8
    workers: int = 2
    backend: str = "auto"
    score_floor: float = 0.05
    nms_threshold: float = 0.5
    vote_threshold: float | None = 0.8
    scoring: str = "id"
    max_detections: int = 100
    max_pixels: int | None = None
    shard_size: int = 1000
    backend_threads: int | None = None
    resume: bool = False
    progress: bool = True


def _merge_settings(request: LabelRequest) -> MergeSettings:
    from engine.ensemble import SCORING_METHODS

    if request.scoring not in SCORING_METHODS:
        raise UserError(f"unknown --scoring {request.scoring!r}: choose from {', '.join(SCORING_METHODS)}")
    for flag, value in (("--nms-threshold", request.nms_threshold), ("--vote-threshold", request.vote_threshold)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise UserError(f"{flag} must be in [0, 1], got {value}")
    if not 0.0 <= request.score_floor < 1.0:
        raise UserError(f"--score-floor must be in [0, 1), got {request.score_floor}")
    return MergeSettings(nms_threshold=request.nms_threshold, vote_threshold=request.vote_threshold,
                         scoring=request.scoring, score_floor=request.score_floor,
                         max_detections=request.max_detections)


def _session_threads(request: LabelRequest) -> int:
    """Intra-op threads of each ONNX Runtime session on the CPU. The detector and the
    keypoint model run at the same time in their own stages: each taking every core
    oversubscribes them (measured on 2 cores: 1.55 images/s with both sessions at 2
    threads, 2.13 with one each, benchmarks/label_throughput.py). 0 = ONNX Runtime's
    default (all cores)."""
    if request.backend_threads is not None:
        return request.backend_threads
    if request.keypoints is None:
        return 0
    return max(1, (os.cpu_count() or 2) // 2)


def _model_entry(backend) -> dict:
    card = backend.card
    return {"task": card.task, "card_sha256": card.sha256(), "checkpoint_sha256": card.checkpoint_sha256,
            "model_name": card.model_name}


def _categories(detector, keypoints) -> list[dict]:
    """COCO `categories` for `distill select`: the detector's, the person category with
    the keypoint model's names and skeleton."""
    result = [{"id": int(c["id"]), "name": c["name"]} for c in detector.categories]
    if keypoints is not None:
        person = keypoints.categories[0]["id"]
        for category in result:
            if category["id"] == person:
                category.update(keypoints=list(keypoints.keypoint_names), skeleton=keypoints.skeleton)
    return result


def label(request: LabelRequest) -> RunSummary:
    """Label the request's images into `request.out`; returns the run's summary."""
    plan = TransformPlan(parse_scales(request.scales), request.flip, request.max_size)
    settings = LabelSettings(plan, _merge_settings(request), request.keypoint_flip, request.batch_size)
    max_pixels = request.max_pixels or DEFAULT_MAX_PIXELS
    root, sources = open_sources(request.images, request.list_file)
    first = next(sources, None)
    if first is None:
        raise UserError(f"no images found in {request.images or request.list_file}")
    sources = itertools.chain([first], sources)

    threads = _session_threads(request)
    with contextlib.ExitStack() as stack:
        detector = make_backend(request.detector, request.backend, threads=threads)
        stack.enter_context(detector)
        check_task(detector.card, "detect", request.detector)
        keypoints, person = None, None
        if request.keypoints is not None:
            keypoints = make_backend(request.keypoints, request.backend, threads=threads)
            stack.enter_context(keypoints)
            check_task(keypoints.card, "keypoints", request.keypoints)
            person = person_label_for(detector.card, keypoints.card)
        run_settings = {
            "input": {"images": str(root.resolve())} if request.images else {"list": str(request.list_file.resolve())},
            "detector": _model_entry(detector),
            "keypoints": _model_entry(keypoints) if keypoints else None,
            "labeling": settings.to_dict(),
            "max_pixels": max_pixels,
        }
        folder = RunFolder(request.out, run_settings, request.shard_size, request.resume)
        # How this run executes (not compared on resume: it does not change the records).
        folder.manifest["runtime"] = {
            "backend": [type(b).__name__ for b in (detector, keypoints) if b is not None],
            "providers": getattr(detector, "providers_in_use", []),
            "batch_size": request.batch_size, "workers": request.workers, "backend_threads": threads,
        }
        folder.manifest["categories"] = _categories(detector.card, keypoints.card if keypoints else None)
        labeler = Labeler(detector, keypoints, person, settings)
        pipeline = Pipeline(labeler, folder, request.workers, max_pixels,
                            chunk_images=chunk_images(request.batch_size, plan),
                            progress=request.progress,
                            count_sources=lambda: open_sources(request.images, request.list_file)[1])
        summary = pipeline.run(sources)
        folder.mark_complete(summary.to_dict())
    return summary
