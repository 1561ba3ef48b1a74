"""`distill label` as a function: check the request, open the teachers, run the pipeline.

The request's values were checked when it was made (engine.label.request); everything
else a user can get wrong (an empty input, models, an existing run) is checked here before
any image is touched, and refused with a one-line `UserError`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.backends.base import Backend
from engine.errors import UserError
from engine.label.batches import chunk_images
from engine.label.discover import Source
from engine.label.labeler import Labeler, LabelSettings, TakingTurns
from engine.label.manifest import (LocalRuntime, ModelEntry, RayRuntime, RunInput, RunManifest, RunSettings,
                                   RunSummary)
from engine.label.models import check_task, make_backend, one_stage_person_label, person_label_for
from engine.label.pipeline import Pipeline
from engine.label.profiles import check_profiles
from engine.label.request import LabelRequest
from engine.label.shards import RunFolder, ShardWriter
from engine.label.views import TransformPlan


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


def inference_policy(request: LabelRequest, cores: int | None = None) -> tuple[int, bool]:
    """(intra-op threads of each ONNX Runtime session on the CPU, 0 = every core; whether
    the two models take turns) for `request`. A detector alone gets every core; the
    request's `runtime.backend_threads`, when given, is used as it is, without turns.
    cores: the cores the models may use (default: this machine's; a scale-out actor passes
    its share)."""
    if request.runtime.backend_threads is not None:
        return request.runtime.backend_threads, False
    if request.keypoints is None:
        return cores or 0, False
    if sum(scale * scale for scale, _ in request.labeling.plan.passes) >= TURNS_ABOVE_PIXELS:
        return cores or 0, True
    return max(1, (cores or os.cpu_count() or 2) // 2), False


@dataclass
class Teachers:
    """The active models of a run; `take_turns`: both on the CPU, taking turns."""

    detector: Backend
    keypoints: Backend | None
    person: int | None
    take_turns: bool

    def labeler(self, settings: LabelSettings, batch_size: int) -> Labeler:
        if self.take_turns:
            lock = threading.Lock()
            return Labeler(TakingTurns(self.detector, lock), TakingTurns(self.keypoints, lock), self.person, settings,
                           batch_size)
        return Labeler(self.detector, self.keypoints, self.person, settings, batch_size)

    def runtime(self, request: LabelRequest, threads: int) -> LocalRuntime:
        """How `request` runs on this box with these models and `threads` ONNX Runtime
        threads each, for the manifest (not compared on resume)."""
        models = [b for b in (self.detector, self.keypoints) if b is not None]
        return LocalRuntime(tuple(type(b).__name__ for b in models),
                            tuple(getattr(self.detector, "providers_in_use", ())), self.take_turns,
                            request.runtime.batch_size, request.runtime.workers, threads)


@contextlib.contextmanager
def open_models(detector: Path, keypoints: Path | None, backend: str, threads: int, take_turns: bool,
                fp16: bool = False, *, plan: TransformPlan, batch_size: int) -> Iterator[Teachers]:
    """The model files, activated and checked (task, person category, and that each takes
    every input a run of `plan` in batches of `batch_size` feeds it); deactivated on
    exit. backend: --backend; threads: ONNX Runtime CPU threads per model (0 = every
    core); take_turns: make the two models take turns when both run on the CPU."""
    with contextlib.ExitStack() as stack:
        detector_backend = stack.enter_context(make_backend(detector, backend, threads=threads, fp16=fp16))
        check_task(detector_backend.card, "detect", detector)
        check_profiles(detector, detector_backend.card, detector_backend.input_profiles, plan, batch_size)
        keypoints_backend, person = None, one_stage_person_label(detector_backend.card)
        if keypoints is not None:
            keypoints_backend = stack.enter_context(make_backend(keypoints, backend, threads=threads, fp16=fp16))
            check_task(keypoints_backend.card, "keypoints", keypoints)
            check_profiles(keypoints, keypoints_backend.card, keypoints_backend.input_profiles, plan, batch_size)
            person = person_label_for(detector_backend.card, keypoints_backend.card)
        turns = (take_turns and keypoints_backend is not None and detector_backend.runs_on_cpu
                 and keypoints_backend.runs_on_cpu)
        yield Teachers(detector_backend, keypoints_backend, person, turns)


def open_teachers(request: LabelRequest, threads: int, take_turns: bool):
    """`open_models` for the request's models, backend and precision."""
    return open_models(request.detector, request.keypoints, request.runtime.backend, threads, take_turns,
                       request.runtime.fp16, plan=request.labeling.plan, batch_size=request.runtime.batch_size)


