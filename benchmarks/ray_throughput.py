"""Scale-out throughput: `distill label --ray` with 1 and 2 actors against the single-box
pipeline, measured in one run on the same images and settings.

    .venv/bin/python -m benchmarks.ray_throughput --detector D.onnx [--keypoints K.onnx] \
        --images DIR [--count 200] [--scales 160:224:32] [--shard-size 10] [--cpus 2] \
        [--out runs/bench-ray]

One local Ray cluster is started first (`ray.init(num_cpus=--cpus)`) and reused, so its
start-up is reported apart and not counted. Each Ray figure is a whole job as a user runs
it: the driver checks the models and lists the input, the actors start, load the models
and label every shard, the driver writes the shards. Every path runs once untimed first
(model and kernel caches warm, worker processes started), then `--repeats` times,
interleaved; the best of each counts. Also checks that each Ray run wrote the single-box
run's shard files byte for byte. Prints a table, writes OUT/ray_throughput.json; the
last line is `ray1/box=A ray2/box=B`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

from benchmarks.common import best_of_interleaved, link_images, write_report
from engine.label.request import Inputs, LabelRequest, RayPool, Runtime
from engine.label.run import label
from engine.label.views import TransformPlan, format_scales
from engine.options import LabelingOptions, PlanOptions
from engine.scale.driver import label_on_ray


def _shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").iterdir())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detector", type=Path, required=True)
    parser.add_argument("--keypoints", type=Path)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--count", type=int, default=200,
                        help="images (default 200; the folder is cycled when it holds fewer)")
    # distill label's own plan and merge flags, with this benchmark's smaller defaults.
    labeling_options = LabelingOptions(PlanOptions(default=TransformPlan.grid((160, 192, 224), max_size=384),
                                                   plan_file=False))
    labeling_options.add(parser)
    parser.set_defaults(max_detections=10)
    parser.add_argument("--shard-size", type=int, default=10, help="images per shard: per Ray task (default 10)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray cluster")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-ray"))
    args = parser.parse_args()

    import ray

    work = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    try:
        count = len(link_images(args.images, args.count, work / "images", cycle=True))
        if not count:
            parser.error(f"no images in {args.images}")
        labeling = labeling_options.parse(args)
        request = LabelRequest(detector=args.detector, keypoints=args.keypoints, inputs=Inputs(images=work / "images"),
                               out=work / "out", labeling=labeling, runtime=Runtime(workers=1, progress=False),
                               shard_size=args.shard_size)
        start = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        cluster_start = time.perf_counter() - start
        paths = {"box": None, "ray1": 1, "ray2": 2}
        shards: dict[str, list[dict[str, bytes]]] = {name: [] for name in paths}  # every run's, in order

        def run(name: str, actors: int | None, attempt: int) -> float:
            out = work / f"{name}-{attempt}"
            start = time.perf_counter()
            if actors is None:
                label(replace(request, out=out, runtime=replace(request.runtime, workers=os.cpu_count() or 2)))
            else:
                label_on_ray(replace(request, out=out), RayPool(actors=actors, actor_cpus=1))
            seconds = time.perf_counter() - start
            shards[name].append(_shard_bytes(out))
            shutil.rmtree(out)
            return seconds

        best = best_of_interleaved({name: partial(run, name, actors) for name, actors in paths.items()},
                                   args.repeats, warm_up=True)
        ray.shutdown()
    finally:
        shutil.rmtree(work)
    reference = shards["box"][0]
    identical = {name: all(s == reference for s in runs) for name, runs in shards.items()}

    rates = {name: count / seconds for name, seconds in best.items()}
    scales = format_scales(labeling.plan.scales) + (" x mirror" if labeling.plan.mirrored_pairs else "")
    print(f"{count} images, scales {scales}, shard size {args.shard_size}, "
          f"local Ray cluster of {args.cpus} CPUs (started in {cluster_start:.1f} s, not counted), "
          f"best of {args.repeats}")
    print(f"{'path':<28}{'seconds':>9}{'images/s':>10}{'vs box':>8}  shards as the box's")
    labels = {"box": "single box (distill label)", "ray1": "ray, 1 actor of 1 CPU", "ray2": "ray, 2 actors of 1 CPU"}
    for name in paths:
        print(f"{labels[name]:<28}{best[name]:>9.2f}{rates[name]:>10.2f}{rates[name] / rates['box']:>8.2f}  "
              f"{'identical' if identical[name] else 'DIFFERENT'}")
    write_report(args.out, "ray_throughput.json", {
        "images": count, "scales": scales, "shard_size": args.shard_size, "cpus": args.cpus,
        "cluster_start_seconds": round(cluster_start, 2), "seconds": {k: round(v, 3) for k, v in best.items()},
        "images_per_second": {k: round(v, 3) for k, v in rates.items()}, "identical_shards": identical})
    print(f"ray1/box={rates['ray1'] / rates['box']:.2f} ray2/box={rates['ray2'] / rates['box']:.2f}")


if __name__ == "__main__":
    main()
