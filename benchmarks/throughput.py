"""Labeling throughput: the pipeline against the raw backend and a naive loop, measured
side by side in one run on the same images, and how the CPU stages scale with threads.

    .venv/bin/python -m benchmarks.throughput --detector D.onnx [--keypoints K.onnx] \
        --images DIR [--count 8] [--scales 400:1200:100] [--batch-size 8] [--out runs/bench]

- raw backend: only the models' `infer` calls, over every view pre-decoded, pre-resized
  and pre-batched exactly as the pipeline batches them, and over every person crop
  (original and mirrored) of the pipeline's own detections, pre-cut; the two models run
  in two threads with the threads and turns `distill label` gives them. The ceiling for
  these models on this machine.
- pipeline: `distill label` from files to written shards (after a warm-up run on two
  images: kernel cache loaded, sessions warm); its seconds per stage are summed over
  each stage's threads.
  Pipeline and raw run --repeats times, interleaved, and the best of each counts.
- naive: what one writes without this project: per image, one transform at a time
  through the same backend (batch of 1), boxes mapped back and merged by a Python loop
  per kept box (Detectron's box voting shape, benchmarks.ensemble_reference), then one
  crop at a time through the keypoint model and NumPy heatmap averaging.
- scaling: decode, views and ensemble images/s with 1, 2, ... worker threads (up to
  the cores), each stage alone on the same images.

Prints the tables, writes OUT/throughput.json and OUT/throughput.png (with matplotlib);
the last line is `pipeline/raw=R pipeline/naive=Q`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np

from benchmarks.common import best_of_interleaved, link_images, write_report
from benchmarks.ensemble_reference import detectron_loop_ensemble, opencv_average_argmax
from engine.coco.geometry import xywh_to_xyxy
from engine.backends.base import ActiveModel
from engine.crops import warp_crop
from engine.label.batches import chunk_images, make_batches
from engine.label.decode import decode_file
from engine.label.detect import Candidates, detect_views
from engine.label.keypoints import crop_boxes_for
from engine.label.labeler import LabelSettings
from engine.label.merge import Detections, MergeSettings, merge_candidates
from engine.label.request import Inputs, LabelRequest
from engine.label.run import inference_policy, label, open_teachers
from engine.label.views import Padding, TransformPlan, format_scales, make_views
from engine.options import LabelingOptions, ModelOptions, RuntimeOptions, positive_int
from engine.modelcard import ModelCard
from engine.scaling import round_up, scaled_size
from engine.select.predictions import iter_records


class ReplayedModel:
    """An `ActiveModel` (engine.backends.base) that hands back recorded detector outputs in
    order: turns the raw path's outputs into candidates with the pipeline's own code
    (detect_views) outside the timed region."""

    def __init__(self, card: ModelCard, outputs: list[dict[str, np.ndarray]]) -> None:
        self.card = card
        self.outputs = iter(outputs)

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return next(self.outputs)


# ---- the three paths ---------------------------------------------------------------------
@dataclass
class RawRun:
    """One raw run: its seconds, each image's candidates (from the replayed detector
    outputs, for the ensemble's scaling), the detector's view padding."""

    wall_seconds: float
    candidates: list[Candidates]
    padding: Padding


def raw_run(request: LabelRequest, settings: LabelSettings, images: list[np.ndarray],
            records: list[dict]) -> RawRun:
    """The models alone, as `distill label` opens them for `request` (open_teachers: the
    ONNX Runtime threads of engine.label.run.inference_policy, taking turns where it
    does), each in its own thread: the detector over every view pre-made and pre-batched
    as the pipeline batches them, the keypoint model over every person crop of the
    pipeline's `records` pre-cut and batched per pass as the pipeline batches them."""
    threads, turns = inference_policy(request)
    with open_teachers(request, threads, turns) as teachers:
        batch_size = request.runtime.batch_size
        labeler = teachers.labeler(settings, batch_size)
        detector, keypoints = labeler.detector, labeler.keypoints
        name = detector.card.input_name
        chunk = chunk_images(batch_size, settings.plan)
        views = [[labeler.views(image) for image in images[s:s + chunk]] for s in range(0, len(images), chunk)]
        batches = [batch.pixels for chunk_views in views for batch in make_batches(chunk_views, batch_size)]
        detector.infer({name: batches[0]})  # warm-up
        work = {"detector": lambda: [detector.infer({name: pixels}) for pixels in batches]}
        if keypoints is not None:
            card = keypoints.card
            crops = [c for image, record in zip(images, records) for c in _person_crops(image, record, card)]
            if crops:
                stack = np.stack(crops)
                passes = [stack, np.ascontiguousarray(stack[..., ::-1])] if settings.keypoint_flip else [stack]
                feeds = [p[s:s + batch_size] for p in passes for s in range(0, len(p), batch_size)]
                keypoints.infer({card.input_name: feeds[0]})  # warm-up
                work["keypoints"] = lambda: [keypoints.infer({card.input_name: f}) for f in feeds]
        with ThreadPoolExecutor(len(work)) as pool:
            start = time.perf_counter()
            futures = {key: pool.submit(job) for key, job in work.items()}
            outputs = {key: future.result() for key, future in futures.items()}
            seconds = time.perf_counter() - start
    replay = ReplayedModel(detector.card, outputs["detector"])
    candidates = [c for chunk_views in views
                  for c in detect_views(chunk_views, replay, batch_size, settings.merge.score_floor)]
    return RawRun(seconds, candidates, labeler.padding)