def _categories(detector, keypoints) -> list[dict]:
    """COCO `categories` for `distill select`: the detector's, the person category with the
    names and skeleton of whatever labels its keypoints: the top-down keypoint model, else
    a one-stage pose detector itself (its person category: COCO's person, or its only one)."""
    result = [{"id": int(c["id"]), "name": c["name"]} for c in detector.categories]
    source, person = None, None
    if keypoints is not None:
        source, person = keypoints, keypoints.categories[0]["id"]
    elif one_stage_person_label(detector) is not None:
        source, person = detector, result[one_stage_person_label(detector)]["id"]
    for category in result:
        if source is not None and category["id"] == person:
            category.update(keypoints=list(source.keypoint_names), skeleton=source.skeleton)
    return result


@dataclass
class CheckedRequest:
    """A request's input, opened before any model is: the root its records' names are
    relative to (a URL's root is the URL, a str), and its sources (the first one already found)."""

    root: Path | str
    sources: Iterator[Source]


def check_request(request: LabelRequest) -> CheckedRequest:
    """The input of `request`, opened; UserError when it holds no image."""
    root, sources = request.inputs.open()
    first = next(sources, None)
    if first is None:
        raise UserError(f"no images found in {request.inputs.given}")
    return CheckedRequest(root, itertools.chain([first], sources))


def run_settings(request: LabelRequest, checked: CheckedRequest, teachers: Teachers) -> RunSettings:
    """What decides the records of `request` with these models (compared on resume)."""
    inputs = request.inputs
    return RunSettings(
        input=(RunInput(images=checked.root.resolve() if isinstance(checked.root, Path) else checked.root,
                        dedupe=inputs.dedupe, frames=inputs.frames)
               if inputs.images is not None
               else RunInput(list_file=inputs.list_file.resolve(), dedupe=inputs.dedupe, frames=inputs.frames)),
        detector=ModelEntry.of(teachers.detector.card),
        keypoints=ModelEntry.of(teachers.keypoints.card) if teachers.keypoints is not None else None,
        labeling=request.labeling, max_pixels=inputs.max_pixels, keep_candidates=request.keep_candidates)


def open_run_folder(request: LabelRequest, checked: CheckedRequest, teachers: Teachers,
                    runtime: LocalRuntime | RayRuntime) -> RunFolder:
    """OUT created with its manifest (or reopened for --resume after comparing settings),
    with the run's categories and how it runs."""
    categories = _categories(teachers.detector.card, teachers.keypoints.card if teachers.keypoints else None)
    manifest = RunManifest(run_settings(request, checked, teachers), request.shard_size, categories=categories,
                           runtime=runtime)
    return RunFolder(request.out, manifest, request.resume)


def _candidate_writer(request: LabelRequest, teachers: Teachers, shard_size: int):
    """Where `--keep-candidates` keeps every pass's candidates (None without it), with the
    detector's card beside them (engine.remerge.candidates)."""
    if not request.keep_candidates:
        return None
    from engine.remerge.candidates import CandidateWriter, write_detector_card

    card = teachers.detector.card
    write_detector_card(request.out, card)
    person = teachers.keypoints.card if teachers.keypoints is not None else None
    return CandidateWriter(request.out, shard_size, len(request.labeling.plan.passes),
                           len(card.keypoint_names) if card.has_keypoints else None,
                           len(person.keypoint_names) if person is not None else None)


def label(request: LabelRequest) -> RunSummary:
    """Label the request's images into `request.out` on this box; returns the run's summary."""
    checked = check_request(request)
    threads, take_turns = inference_policy(request)
    with open_teachers(request, threads, take_turns) as teachers:
        with contextlib.closing(open_run_folder(request, checked, teachers, teachers.runtime(request, threads))) as folder:
            pipeline = Pipeline(teachers.labeler(request.labeling, request.runtime.batch_size), ShardWriter(folder),
                                folder.finished(), request.runtime.workers, request.inputs.max_pixels,
                                chunk_images=chunk_images(request.runtime.batch_size, request.labeling.plan),
                                progress=request.runtime.progress,
                                count_sources=request.inputs.listing, dedupe=request.inputs.dedupe,
                                candidates=_candidate_writer(request, teachers, folder.shard_size))
            summary = pipeline.run(checked.sources)
            folder.mark_complete(summary)
    return summary
