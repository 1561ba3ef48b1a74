"""What a labeling run is asked to do, as one typed object.

    LabelRequest
      models      detector (and keypoint model) files
      inputs      Inputs: a folder or a list file, the decoder's pixel limit
      labeling    LabelSettings: plan, merge, keypoint flipping (what decides the records)
      runtime     Runtime: backend, batch size, threads (how fast, never what)
      out, shard_size, resume

Every default lives here (or on the settings type it belongs to) and nowhere else: the
command line (engine/options.py) leaves a flag it was not given as None and the
dataclass default applies. Values are checked where the object is made (`ValueError`
about the value); the option groups turn those into one-line errors naming the flag.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.label.decode import DEFAULT_MAX_PIXELS
from engine.label.labeler import LabelSettings
from engine.label.models import BACKENDS
from engine.label.storage import is_url
from engine.label.video import FrameSampling

DEFAULT_SHARD_SIZE = 1000


def at_least_one(name: str, value: int | None) -> None:
    """ValueError unless `value` is None or >= 1."""
    if value is not None and value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


@dataclass(frozen=True)
class Inputs:
    """Where the images come from: `images`, a folder searched recursively, a tar shard, a
    brace pattern of them (`dump/{00000..00099}.tar`) or an object-storage URL
    (`s3://bucket/prefix`, the storage extra), or `list_file`, a text file listing paths
    (relative to its folder, or absolute); exactly one. Tar shards met
    anywhere are read in place (engine.label.tar). max_pixels: refuse images with more
    pixels than this, read from the header (the decoder's bomb guard). dedupe: an image
    whose bytes equal an earlier one's is not labeled again but written as a pointer
    record {"file_name", "duplicate_of"} (engine.label.pipeline). frames: how video files
    are sampled (engine.label.video: a record per frame, named `match.mp4#t=12.480`);
    None: videos are not read (a folder's are skipped, as any non-image file)."""

    images: Path | str | None = None
    list_file: Path | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    dedupe: bool = False
    frames: FrameSampling | None = None

    def __post_init__(self) -> None:
        if (self.images is None) == (self.list_file is None):
            raise ValueError("give exactly one input: a folder of images or a list file")
        at_least_one("max_pixels", self.max_pixels)
        if isinstance(self.images, str) and not is_url(self.images):
            object.__setattr__(self, "images", Path(self.images))  # a URL stays a str: Path would eat "//"

    @property
    def given(self) -> Path | str:
        """The folder or list file, as given."""
        return self.images if self.images is not None else self.list_file

    def open(self):
        """(root that record names are relative to, lazy iterator of `Source`s)."""
        from engine.label.discover import open_sources

        return open_sources(self.images, self.list_file, frames=self.frames)

    def listing(self):
        """A fresh lazy iterator of the same `Source`s as `open`, to count them: tar
        members are listed, not read; video frames are estimated, not decoded."""
        from engine.label.discover import open_sources

        return open_sources(self.images, self.list_file, with_bytes=False, frames=self.frames)[1]


@dataclass(frozen=True)
class Runtime:
    """How the run executes; none of it changes a record.

    backend: one of BACKENDS ("auto": from each model file's suffix); batch_size: views
    (or crops) per model call; workers: decode threads and merge threads, each; backend_threads: ONNX Runtime CPU threads per model
    (None: the inference policy of engine.label.run decides); fp16: float16 autocast, torch
    backend on CUDA only; progress: a progress bar on stderr.
    """

    backend: str = "auto"
    batch_size: int = 8
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    backend_threads: int | None = None
    fp16: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}: choose from {', '.join(BACKENDS)}")
        at_least_one("batch_size", self.batch_size)
        at_least_one("workers", self.workers)
        at_least_one("backend_threads", self.backend_threads)


@dataclass(frozen=True)
class LabelRequest:
    """One `distill label` run: label `inputs` with the teachers into the run folder `out`.

    detector: a `detect` model file; keypoints: a top-down `keypoints` model file or None;
    shard_size: images per shard; resume: continue the run already in `out`;
    keep_candidates: keep every pass's pre-merge candidates beside each shard
    (engine.remerge.candidates), for `distill remerge`.
    """

    detector: Path
    out: Path
    inputs: Inputs
    keypoints: Path | None = None
    labeling: LabelSettings = field(default_factory=LabelSettings)
    runtime: Runtime = field(default_factory=Runtime)
    shard_size: int = DEFAULT_SHARD_SIZE
    resume: bool = False
    keep_candidates: bool = False

    def __post_init__(self) -> None:
        at_least_one("shard_size", self.shard_size)


@dataclass(frozen=True)
class RayPool:
    """Scale-out on a Ray cluster (engine/scale): address (None: RAY_ADDRESS, else the
    cluster `ray start` made here, else a new local one); actors, actor_cpus, actor_gpus:
    the pool (None: engine.scale.cluster.size_pool decides)."""

    address: str | None = None
    actors: int | None = None
    actor_cpus: float | None = None
    actor_gpus: float | None = None

    def __post_init__(self) -> None:
        at_least_one("actors", self.actors)
        for name, value in (("actor_cpus", self.actor_cpus), ("actor_gpus", self.actor_gpus)):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