def _person_crops(image: np.ndarray, record: dict, card) -> list[np.ndarray]:
    """`(3, Hc, Wc)` uint8 crops of a record's people (the detections with keypoints)."""
    boxes = xywh_to_xyxy(np.array([d["bbox"] for d in record["detections"] if "keypoints" in d],
                                  np.float32).reshape(-1, 4))
    dets = Detections(boxes, np.ones(len(boxes), np.float32), np.zeros(len(boxes), np.int64))
    return [warp_crop(image, box, tuple(card.input_size)).transpose(2, 0, 1)
            for box in crop_boxes_for(dets, np.arange(len(boxes)), card)]


def naive_run(request: LabelRequest, settings: LabelSettings, files: list[Path]) -> tuple[float, int]:
    """(seconds, detections) of the naive loop over `files`, decode included, with the
    models `distill label` would open (each ONNX Runtime session on every core, no turns:
    the naive loop runs one model at a time)."""
    with open_teachers(request, threads=0, take_turns=False) as teachers:
        def one(path: Path) -> NaiveLabels:
            return _naive_image(path, settings, teachers.detector, teachers.keypoints, teachers.person)

        one(files[0])  # warm-up
        start = time.perf_counter()
        found = sum(len(one(path).scores) for path in files)
        return time.perf_counter() - start, found


