"""A labeling run ensembled again from its kept candidates, into a new run folder.

    source OUT (labeled with --keep-candidates) -> OUT2, shard by shard:
      records + candidates file -> the candidates of the new plan's passes above the new
      floor -> merge (NMS + box voting, new settings) -> keypoints (reused where a person
      box did not change, else the keypoint model) -> records -> OUT2's shard

OUT2 is a run folder like any other (same shard size, names and failures; a manifest with
the new labeling settings, which `distill select` reads as usual), and its records are
those a fresh `distill label` with the same settings would write: the candidates are the
arrays that run's merge would see, bit for bit. The detector never runs; the input
images are read only for person boxes that changed, in discovery order, one forward pass.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine.errors import UserError
from engine.label.decode import DecodeError, decode_bytes, read_source
from engine.label.discover import Source, open_sources
from engine.label.keypoints import one_stage_keypoints
from engine.label.escalation import Escalation
from engine.label.labeler import LabelSettings
from engine.label.manifest import RunManifest, RunSummary
from engine.label.merge import Detections, MergeSettings, merge_candidates
from engine.label.models import make_backend, one_stage_person_label
from engine.label.records import make_record
from engine.label.shards import RunFolder, record_line
from engine.label.views import TransformPlan
from engine.remerge.candidates import ShardCandidates, candidates_path, read_detector_card
from engine.remerge.keypoint_reuse import keypoints_with_reuse

KEYPOINT_CHUNK = 16  # images whose changed person boxes go through the keypoint model together


@dataclass(frozen=True)
class RemergeRequest:
    """Ensemble the run in `source` again into `out`: with `plan` (a subset of its passes,
    same max size; None: all of them), staged by `escalation` (None: a fixed plan; the
    rule is decided again on the kept first-stage candidates, so every pass an image may
    need must have run for it) and `merge` (None: the run's own settings; its score
    floor may only rise: candidates below the run's floor were never kept). keypoints: the
    run's top-down keypoint model file, needed only when a person box changes; backend,
    batch_size, workers: as for labeling (none changes a record). resume: `out` holds an
    interrupted remerge with the same settings: its finished shards are kept, the others
    written."""

    source: Path
    out: Path
    plan: TransformPlan | None = None
    merge: MergeSettings | None = None
    keypoints: Path | None = None
    escalation: Escalation | None = None
    backend: str = "auto"
    batch_size: int = 8
    workers: int = 1
    resume: bool = False


@dataclass
class RemergeSummary:
    run: RunSummary
    changed_persons: int  # person boxes the keypoint model ran on
    persons: int  # person boxes in the new records
    keypoints: str = "top-down"  # where the records' keypoints come from: "top-down", "one-stage" or "none"

    def lines(self) -> list[str]:
        rate = self.run.images / self.run.wall_seconds if self.run.wall_seconds > 0 else 0.0
        return [f"remerged {self.run.images} images ({rate:.1f} images/s), {self.run.failed} failed in the run, "
                f"{self.run.detections} detections, {self.run.wall_seconds:.1f} s",
                *([f"keypoint model on {self.changed_persons} of {self.persons} person boxes (the others unchanged)"]
                  if self.keypoints == "top-down" else
                  ["keypoints: the detector's own, voted with the boxes (no keypoint model)"]
                  if self.keypoints == "one-stage" else [])]


def new_settings(old: LabelSettings, plan: TransformPlan | None, merge: MergeSettings | None,
                 escalation: Escalation | None = None) -> LabelSettings:
    """The remerge's labeling settings; ValueError when the run's candidates cannot give them."""
    plan = plan or old.plan
    merge = merge or old.merge
    if plan.max_size != old.plan.max_size:
        raise ValueError(f"the plan's max size {plan.max_size} differs from the run's {old.plan.max_size}")
    missing = [p for p in plan.passes if p not in old.plan.passes]
    if missing:
        raise ValueError(f"passes {missing} are not among the run's {list(old.plan.passes)}")
    if merge.score_floor < old.merge.score_floor:
        raise ValueError(f"score floor {merge.score_floor} is below the run's {old.merge.score_floor}: "
                         "candidates under it were not kept")
    return LabelSettings(plan, merge, old.keypoint_flip, escalation)


class _Images:
    """The run's input walked forward once: the decoded image of a name, on demand."""

    def __init__(self, manifest: RunManifest, max_pixels: int) -> None:
        self.input = manifest.settings.input
        self.max_pixels = max_pixels
        self._sources: Iterator[Source] | None = None

    def get(self, name: str) -> np.ndarray:
        if self._sources is None:
            self._sources = open_sources(self.input.images, self.input.list_file, frames=self.input.frames)[1]
        for source in self._sources:
            if source.name == name:
                try:
                    return decode_bytes(read_source(source), self.max_pixels)
                except DecodeError as error:
                    raise UserError(f"cannot read {name} again: {error}") from None
        raise UserError(f"{name} is no longer in the run's input {self.input.images or self.input.list_file}")


def remerge(request: RemergeRequest) -> RemergeSummary:
    started = time.perf_counter()
    manifest = RunManifest.load(request.source)
    settings = manifest.settings
    if not settings.keep_candidates:
        raise UserError(f"the run in {request.source} kept no candidates (label it with --keep-candidates)")
    if not manifest.complete:
        raise UserError(f"the run in {request.source} is not complete: resume it first")
    try:
        labeling = new_settings(settings.labeling, request.plan, request.merge, request.escalation)
    except ValueError as error:
        raise UserError(str(error)) from None
    card = read_detector_card(request.source)
    run_passes = settings.labeling.plan.passes
    plan_index = [run_passes.index(p) for p in labeling.plan.passes]
    first_index = ([run_passes.index(p) for p in labeling.escalation.first] if labeling.escalation is not None
                   else None)
    person = _person_label(manifest, card)
    folder = RunFolder(request.out, RunManifest(replace(settings, labeling=labeling, keep_candidates=False),
                                                manifest.shard_size, categories=manifest.categories),
                       resume=request.resume)
    finished = {entry.index for entry in folder.manifest.shards}
    failures = _failures_by_shard(request.source)
    images = _Images(manifest, settings.max_pixels)
    summary = RunSummary()
    changed = persons = 0
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(request.workers) as pool:
        stack.callback(folder.close)  # OUT2's lock released however the remerge ends
        opened = []

        def keypoint_model():
            if not opened:
                if request.keypoints is None:
                    raise UserError("person boxes changed: the run's keypoint model is needed to label them "
                                    "(give its file)")
                backend = stack.enter_context(make_backend(request.keypoints, request.backend))
                if backend.card.sha256() != settings.keypoints.card_sha256:
                    raise UserError(f"{request.keypoints} is not the run's keypoint model (its card differs)")
                opened.append(backend)
            return opened[0]

        for entry in manifest.shards:
            if entry.index in finished:  # written by the remerge being resumed
                continue
            lines = (request.source / "shards" / entry.file).read_text(encoding="utf-8").splitlines()
            records = [json.loads(line) for line in lines]
            kept = ShardCandidates(candidates_path(request.source, entry.file))
            labeled = [r for r in records if "duplicate_of" not in r]
            if [r["file_name"] for r in labeled] != kept.names:
                raise UserError(f"{candidates_path(request.source, entry.file)} does not belong to {entry.file}")
            start = time.perf_counter()
            merged = list(pool.map(lambda i: _merge(kept, i, labeled[i]["file_name"], labeling, plan_index,
                                                    first_index), range(len(labeled))))
            detections = [d for d, _ in merged]
            _add(summary, "ensemble", start)
            start = time.perf_counter()
            if settings.keypoints is not None:
                keypoints = []
                # A few images at a time: the heatmaps of a whole shard's crops would not be small.
                for at in range(0, len(labeled), KEYPOINT_CHUNK):
                    rows = range(at, min(at + KEYPOINT_CHUNK, len(labeled)))
                    found, count = keypoints_with_reuse(
                        detections[at:rows.stop], [kept.persons(i) for i in rows],
                        lambda i, at=at: images.get(labeled[at + i]["file_name"]), keypoint_model, person,
                        labeling.keypoint_flip, request.batch_size)
                    keypoints += found
                    changed += count
                persons += sum(len(k.rows) for k in keypoints)
            else:
                keypoints = [one_stage_keypoints(d, person) for d in detections]
            _add(summary, "keypoints", start)
            new = iter(make_record(r["file_name"], r["height"], r["width"], d, k, card, e)
                       for r, (d, e), k in zip(labeled, merged, keypoints))
            out = [r if "duplicate_of" in r else next(new) for r in records]
            folder.write_shard(entry.index, "".join(record_line(r) for r in out), entry.first, entry.images,
                               failures.get(entry.index, []))
            summary.images += len(labeled)
            summary.duplicates += len(records) - len(labeled)
            summary.failed += entry.failures
            summary.detections += sum(len(d.scores) for d in detections)
            if labeling.escalation is not None:
                summary.escalated = (summary.escalated or 0) + sum(bool(e) for _, e in merged)
    summary.wall_seconds = time.perf_counter() - started
    folder.mark_complete(summary)
    source = "top-down" if settings.keypoints is not None else "one-stage" if person is not None else "none"
    return RemergeSummary(summary, changed, persons, source)


def _add(summary: RunSummary, stage: str, start: float) -> None:
    summary.stage_seconds[stage] = summary.stage_seconds.get(stage, 0.0) + time.perf_counter() - start


def _merge(kept: ShardCandidates, i: int, name: str, labeling: LabelSettings, plan_index: list[int],
           first_index: list[int] | None) -> tuple[Detections, bool | None]:
    """Image `i`'s detections and, for a staged plan, whether the rule escalates it: as the
    labeling pipeline decides (engine.label.pipeline), from the same arrays."""
    floor, merge = labeling.merge.score_floor, labeling.merge
    needed = plan_index if first_index is None else first_index
    ran = kept.ran(i)
    if not ran[needed].all():
        raise UserError(f"not every pass the plan needs ran for {name} (the run was staged)")
    if first_index is None:
        return merge_candidates(kept.image(i, plan_index, floor), merge), None
    first = merge_candidates(kept.image(i, first_index, floor), merge)
    if not labeling.escalation.escalates(first, [kept.image(i, [p], floor) for p in first_index]):
        return first, False
    if not ran[plan_index].all():
        raise UserError(f"{name} is escalated by the rule, but the passes of its second stage did not run for it")
    return merge_candidates(kept.image(i, plan_index, floor), merge), True


def _person_label(manifest: RunManifest, card) -> int | None:
    """The detector's label index of the category whose keypoints the records carry: the
    top-down model's person category (the one the manifest's categories give keypoints),
    else a one-stage pose detector's."""
    if manifest.settings.keypoints is None:
        return one_stage_person_label(card)
    ids = [int(c["id"]) for c in card.categories]
    for category in manifest.categories or []:
        if "keypoints" in category:
            return ids.index(int(category["id"]))
    raise UserError("the run's manifest names no category with keypoints")


def _failures_by_shard(source: Path) -> dict[int, list[dict]]:
    """The run's failure entries by shard, without the shard field (RunFolder adds it)."""
    out: dict[int, list[dict]] = {}
    path = source / "failures.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        entry = json.loads(line)
        shard = entry.pop("shard")
        out.setdefault(shard, []).append(entry)
    return out
