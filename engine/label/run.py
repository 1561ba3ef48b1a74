"""`distill label` as a function: check the request, open the teachers, run the pipeline.

Everything a user can get wrong (paths, models, settings, an existing run) is checked
here before any image is touched, and refused with a one-line `UserError`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engine.backends.base import Backend
from engine.errors import UserError
from engine.label.batches import chunk_images
from engine.label.decode import DEFAULT_MAX_PIXELS
from engine.label.discover import Source, open_sources
from engine.label.labeler import Labeler, LabelSettings, TakingTurns
from engine.label.merge import MergeSettings
from engine.label.models import check_task, make_backend, person_label_for
from engine.label.pipeline import Pipeline, RunSummary
from engine.label.shards import RunFolder, ShardWriter
from engine.label.views import TransformPlan


@dataclass
class LabelRequest:
    detector: Path
    out: Path
    keypoints: Path | None = None
    images: Path | None = None
    list_file: Path | None = None
    plan: TransformPlan = field(default_factory=TransformPlan)
    keypoint_flip: bool = True
    batch_size: int = 8
    workers: int = 2
    backend: str = "auto"
    fp16: bool = False  # torch backend on CUDA: float16 autocast
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

    def label_settings(self) -> LabelSettings:
        """What decides the records, checked (one-line UserErrors naming the flag)."""
        merge = merge_settings(self.score_floor, self.nms_threshold, self.vote_threshold, self.scoring,
                               self.max_detections)
        return LabelSettings(self.plan, merge, self.keypoint_flip, self.batch_size)

    @property
    def pixel_limit(self) -> int:
        """The decoder's bomb guard: `max_pixels`, or the default."""
        return self.max_pixels or DEFAULT_MAX_PIXELS


