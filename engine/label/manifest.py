"""A run folder's manifest as one typed object: `RunManifest`, written by the run folder
(engine.label.shards.RunFolder) and loaded by every reader through `RunManifest.load`.

    OUT/manifest.json
    {"format": "distill-predictions-v1",
     "settings": {"input": {"images": DIR} or {"list": FILE}          RunSettings: what decides
                            (+ "dedupe": true with --dedupe),
                  "detector": MODEL, "keypoints": MODEL or null,      the records, compared on
                  "labeling": {"plan", "merge", "keypoint_flip"       resume, copied by `distill
                               (+ "escalation": a staged plan's stages)},  select` into info["labeling"]
                  "max_pixels": N
                  (+ "keep_candidates": true with --keep-candidates)},
     "shard_size": S,
     "shards": [{"index", "file", "first", "images", "failures"}, ...],   finished, by index
     "complete": bool, "started": "YYYY-MM-DDTHH:MM:SS",
     "categories": [COCO categories],            for `distill select`
     "runtime": {...},                           how it ran (LocalRuntime or RayRuntime)
     "summary": {...}}                           RunSummary, once complete (+ "escalated": N, staged plans)
    MODEL = {"task", "card_sha256", "checkpoint_sha256", "model_name"}

The JSON is the one runs have always written, so a run folder written before these types
existed loads and resumes. `categories`, `runtime` and `summary` are absent until known (a
run killed before its first shard has none of them).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.json_file import read_json_object
from engine.atomic import write_json_atomically
from engine.errors import UserError
from engine.label.labeler import LabelSettings
from engine.label.video import FrameSampling
from engine.modelcard import ModelCard

FORMAT = "distill-predictions-v1"
MANIFEST_NAME = "manifest.json"


def manifest_path(out: Path) -> Path:
    """Where the manifest of the run folder `out` lives (its presence marks a run)."""
    return Path(out) / MANIFEST_NAME


@dataclass(frozen=True)
class ModelEntry:
    """A teacher as a run records it: its task, the sha256 of its model card (equal hashes:
    interchangeable models), and for people the checkpoint's sha256 and the model name."""

    task: str
    card_sha256: str
    checkpoint_sha256: str
    model_name: str

    @classmethod
    def of(cls, card: ModelCard) -> ModelEntry:
        return cls(card.task, card.sha256(), card.checkpoint_sha256, card.model_name)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "card_sha256": self.card_sha256, "checkpoint_sha256": self.checkpoint_sha256,
                "model_name": self.model_name}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelEntry:
        return cls(str(data["task"]), str(data["card_sha256"]), str(data["checkpoint_sha256"]),
                   str(data["model_name"]))


@dataclass(frozen=True)
class RunInput:
    """What a run labeled, resolved: a folder of images (the root its records' names are
    relative to; an object-storage URL stays a str) or a list file; exactly one."""

    images: Path | str | None = None
    list_file: Path | None = None
    dedupe: bool = False  # exact duplicates became pointer records
    frames: FrameSampling | None = None  # how videos were sampled (engine.label.video)

    def __post_init__(self) -> None:
        if (self.images is None) == (self.list_file is None):
            raise ValueError("a run's input is a folder of images or a list file, exactly one")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = ({"images": str(self.images)} if self.images is not None
                                else {"list": str(self.list_file)})
        if self.dedupe:  # only then, so that a run without it writes what runs always wrote
            data["dedupe"] = True
        if self.frames is not None:  # likewise: a run that read no video writes what runs always wrote
            data["frames"] = self.frames.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunInput:
        if set(data) - {"dedupe", "frames"} not in ({"images"}, {"list"}):
            raise ValueError(f"input is {{\"images\": DIR}} or {{\"list\": FILE}}, got {data!r}")
        dedupe = bool(data.get("dedupe", False))
        frames = FrameSampling.from_dict(data["frames"]) if "frames" in data else None
        if "list" in data:
            return cls(list_file=Path(data["list"]), dedupe=dedupe, frames=frames)
        images = data["images"]
        # Path would eat a URL's "//"
        return cls(images=images if "://" in images else Path(images), dedupe=dedupe, frames=frames)


