"""Thread scaling of the per-image merge: does ensembling in worker threads use the cores?

    .venv/bin/python -m benchmarks.ensemble_threads [--images 40] [--repeats 3]

The load per image is the TTA merge of the labeling pipeline: `ensemble_detections` over
18 transforms x 1000 candidates (benchmarks.ensemble's Detectron-like image) plus
`average_heatmaps` + `heatmap_argmax` of 6 transforms x 20 RoIs. The same images are
merged by a ThreadPoolExecutor of 1, 2, ... threads (up to the CPU count), interleaved
and repeated; the table gives images/s and the speed-up over one thread. The kernels are
compiled `nogil=True`: without it the threads queue on the GIL (1.04x with two threads
before this change).
"""

from __future__ import annotations

import os

for _name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.ensemble import detectron_like_image, heatmap_load  # noqa: E402
from engine.coco.schema import FLIP_PAIRS  # noqa: E402
from engine.ensemble import average_heatmaps, ensemble_detections, heatmap_argmax  # noqa: E402


def merge_one(load) -> int:
    (boxes, scores, labels), (maps, flips, scales) = load
    kept = ensemble_detections(boxes, scores, labels)
    peaks = heatmap_argmax(average_heatmaps(maps, flips, scales, FLIP_PAIRS), refine="window")
    return kept[0].shape[0] + peaks.shape[0]


def images_per_second(loads: list, threads: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(merge_one, loads))
    return len(loads) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    loads = [(detectron_like_image(rng), heatmap_load(rng)) for _ in range(args.images)]
    merge_one(loads[0])  # compile / load the cache outside the timings
    counts = list(range(1, (os.cpu_count() or 1) + 1))
    best = dict.fromkeys(counts, 0.0)
    for _ in range(args.repeats):  # interleaved, best of repeats: the machine's noise hits all counts alike
        for threads in counts:
            best[threads] = max(best[threads], images_per_second(loads, threads))
    print(f"{'threads':>7}  {'images/s':>9}  {'speed-up':>8}")
    for threads in counts:
        print(f"{threads:>7}  {best[threads]:>9.1f}  {best[threads] / best[1]:>7.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
