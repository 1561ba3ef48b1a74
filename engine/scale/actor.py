"""One Ray Data actor: the teachers loaded once, then shard after shard labeled by the
single-box pipeline (`engine.label.pipeline.Pipeline`), so decoding, views, inference,
merging and keypoints overlap inside the actor exactly as they do on one box.

Each file is read and decoded here, from its bytes, by the engine's guarded decoder: an
unreadable image becomes a failure entry, never an exception (Ray Data's own image
reader fails the whole job on one undecodable file). The actor returns each shard's
records as the JSON lines the shard file will hold; the driver writes them.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from engine.label.batches import chunk_images
from engine.label.pipeline import Pipeline
from engine.label.request import LabelRequest
from engine.label.run import inference_policy, open_teachers
from engine.label.shards import record_line
from engine.scale.split import sources_of_row


class ShardCollector:
    """A pipeline sink that keeps one shard in memory: record lines and failures, in
    discovery order."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.failures: list[dict] = []

    def add(self, index: int, name: str, record: dict | None, reason: str | None) -> None:
        if record is not None:
            self.lines.append(record_line(record))
        else:
            self.failures.append({"file_name": name, "reason": reason})

    def close(self) -> None:
        pass


class ShardLabeler:
    """The callable class of `map_batches`: rows {"shard", "names", "problems"} in, rows
    {"shard", "first", "records", "failures", "images", "detections", "stage_seconds"} out
    (records: the shard's JSON lines; failures and stage_seconds: JSON text).

    request: the run's request, checked by the driver (models, settings); root: the input
    root the rows' names are relative to; threads: the CPU threads this actor reserved,
    for its decode and merge workers and for ONNX Runtime on the CPU.
    """

    def __init__(self, request: LabelRequest, root: Path, threads: int) -> None:
        self.root = root
        self.max_pixels = request.inputs.max_pixels
        self.threads = threads
        self.chunk_images = chunk_images(request.runtime.batch_size, request.labeling.plan)
        backend_threads, take_turns = inference_policy(request, cores=threads)
        self._stack = ExitStack()
        self.teachers = self._stack.enter_context(open_teachers(request, backend_threads, take_turns))
        self.labeler = self.teachers.labeler(request.labeling, request.runtime.batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, list] = {key: [] for key in ("shard", "first", "records", "failures", "images",
                                                     "detections", "escalated", "stage_seconds")}
        for shard, names, problems in zip(batch["shard"], batch["names"], batch["problems"]):
            sources = sources_of_row(names, problems, self.root)
            collector = ShardCollector()
            pipeline = Pipeline(self.labeler, collector, None, self.threads, self.max_pixels,
                                chunk_images=self.chunk_images, progress=False)
            summary = pipeline.run(iter(sources))
            out["shard"].append(int(shard))
            out["first"].append(sources[0].name)
            out["records"].append("".join(collector.lines))
            out["failures"].append(json.dumps(collector.failures, ensure_ascii=False))
            out["images"].append(summary.images)
            out["detections"].append(summary.detections)
            out["escalated"].append(summary.escalated or 0)  # 0 for a plan without stages
            out["stage_seconds"].append(json.dumps(summary.stage_seconds))
        return {key: np.array(values, dtype=object if key in ("first", "records", "failures", "stage_seconds")
                              else np.int64) for key, values in out.items()}

    def __del__(self) -> None:
        stack = getattr(self, "_stack", None)
        if stack is not None:
            stack.close()