@dataclass(frozen=True)
class RunSettings:
    """What decides a run's records: the input, the teachers, the labeling settings and
    the decoder's pixel limit (the batch size changes no record: the runtime records it);
    and whether the run keeps its candidates (OUT/candidates, engine.remerge.candidates),
    compared on resume so that no finished shard lacks them."""

    input: RunInput
    detector: ModelEntry
    keypoints: ModelEntry | None
    labeling: LabelSettings
    max_pixels: int
    keep_candidates: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = {"input": self.input.to_dict(), "detector": self.detector.to_dict(),
                "keypoints": self.keypoints.to_dict() if self.keypoints is not None else None,
                "labeling": self.labeling.to_dict(), "max_pixels": self.max_pixels}
        if self.keep_candidates:  # only then: a run without them writes what runs always wrote
            data["keep_candidates"] = True
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSettings:
        """The inverse of `to_dict` (KeyError, TypeError or ValueError on a malformed dict)."""
        keypoints = data["keypoints"]
        return cls(RunInput.from_dict(data["input"]), ModelEntry.from_dict(data["detector"]),
                   ModelEntry.from_dict(keypoints) if keypoints is not None else None,
                   LabelSettings.from_dict(data["labeling"]), int(data["max_pixels"]),
                   bool(data.get("keep_candidates", False)))

    @classmethod
    def from_info(cls, info: Any, source: object) -> RunSettings | None:
        """The settings `distill select` copied into a COCO labels file's `info["labeling"]`;
        None when the file has none (ground truth, labels made elsewhere). UserError naming
        `source` (the file) when they are malformed."""
        data = info.get("labeling") if isinstance(info, dict) else None
        if data is None:
            return None
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise UserError(f"{source}: info[\"labeling\"] is not a labeling run's settings "
                            f"({_describe(error)})") from None

    def difference(self, new: RunSettings) -> str | None:
        """The first setting in which `new` differs, as "dotted.name was OLD, now NEW", or None."""
        return _first_difference(self.to_dict(), new.to_dict())


def _first_difference(old: Any, new: Any, prefix: str = "") -> str | None:
    """Dotted name of the first setting that differs, with both values, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = _first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    if old != new:
        return f"{prefix[:-1]} was {json.dumps(old)}, now {json.dumps(new)}"
    return None


@dataclass(frozen=True)
class ShardEntry:
    """A finished shard: its index and file name, the first file of its input slice, and
    how many of the slice's images became records and how many failed."""

    index: int
    file: str
    first: str
    images: int
    failures: int

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "file": self.file, "first": self.first, "images": self.images,
                "failures": self.failures}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardEntry:
        return cls(int(data["index"]), str(data["file"]), str(data["first"]), int(data["images"]),
                   int(data["failures"]))


@dataclass(frozen=True)
class LocalRuntime:
    """How a run on one box executed (never compared on resume): the backend class of each
    model, ONNX Runtime's providers in use, whether the models took turns, the batch size,
    the decode and merge workers, ONNX Runtime's CPU threads per model (0: every core)."""

    backend: tuple[str, ...]
    providers: tuple[str, ...]
    models_take_turns: bool
    batch_size: int
    workers: int
    backend_threads: int

    def to_dict(self) -> dict[str, Any]:
        return {"backend": list(self.backend), "providers": list(self.providers),
                "models_take_turns": self.models_take_turns, "batch_size": self.batch_size,
                "workers": self.workers, "backend_threads": self.backend_threads}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalRuntime:
        return cls(tuple(map(str, data["backend"])), tuple(map(str, data["providers"])),
                   bool(data["models_take_turns"]), int(data["batch_size"]), int(data["workers"]),
                   int(data["backend_threads"]))


@dataclass(frozen=True)
class RayRuntime:
    """How a run on a Ray cluster executed (never compared on resume): the cluster's GCS
    address, the actor pool (actors, CPUs and GPUs each), the requested backend, the batch
    size. On disk: {"ray": {"address", "actors", "actor_cpus", "actor_gpus"}, "backend",
    "batch_size"}."""

    address: str
    actors: int
    actor_cpus: float
    actor_gpus: float
    backend: str
    batch_size: int

    def to_dict(self) -> dict[str, Any]:
        return {"ray": {"address": self.address, "actors": self.actors, "actor_cpus": self.actor_cpus,
                        "actor_gpus": self.actor_gpus},
                "backend": self.backend, "batch_size": self.batch_size}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RayRuntime:
        ray = data["ray"]
        return cls(str(ray["address"]), int(ray["actors"]), float(ray["actor_cpus"]), float(ray["actor_gpus"]),
                   str(data["backend"]), int(data["batch_size"]))