@dataclass
class NaiveLabels:
    """One image's labels as the naive loop keeps them: kept boxes `(N, 4)` float64 xyxy
    in image pixels, scores `(N,)`, labels `(N,)`, and per person detection `(J, 2)`
    float64 keypoints in image pixels."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    keypoints: list[np.ndarray]


def _naive_image(path: Path, settings: LabelSettings, detector: ActiveModel, keypoints: ActiveModel | None,
                 person: int | None) -> NaiveLabels:
    plan, merge = settings.plan, settings.merge
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    height, width = image.shape[:2]
    stride = detector.card.max_stride
    boxes, scores, labels = [], [], []
    for scale, mirrored in plan.passes:
        h, w = scaled_size(height, width, scale, plan.max_size)
        view = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        if mirrored:
            view = view[:, ::-1]
        padded = np.zeros((1, 3, round_up(h, stride), round_up(w, stride)), np.uint8)
        padded[0, :, :h, :w] = view.transpose(2, 0, 1)
        out = detector.infer({detector.card.input_name: padded})
        keep = out["scores"][0] > merge.score_floor
        b = out["boxes"][0][keep].astype(np.float64)
        if mirrored:
            b[:, [0, 2]] = w - b[:, [2, 0]]
        b *= [width / w, height / h, width / w, height / h]
        boxes.append(b)
        scores.append(out["scores"][0][keep])
        labels.append(out["labels"][0][keep])
    kept_boxes, kept_scores, kept_labels = detectron_loop_ensemble(
        np.concatenate(boxes), np.concatenate(scores), np.concatenate(labels),
        merge.nms_threshold, merge.vote_threshold, merge.score_floor, merge.max_detections)
    people_points = []
    if keypoints is not None:
        card = keypoints.card
        flips = [False, True] if settings.keypoint_flip else [False]
        people = Detections(kept_boxes.astype(np.float32), kept_scores, kept_labels.astype(np.int64))
        for box in crop_boxes_for(people, np.flatnonzero(kept_labels == person), card):
            crop = warp_crop(image, box, tuple(card.input_size)).transpose(2, 0, 1)[None]
            maps = [keypoints.infer({card.input_name: np.ascontiguousarray(c)})["heatmaps"]
                    for c in (crop, crop[..., ::-1])[:len(flips)]]
            peaks = opencv_average_argmax(np.stack(maps), flips, [1.0] * len(flips), card.flip_pairs)
            hm_h, hm_w = maps[0].shape[2:]
            people_points.append(np.stack([box[0] + peaks[0, :, 0] * (box[2] - box[0]) / hm_w,
                                           box[1] + peaks[0, :, 1] * (box[3] - box[1]) / hm_h], axis=1))
    return NaiveLabels(kept_boxes, kept_scores, kept_labels, people_points)


# ---- stage scaling -----------------------------------------------------------------------
def images_per_second(work, items: list, threads: int, min_seconds: float = 0.5) -> float:
    """`work` over `items` by a pool of `threads`, repeated to at least `min_seconds`."""
    done, start = 0, time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        while True:
            list(pool.map(work, items))
            done += len(items)
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                return done / elapsed


def stage_scaling(files: list[Path], images: list[np.ndarray], candidates: list[Candidates],
                  plan: TransformPlan, padding: Padding, merge: MergeSettings) -> dict[str, dict[int, float]]:
    stages = {
        "decode": (decode_file, files),
        "views": (lambda image: make_views(image, plan, padding), images),
        "ensemble": (lambda c: merge_candidates(c, merge), candidates),
    }
    counts = range(1, (os.cpu_count() or 1) + 1)
    result: dict[str, dict[int, float]] = {}
    for name, (work, items) in stages.items():
        work(items[0])  # warm-up (the kernels' cache, OpenCV's pools)
        result[name] = {t: images_per_second(work, items, t) for t in counts}
    return result


# ---- report --------------------------------------------------------------------------------
def plot(path: Path, rates: dict[str, float], scaling: dict[str, dict[int, float]], title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    names = list(rates)
    bars = left.bar(names, [rates[n] for n in names], color=["0.6", "tab:blue", "tab:orange"])
    left.bar_label(bars, fmt="%.2f")
    left.set_ylabel("images/s")
    left.set_title("one run, same images")
    for stage, values in scaling.items():
        threads = sorted(values)
        right.plot(threads, [values[t] for t in threads], marker="o", label=stage)
    right.set_yscale("log")
    right.set_xticks(sorted(next(iter(scaling.values()))))
    right.set_xlabel("worker threads")
    right.set_ylabel("images/s (stage alone)")
    right.set_title("CPU stages against threads")
    right.legend()
    fig.suptitle("\n".join(textwrap.wrap(title, 120)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # The labeling flags are distill label's own option groups: same syntax, same defaults.
    labeling_options, runtime_options = LabelingOptions(), RuntimeOptions(fp16=False)
    ModelOptions().add(parser)
    parser.add_argument("--images", type=Path, required=True, help="folder; its first --count images are used")
    parser.add_argument("--count", type=positive_int, default=8, help="images (default 8)")
    labeling_options.add(parser)
    runtime_options.add(parser)
    parser.add_argument("--repeats", type=positive_int, default=2,
                        help="pipeline and raw runs, interleaved; the best of each counts (default 2)")
    parser.add_argument("--skip-naive", action="store_true", help="leave out the naive loop (it is the slowest)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args(argv)
    # What `distill label` labels with; every path uses it.
    settings = labeling_options.parse(args)
    runtime = replace(runtime_options.parse(args), progress=False)
    plan = settings.plan

    scratch = Path(tempfile.mkdtemp(prefix="throughput-"))
    try:
        link_images(args.images, 2, scratch / "warm")
        sources = link_images(args.images, args.count, scratch / "images")
        if not sources:
            parser.error(f"no images in {args.images}")
        request = LabelRequest(detector=args.detector, keypoints=args.keypoints,
                               inputs=Inputs(images=scratch / "images"), out=scratch / "run", labeling=settings,
                               runtime=runtime)
        # kernel cache, sessions warm
        label(replace(request, inputs=Inputs(images=scratch / "warm"), out=scratch / "warm-run"))
        files = [source.path for source in sources]
        images = [decode_file(path) for path in files]

        def records(out: Path) -> list[dict]:
            by_name = {record["file_name"]: record for record in iter_records(out)}
            return [by_name[source.name] for source in sources]

        best = best_of_interleaved({
            "pipeline": lambda repeat: label(replace(request, out=scratch / f"run{repeat}")),
            "raw": lambda repeat: raw_run(request, settings, images, records(scratch / f"run{repeat}")),
        }, args.repeats, seconds=lambda run: run.wall_seconds)
        summary, raw = best["pipeline"], best["raw"]
        naive = None if args.skip_naive else naive_run(request, settings, files)
        scaling = stage_scaling(files, images, raw.candidates, settings.plan, raw.padding, settings.merge)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    count = len(files)
    rates = {"raw": count / raw.wall_seconds, "pipeline": summary.images / summary.wall_seconds}
    if naive is not None:
        rates["naive"] = count / naive[0]
    passes = len(plan.passes)
    mirrored = " x mirror" if plan.mirrored_pairs else ""
    title = (f"{count} images from {args.images}, {passes} passes ({format_scales(plan.scales)}{mirrored}), "
             f"batch {runtime.batch_size}, {runtime.workers} workers, detector {args.detector.name}"
             + (f", keypoints {args.keypoints.name}" if args.keypoints else ""))
    print(title)
    print(f"{'path':<10} {'images/s':>9} {'seconds':>8}")
    for name, rate in rates.items():
        print(f"{name:<10} {rate:>9.3f} {count / rate:>8.1f}")
    print("pipeline seconds per stage (summed over each stage's threads): "
          + ", ".join(f"{k} {v:.2f}" for k, v in summary.stage_seconds.items()))
    print("stage alone, images/s by worker threads:")
    counts = sorted(next(iter(scaling.values())))
    print(f"{'stage':<10} " + " ".join(f"{f'{t} thr':>9}" for t in counts) + f" {'speed-up':>9}")
    for stage, values in scaling.items():
        print(f"{stage:<10} " + " ".join(f"{values[t]:>9.1f}" for t in counts)
              + f" {values[counts[-1]] / values[1]:>8.2f}x")
    result = {"title": title, "images": count, "passes": passes, "images_per_second": rates,
              "pipeline_stage_seconds": summary.stage_seconds, "pipeline_detections": summary.detections,
              "naive_detections": naive[1] if naive else None, "scaling_images_per_second": scaling,
              "pipeline_over_raw": rates["pipeline"] / rates["raw"],
              "pipeline_over_naive": rates["pipeline"] / rates["naive"] if naive else None}
    written = write_report(args.out, "throughput.json", result)
    plotted = plot(args.out / "throughput.png", rates, scaling, title)
    print(f"wrote {written}" + (f" and {args.out / 'throughput.png'}" if plotted else
                                                     " (no chart: matplotlib is not installed, extra 'plots')"))
    naive_ratio = f"{result['pipeline_over_naive']:.2f}" if naive else "n/a"
    print(f"pipeline/raw={result['pipeline_over_raw']:.2f} pipeline/naive={naive_ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
