"""`distill label` against the raw backend on the same images, measured in one run.

    .venv/bin/python -m benchmarks.label_throughput --detector D.onnx [--keypoints K.onnx] \
        --images DIR [--scales 400:1200:100] [--batch-size 8] [--workers N]

- raw backend: the detector over every view, pre-decoded, pre-resized and pre-batched
  exactly as the pipeline batches them, then the keypoint model over every person crop
  (original and mirrored) of the pipeline's own detections, pre-cut: only `infer` calls
  are timed. This is the ceiling for these models on this machine.
- pipeline: `distill label` from files to written shards, after a warm-up run on two
  images (kernel cache loaded, sessions warmed up); seconds per stage are summed over
  the stage's threads.
Prints images/s of both and pipeline/raw. The fuller benchmark (naive loop, stage
scaling, chart) is issue 10's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.crops import warp_crop
from engine.label.batches import chunk_images, make_batches
from engine.label.decode import decode_file
from engine.label.discover import discover_folder
from engine.label.keypoints import crop_boxes_for
from engine.label.merge import Detections
from engine.label.models import make_backend
from engine.label.run import LabelRequest, label
from engine.label.views import TransformPlan, make_views, parse_scales


def raw_seconds(args, names: list[str], records: list[dict]) -> float:
    """Seconds of backend `infer` calls alone over the pipeline's batches and crops."""
    plan = TransformPlan(parse_scales(args.scales), not args.no_flip, args.max_size)
    images = [decode_file(args.images / name) for name in names]
    with make_backend(args.detector, "auto") as detector:
        chunk = chunk_images(args.batch_size, plan)
        batches = []
        for start in range(0, len(images), chunk):
            views = [make_views(image, plan, detector.card.max_stride) for image in images[start:start + chunk]]
            batches += [b.pixels for b in make_batches(views, args.batch_size)]
        detector.infer({"images": batches[0]})  # warm-up
        start = time.perf_counter()
        for pixels in batches:
            detector.infer({"images": pixels})
        seconds = time.perf_counter() - start
    if args.keypoints is None:
        return seconds
    with make_backend(args.keypoints, "auto") as keypoints:
        card = keypoints.card
        person = next(c["id"] for c in card.categories)
        crops = []
        for image, record in zip(images, records):
            boxes = np.array([[x, y, x + w, y + h] for d in record["detections"] if d["category_id"] == person
                              for x, y, w, h in [d["bbox"]]], np.float32).reshape(-1, 4)
            dets = Detections(boxes, np.ones(len(boxes), np.float32), np.zeros(len(boxes), np.int64))
            for box in crop_boxes_for(dets, np.arange(len(boxes)), card):
                crop = warp_crop(image, box, tuple(card.input_size)).transpose(2, 0, 1)
                crops += [crop, crop[..., ::-1]] if args.keypoint_flip else [crop]
        stack = np.ascontiguousarray(np.stack(crops)) if crops else None
        if stack is not None:
            keypoints.infer({"crops": stack[:args.batch_size]})
            start = time.perf_counter()
            for s in range(0, len(stack), args.batch_size):
                keypoints.infer({"crops": stack[s:s + args.batch_size]})
            seconds += time.perf_counter() - start
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", type=Path, required=True)
    parser.add_argument("--keypoints", type=Path)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--scales", default="400:1200:100")
    parser.add_argument("--max-size", type=int, default=2000)
    parser.add_argument("--no-flip", action="store_true")
    parser.add_argument("--keypoint-flip", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    names = [s.name for s in discover_folder(args.images) if s.problem is None]
    scratch = Path(tempfile.mkdtemp(prefix="label-bench-"))
    try:
        common = dict(detector=args.detector, keypoints=args.keypoints, scales=args.scales,
                      max_size=args.max_size, flip=not args.no_flip, keypoint_flip=args.keypoint_flip,
                      batch_size=args.batch_size, workers=args.workers, progress=False)
        warm = scratch / "warm"
        warm.mkdir()
        for name in names[:2]:
            shutil.copy(args.images / name, warm / Path(name).name)
        label(LabelRequest(images=warm, out=scratch / "warm-run", **common))
        summary = label(LabelRequest(images=args.images, out=scratch / "run", **common))
        records = [json.loads(line) for shard in sorted((scratch / "run" / "shards").glob("*.jsonl"))
                   for line in shard.read_text().splitlines()]
        order = {r["file_name"]: r for r in records}
        raw = raw_seconds(args, names, [order[n] for n in names])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    pipeline_rate = summary.images / summary.wall_seconds
    raw_rate = len(names) / raw
    print(f"{len(names)} images, scales {args.scales}, flip {not args.no_flip}, batch {args.batch_size}, "
          f"workers {args.workers}")
    print(f"{'path':<10} {'images/s':>9}")
    print(f"{'raw':<10} {raw_rate:>9.2f}")
    print(f"{'pipeline':<10} {pipeline_rate:>9.2f}")
    print("pipeline seconds per stage (summed over threads): "
          + ", ".join(f"{k} {v:.2f}" for k, v in summary.stage_seconds.items()))
    print(f"pipeline/raw={pipeline_rate / raw_rate:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