def merge_settings(score_floor: float, nms_threshold: float, vote_threshold: float | None, scoring: str,
                   max_detections: int) -> MergeSettings:
    """Checked ensembling settings (one-line errors naming the flag)."""
    from engine.ensemble import SCORING_METHODS

    if scoring not in SCORING_METHODS:
        raise UserError(f"unknown --scoring {scoring!r}: choose from {', '.join(SCORING_METHODS)}")
    for flag, value in (("--nms-threshold", nms_threshold), ("--vote-threshold", vote_threshold)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise UserError(f"{flag} must be in [0, 1], got {value}")
    if not 0.0 <= score_floor < 1.0:
        raise UserError(f"--score-floor must be in [0, 1), got {score_floor}")
    return MergeSettings(nms_threshold=nms_threshold, vote_threshold=vote_threshold, scoring=scoring,
                         score_floor=score_floor, max_detections=max_detections)


# Above this many detector pixels per image (shorter sides squared, summed over the
# passes), the detector dominates the CPU time and both ONNX Runtime sessions get every
# core, taking turns; below it, each gets its share of the cores and they run at the same
# time. Measured on 2 cores, tiny teachers, 8 (resp. 80) 192 px images, 10 detections
# per image (distill label; sessions at 1 thread each, at 2 each, at 2 each taking turns):
#   paper's plan 400..1200 x mirror (12.7 Mpx):  split 0.29, both at 2 threads 0.44,
#                                                 taking turns 0.46 images/s;
#   the demo's 160..224 x mirror (0.23 Mpx):      split 12.8, both at 2 threads 10.1,
#                                                 taking turns 8.6-10.3 images/s.
# The crossover lies between; 2 Mpx is near the two plans' geometric mean.
TURNS_ABOVE_PIXELS = 2_000_000


def inference_policy(backend_threads: int | None, with_keypoints: bool, plan: TransformPlan,
                     cores: int | None = None) -> tuple[int, bool]:
    """(intra-op threads of each ONNX Runtime session on the CPU, 0 = every core; whether
    the two models take turns). A detector alone gets every core; `backend_threads`, when
    given, is used as it is, without turns. cores: the cores the models may use (default:
    this machine's; a scale-out actor passes its share)."""
    if backend_threads is not None:
        return backend_threads, False
    if not with_keypoints:
        return cores or 0, False
    if sum(scale * scale for scale, _ in plan.passes) >= TURNS_ABOVE_PIXELS:
        return cores or 0, True
    return max(1, (cores or os.cpu_count() or 2) // 2), False


@dataclass
class Teachers:
    """The active models of a run; `take_turns`: both on the CPU, taking turns."""

    detector: Backend
    keypoints: Backend | None
    person: int | None
    take_turns: bool

    def labeler(self, settings: LabelSettings) -> Labeler:
        if self.take_turns:
            lock = threading.Lock()
            return Labeler(TakingTurns(self.detector, lock), TakingTurns(self.keypoints, lock), self.person, settings)
        return Labeler(self.detector, self.keypoints, self.person, settings)

    def runtime(self) -> dict:
        """How the models execute, for the manifest (not compared on resume)."""
        models = [b for b in (self.detector, self.keypoints) if b is not None]
        return {"backend": [type(b).__name__ for b in models],
                "providers": getattr(self.detector, "providers_in_use", []),
                "models_take_turns": self.take_turns}


@contextlib.contextmanager
def open_models(detector: Path, keypoints: Path | None, backend: str, threads: int, take_turns: bool,
                fp16: bool = False) -> Iterator[Teachers]:
    """The model files, activated and checked (task, person category); deactivated on
    exit. backend: --backend; threads: ONNX Runtime CPU threads per model (0 = every
    core); take_turns: make the two models take turns when both run on the CPU."""
    with contextlib.ExitStack() as stack:
        detector_backend = stack.enter_context(make_backend(detector, backend, threads=threads, fp16=fp16))
        check_task(detector_backend.card, "detect", detector)
        keypoints_backend, person = None, None
        if keypoints is not None:
            keypoints_backend = stack.enter_context(make_backend(keypoints, backend, threads=threads, fp16=fp16))
            check_task(keypoints_backend.card, "keypoints", keypoints)
            person = person_label_for(detector_backend.card, keypoints_backend.card)
        turns = (take_turns and keypoints_backend is not None and detector_backend.runs_on_cpu
                 and keypoints_backend.runs_on_cpu)
        yield Teachers(detector_backend, keypoints_backend, person, turns)


def open_teachers(request: LabelRequest, threads: int, take_turns: bool):
    """`open_models` for the request's models, backend and precision."""
    return open_models(request.detector, request.keypoints, request.backend, threads, take_turns, request.fp16)


def _model_entry(backend: Backend) -> dict:
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


@dataclass
class CheckedRequest:
    """A request checked before any model is opened: what decides the records, the
    input root and its sources (the first one already found)."""

    settings: LabelSettings
    max_pixels: int
    root: Path
    sources: Iterator[Source]


def check_request(request: LabelRequest) -> CheckedRequest:
    """Settings and input of `request`; UserError for bad settings or no images."""
    settings = request.label_settings()
    root, sources = open_sources(request.images, request.list_file)
    first = next(sources, None)
    if first is None:
        raise UserError(f"no images found in {request.images or request.list_file}")
    return CheckedRequest(settings, request.pixel_limit, root, itertools.chain([first], sources))


def open_run_folder(request: LabelRequest, checked: CheckedRequest, teachers: Teachers) -> RunFolder:
    """OUT created with its manifest (or reopened for --resume after comparing settings),
    with the run's categories."""
    settings = {
        "input": ({"images": str(checked.root.resolve())} if request.images
                  else {"list": str(request.list_file.resolve())}),
        "detector": _model_entry(teachers.detector),
        "keypoints": _model_entry(teachers.keypoints) if teachers.keypoints else None,
        "labeling": checked.settings.to_dict(),
        "max_pixels": checked.max_pixels,
    }
    folder = RunFolder(request.out, settings, request.shard_size, request.resume)
    folder.manifest["categories"] = _categories(teachers.detector.card,
                                                teachers.keypoints.card if teachers.keypoints else None)
    return folder


def label(request: LabelRequest) -> RunSummary:
    """Label the request's images into `request.out` on this box; returns the run's summary."""
    checked = check_request(request)
    threads, take_turns = inference_policy(request.backend_threads, request.keypoints is not None, request.plan)
    with open_teachers(request, threads, take_turns) as teachers:
        folder = open_run_folder(request, checked, teachers)
        folder.manifest["runtime"] = {**teachers.runtime(), "batch_size": request.batch_size,
                                      "workers": request.workers, "backend_threads": threads}
        pipeline = Pipeline(teachers.labeler(checked.settings), ShardWriter(folder), folder.finished(),
                            request.workers, checked.max_pixels,
                            chunk_images=chunk_images(request.batch_size, request.plan),
                            progress=request.progress,
                            count_sources=lambda: open_sources(request.images, request.list_file)[1])
        summary = pipeline.run(checked.sources)
        folder.mark_complete(summary.to_dict())
    return summary