@dataclass
class RunSummary:
    """What a run did: images labeled and failed, images skipped because the run being
    resumed had done them, detections written, wall time and seconds per pipeline stage
    (summed over threads). On disk `skipped` is "resumed_past" and times are rounded to ms."""

    images: int = 0
    failed: int = 0
    skipped: int = 0
    detections: int = 0
    wall_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0  # pointer records written instead of labels (--dedupe)
    escalated: int | None = None  # images a staged plan gave its second stage (None: no stages)

    def to_dict(self) -> dict[str, Any]:
        data = {"images": self.images, "failed": self.failed, "resumed_past": self.skipped,
                "detections": self.detections, "wall_seconds": round(self.wall_seconds, 3),
                "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()}}
        if self.duplicates:  # only then: a run without duplicates writes what runs always wrote
            data["duplicates"] = self.duplicates
        if self.escalated is not None:
            data["escalated"] = self.escalated
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        return cls(int(data["images"]), int(data["failed"]), int(data["resumed_past"]), int(data["detections"]),
                   float(data["wall_seconds"]), {str(k): float(v) for k, v in data["stage_seconds"].items()},
                   int(data.get("duplicates", 0)),
                   int(data["escalated"]) if data.get("escalated") is not None else None)

    def lines(self) -> list[str]:
        rate = self.images / self.wall_seconds if self.wall_seconds > 0 else 0.0
        per_image = self.detections / self.images if self.images else 0.0
        stages = ", ".join(f"{k} {v:.1f}" for k, v in self.stage_seconds.items())
        lines = [f"labeled {self.images} images ({rate:.2f} images/s), {self.failed} failed, "
                 f"{per_image:.1f} detections per image, {self.wall_seconds:.1f} s"]
        if self.duplicates:
            lines.append(f"duplicates: {self.duplicates} images were exact copies of earlier ones (not labeled again)")
        if self.escalated is not None:
            share = self.escalated / self.images if self.images else 0.0
            lines.append(f"escalated: {self.escalated} images ({share:.0%}) got the second stage's passes")
        if self.skipped:
            lines.append(f"resumed: {self.skipped} images were already done")
        lines.append(f"seconds per stage (summed over threads): {stages}")
        return lines


def _runtime_from_dict(data: dict[str, Any]) -> LocalRuntime | RayRuntime:
    return RayRuntime.from_dict(data) if "ray" in data else LocalRuntime.from_dict(data)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


@dataclass
class RunManifest:
    """Everything a run folder says about its run (module docstring for the JSON).

    settings: what decides the records; shard_size: images per shard (discovery indices
    [k*S, (k+1)*S) make shard k); shards: the finished ones, by index; complete: every
    shard written; started: local time the run began; categories: COCO categories of the
    labels (`distill select` writes them), None until the models are open; runtime: how
    it ran, None until known; summary: the run's counts and times, once complete.
    """

    settings: RunSettings
    shard_size: int
    shards: list[ShardEntry] = field(default_factory=list)
    complete: bool = False
    started: str = field(default_factory=_now)
    categories: list[dict[str, Any]] | None = None
    runtime: LocalRuntime | RayRuntime | None = None
    summary: RunSummary | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": FORMAT, "settings": self.settings.to_dict(), "shard_size": self.shard_size,
                                "shards": [s.to_dict() for s in self.shards], "complete": self.complete,
                                "started": self.started}
        if self.categories is not None:
            data["categories"] = self.categories
        if self.runtime is not None:
            data["runtime"] = self.runtime.to_dict()
        if self.summary is not None:
            data["summary"] = self.summary.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunManifest:
        """The inverse of `to_dict` (KeyError, TypeError or ValueError on a malformed dict)."""
        categories = data.get("categories")
        if categories is not None and not (isinstance(categories, list)
                                           and all(isinstance(c, dict) for c in categories)):
            raise ValueError("categories is not a list of COCO categories")
        return cls(settings=RunSettings.from_dict(data["settings"]), shard_size=int(data["shard_size"]),
                   shards=[ShardEntry.from_dict(s) for s in data["shards"]], complete=bool(data["complete"]),
                   started=str(data["started"]), categories=categories,
                   runtime=_runtime_from_dict(data["runtime"]) if data.get("runtime") is not None else None,
                   summary=RunSummary.from_dict(data["summary"]) if data.get("summary") is not None else None)

    @classmethod
    def load(cls, out: Path) -> RunManifest:
        """The manifest of the run folder `out`; UserError when there is none or it is
        unreadable or malformed."""
        path = manifest_path(out)
        try:
            data = read_json_object(path)
        except FileNotFoundError:
            raise UserError(f"{out} holds no labeling run (no {MANIFEST_NAME})") from None
        except ValueError as error:
            raise UserError(f"cannot read {path}: {error}") from None
        if data.get("format") != FORMAT:
            raise UserError(f"{path} is not a distill predictions manifest (format {FORMAT})")
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise UserError(f"cannot read {path}: {_describe(error)}") from None

    def save(self, out: Path) -> None:
        """Replace the manifest of `out` atomically (a reader sees the old one or this one)."""
        write_json_atomically(manifest_path(out), self.to_dict(), indent=1)


def _describe(error: Exception) -> str:
    """One line about a malformed dict: a missing key named as such."""
    if isinstance(error, KeyError):
        return f"missing field {error.args[0]!r}"
    return str(error)
