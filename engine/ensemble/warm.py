"""Compile every ensembling kernel once, so that Numba's on-disk cache holds them all.

    python -m engine.ensemble.warm [--require-cached]

The kernels are `@njit(cache=True)`: the first call of each signature in a process either
loads machine code from Numba's cache or compiles it (seconds per kernel) and writes it
there. The Docker images run this module at build time, so a container's first labeled
image does not pay for compilation. It calls the public functions of `engine.ensemble` on
tiny arrays, in float32 and float64 where they take both (heatmap and keypoint-voting
kernels compile one signature per dtype; box kernels always run on float64 copies), with
every scoring method, both soft-NMS methods, with and without voting (of boxes alone and
with keypoints), and every heatmap refinement, so each branch the labeling path can take
has run once.

Where the cache lives: `$NUMBA_CACHE_DIR` when set (the images set it), else the
`__pycache__` folder beside each source file when writable, else a per-user folder.
Numba keys each entry by the source file's content hash, the kernel's signature and the
CPU name and features of the machine that compiled it: an image built on another CPU
model compiles again on first use (and stores the result beside the old entries).
`--require-cached` exits 1 when anything had to be compiled: run after a warm-up, in a
new process, it proves that the cache is readable and valid there.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from dataclasses import dataclass

import numpy as np
from numba.core.dispatcher import Dispatcher

import engine.ensemble as ensemble
from engine.ensemble.keypoints import REFINEMENTS


@dataclass(frozen=True)
class WarmReport:
    """What one warm-up did: `compiled` + `loaded` kernel signatures (nested kernels that a
    caller's compilation pulled in count too; those loaded inside a cached caller do not)."""

    seconds: float
    compiled: int
    loaded: int
    cache_dirs: tuple[str, ...]

    def line(self) -> str:
        where = ", ".join(self.cache_dirs) or "no cache"
        return (f"warmed engine.ensemble in {self.seconds:.2f} s: {self.compiled} kernel signatures "
                f"compiled, {self.loaded} loaded from the Numba cache ({where})")


def _dispatchers() -> list[Dispatcher]:
    """Every Numba dispatcher defined in the engine.ensemble modules."""
    found: dict[int, Dispatcher] = {}
    for info in pkgutil.iter_modules(ensemble.__path__, "engine.ensemble."):
        if info.name == __name__:
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, Dispatcher):
                found[id(value)] = value
    return list(found.values())


def _counts(dispatchers: list[Dispatcher]) -> tuple[int, int]:
    """(cache misses, cache hits) summed over every dispatcher and signature."""
    misses = sum(sum(d.stats.cache_misses.values()) for d in dispatchers)
    hits = sum(sum(d.stats.cache_hits.values()) for d in dispatchers)
    return misses, hits


def _boxes(rng: np.random.Generator, count: int, dtype) -> np.ndarray:
    """`(count, 4)` xyxy boxes in a 64 px image, clustered so that NMS and voting have work."""
    xy = rng.uniform(0.0, 40.0, size=(count, 2))
    wh = rng.uniform(8.0, 24.0, size=(count, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(dtype)


def _warm_boxes(rng: np.random.Generator) -> None:
    for dtype in (np.float32, np.float64):
        boxes = _boxes(rng, 24, dtype)
        scores = rng.uniform(0.0, 1.0, size=24).astype(dtype)  # in [0, 1] for temp_avg
        labels = rng.integers(0, 3, size=24)
        for scoring in ensemble.SCORING_METHODS:
            ensemble.ensemble_detections(boxes, scores, labels, scoring=scoring)  # NMS-fused voting
            ensemble.ensemble_detections(boxes, scores, labels, vote_threshold=0.3, scoring=scoring)
            ensemble.box_voting(boxes[:4], scores[:4], boxes, scores, scoring=scoring)
        ensemble.ensemble_detections(boxes, scores, labels, vote_threshold=None, max_detections=None)
        ensemble.ensemble_detections(boxes, scores, labels * 100_003)  # sparse labels renumbered
        for method in ("linear", "gaussian"):
            ensemble.ensemble_detections(boxes, scores, labels, soft_nms=method)
            ensemble.soft_nms(boxes, scores, method=method)
        ensemble.nms(boxes, scores, 0.5)
        # Keypoint voting compiles one signature per keypoint dtype, whatever the boxes' dtype.
        keypoints = rng.uniform(0.0, 64.0, size=(24, 5, 3)).astype(dtype)
        for options in (dict(), dict(vote_threshold=0.3), dict(vote_threshold=None),
                        dict(soft_nms="linear")):
            ensemble.ensemble_pose_detections(boxes, scores, labels, keypoints, **options)


def _warm_keypoints(rng: np.random.Generator) -> None:
    flip_pairs = [(1, 2)]
    for dtype in (np.float32, np.float64):
        maps = rng.uniform(0.0, 1.0, size=(2, 3, 3, 8, 6)).astype(dtype)  # (T, R, J, h, w)
        ensemble.flip_heatmaps(maps[0], flip_pairs)
        ensemble.average_heatmaps(maps, [False, True], [1.0, 1.0], flip_pairs)  # the label path
        averaged = ensemble.average_heatmaps(maps, [False, True], [1.0, 1.25], flip_pairs)  # resampled
        rois = _boxes(rng, 3, np.float64)
        for refine in REFINEMENTS:
            decoded = ensemble.heatmap_argmax(averaged, refine=refine)
            ensemble.keypoints_to_image(decoded, rois, averaged.shape[2:])


def warm(seed: int = 0) -> WarmReport:
    """Run every public ensembling function on tiny inputs; see the module docstring."""
    dispatchers = _dispatchers()
    before = _counts(dispatchers)
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    _warm_boxes(rng)
    _warm_keypoints(rng)
    seconds = time.perf_counter() - started
    after = _counts(dispatchers)
    dirs = sorted({d.stats.cache_path for d in dispatchers if d.stats.cache_path})
    return WarmReport(seconds, after[0] - before[0], after[1] - before[1], tuple(dirs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.ensemble.warm", description=__doc__.split("\n")[0])
    parser.add_argument("--require-cached", action="store_true",
                        help="exit 1 when any kernel had to be compiled (the cache was cold or unreadable)")
    args = parser.parse_args(argv)
    report = warm()
    print(report.line())
    if args.require_cached and report.compiled:
        print(f"error: {report.compiled} kernel signatures were compiled, not loaded from the cache",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
