"""Benchmark of the Numba ensembling kernels against NumPy/OpenCV references, one core.

    NUMBA_NUM_THREADS=1 taskset -c 0 .venv/bin/python -m benchmarks.ensemble

The script pins itself to one CPU (os.sched_setaffinity, where the OS has it) and sets
the thread counts of Numba, OpenCV and BLAS to 1 before importing them, so `taskset` is
optional. It prints per-image times of:
- `ensemble_detections` on a Detectron-like load: 18 transforms x 1000 candidates over
  80 classes, objects seen by every transform with jittered boxes and scores, against a
  vectorised NumPy merge and a Detectron-style merge (Python loop per kept box);
- `ensemble_pose_detections` on a one-stage pose load (10 passes x 300 person candidates
  with 17 keypoints each) against the vectorised NumPy merge with keypoint voting, and
  what voting the keypoints adds to `ensemble_detections` on the same load;
- `average_heatmaps` + `heatmap_argmax` (6 transforms, 20 RoIs, 17 joints, 64x48)
  against NumPy flips + `cv2.warpAffine` + NumPy argmax;
then the first-call compile time (empty NUMBA_CACHE_DIR, in a subprocess) and the
import-plus-first-call time with a warm cache (a second subprocess).
"""

from __future__ import annotations

import os

for _name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.ensemble_reference import (  # noqa: E402
    detectron_loop_ensemble,
    numpy_ensemble,
    numpy_pose_ensemble,
    opencv_average_argmax,
)
from engine.coco.schema import FLIP_PAIRS  # noqa: E402
from engine.ensemble import (  # noqa: E402
    average_heatmaps,
    ensemble_detections,
    ensemble_pose_detections,
    heatmap_argmax,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
NUM_TRANSFORMS, CANDIDATES, NUM_CLASSES = 18, 1000, 80
POSE_PASSES, POSE_CANDIDATES, JOINTS = 10, 300, 17


def detectron_like_image(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's union of 18 x 1000 top-K candidates, in original-image pixels.

    About 7 objects (COCO's mean); every transform sees each object as ~25 candidates of
    its class (boxes jittered by ~4% of the size, scores jittered around the object's
    confidence) plus ~15 lower-scored candidates of 1-3 confusable classes; the rest of
    the 1000 slots are clutter with low scores over random classes (most below the
    0.05 floor), like a softmax head's top-K.
    """
    n_objects = int(rng.integers(4, 11))
    width, height = 640.0, 480.0
    sizes = rng.uniform(20, 300, size=(n_objects, 2))
    corners = rng.uniform(0, 1, size=(n_objects, 2)) * (np.array([width, height]) - sizes)
    objects = np.concatenate([corners, corners + sizes], axis=1)
    classes = rng.integers(0, NUM_CLASSES, size=n_objects)
    confidence = rng.uniform(0.4, 0.98, size=n_objects)
    all_boxes, all_scores, all_labels = [], [], []
    for _ in range(NUM_TRANSFORMS):
        boxes, scores, labels = [], [], []
        for box, label, conf, size in zip(objects, classes, confidence, sizes):
            count = int(rng.integers(15, 35))
            jitter = rng.normal(0, 0.04, size=(count, 4)) * np.tile(size, 2)
            boxes.append(box + jitter)
            jittered = conf + rng.normal(0, 0.08, count) - rng.exponential(0.15, count)
            scores.append(np.clip(jittered, 0, 1))
            labels.append(np.full(count, label))
            confused = int(rng.integers(5, 25))
            boxes.append(box + rng.normal(0, 0.08, size=(confused, 4)) * np.tile(size, 2))
            scores.append(rng.uniform(0.0, 0.35, confused))
            labels.append(rng.choice(rng.integers(0, NUM_CLASSES, 3), size=confused))
        clutter = CANDIDATES - sum(len(s) for s in scores)
        xy = rng.uniform(0, 1, size=(clutter, 2)) * np.array([width, height])
        wh = rng.uniform(8, 200, size=(clutter, 2))
        boxes.append(np.concatenate([xy, xy + wh], axis=1))
        scores.append(rng.beta(0.6, 18.0, clutter))
        labels.append(rng.integers(0, NUM_CLASSES, clutter))
        all_boxes.append(np.concatenate(boxes))
        all_scores.append(np.concatenate(scores))
        all_labels.append(np.concatenate(labels))
    return (np.concatenate(all_boxes).astype(np.float32),
            np.concatenate(all_scores).astype(np.float32),
            np.concatenate(all_labels).astype(np.int32))


def pose_image(rng: np.random.Generator):
    """One image's union of 10 passes (5 scales x mirror) x 300 candidates of a one-stage
    pose detector (one class, person), with `(N, 17, 3)` float32 keypoints mapped back.

    About 6 people, each seen by ~10-30 candidates per pass (boxes jittered by ~4% of
    the size, joints by ~2%, confidences around the person's, some joints unseen), the
    rest of the 300 slots low-scored clutter, as an Ultralytics pose head's top 300.
    """
    n_people = int(rng.integers(3, 10))
    sizes = rng.uniform(30, 300, size=(n_people, 2))
    corners = rng.uniform(0, 1, size=(n_people, 2)) * (np.array([640.0, 480.0]) - sizes)
    people = np.concatenate([corners, corners + sizes], axis=1)
    joints = corners[:, None] + rng.uniform(0, 1, size=(n_people, JOINTS, 2)) * sizes[:, None]
    confidence = rng.uniform(0.4, 0.98, size=n_people)
    all_boxes, all_scores, all_keypoints = [], [], []
    for _ in range(POSE_PASSES):
        boxes, scores, keypoints = [], [], []
        for person, person_joints, conf, size in zip(people, joints, confidence, sizes):
            count = int(rng.integers(10, 30))
            boxes.append(person + rng.normal(0, 0.04, size=(count, 4)) * np.tile(size, 2))
            scores.append(np.clip(conf + rng.normal(0, 0.08, count), 0, 1))
            xy = person_joints + rng.normal(0, 0.02, size=(count, JOINTS, 2)) * size
            seen = np.clip(rng.normal(0.7, 0.3, size=(count, JOINTS, 1)), 0, 1)
            keypoints.append(np.concatenate([xy, seen], axis=2))
        clutter = POSE_CANDIDATES - sum(len(s) for s in scores)
        xy = rng.uniform(0, 1, size=(clutter, 2)) * np.array([640.0, 480.0])
        boxes.append(np.concatenate([xy, xy + rng.uniform(8, 200, size=(clutter, 2))], axis=1))
        scores.append(rng.beta(0.6, 18.0, clutter))
        keypoints.append(np.concatenate([xy[:, None] + rng.uniform(0, 100, (clutter, JOINTS, 2)),
                                         rng.uniform(0, 0.3, (clutter, JOINTS, 1))], axis=2))
        all_boxes.append(np.concatenate(boxes))
        all_scores.append(np.concatenate(scores))
        all_keypoints.append(np.concatenate(keypoints))
    boxes = np.concatenate(all_boxes).astype(np.float32)
    return (boxes, np.concatenate(all_scores).astype(np.float32),
            np.zeros(len(boxes), np.int32), np.concatenate(all_keypoints).astype(np.float32))


def heatmap_load(rng: np.random.Generator):
    """6 transforms (3 crop scales x flip) of 20 RoIs, 17 joints, 64x48 float32 maps."""
    t_count, r_count, j_count, h, w = 6, 20, 17, 64, 48
    xs, ys = np.arange(w) + 0.5, np.arange(h) + 0.5
    centres = rng.uniform([4, 4], [w - 4, h - 4], size=(t_count, r_count, j_count, 2))
    maps = np.exp(-((xs - centres[..., 0, None, None]) ** 2
                    + (ys[:, None] - centres[..., 1, None, None]) ** 2) / (2 * 2.0**2))
    maps += rng.uniform(0, 0.05, size=maps.shape)
    flips = np.array([False, True] * 3)
    scales = np.array([1.0, 1.0, 1.1, 1.1, 0.9, 0.9])
    return maps.astype(np.float32), flips, scales


def interleaved_ms(functions: dict, inputs: list, repeats: int) -> dict:
    """Best-of-`repeats` milliseconds per input for each function, measured in turns.

    Time is the thread's CPU time (`time.thread_time`): on a shared machine, wall-clock
    time also counts the periods other processes held the core. Taking turns inside
    each repeat exposes every function to the same background load.
    """
    best = {name: float("inf") for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.thread_time()
            for args in inputs:
                function(*args)
            best[name] = min(best[name], (time.thread_time() - start) / len(inputs))
    return {name: value * 1e3 for name, value in best.items()}


def check_agreement(images) -> None:
    """Our merge and the NumPy reference agree on the benchmark load (else abort)."""
    for boxes, scores, labels in images[:3]:
        ours = ensemble_detections(boxes, scores, labels)
        ref = numpy_ensemble(boxes, scores, labels)
        np.testing.assert_array_equal(ours[2], ref[2])
        np.testing.assert_allclose(ours[0], ref[0], atol=1e-3)
        np.testing.assert_allclose(ours[1], ref[1], atol=1e-6)


def check_pose_agreement(images) -> None:
    """Our keypoint voting and the NumPy reference agree on the pose load (else abort)."""
    for image in images[:3]:
        ours = ensemble_pose_detections(*image)
        ref = numpy_pose_ensemble(*image)
        np.testing.assert_array_equal(ours[2], ref[2])
        np.testing.assert_allclose(ours[0], ref[0], atol=1e-3)
        np.testing.assert_allclose(ours[3], ref[3], atol=1e-3)


_COMPILE_SNIPPET = """
import time
start = time.perf_counter()
import numpy as np
from engine.ensemble import (average_heatmaps, box_voting, ensemble_detections, flip_heatmaps,
                             heatmap_argmax, keypoints_to_image, nms, soft_nms)
b = np.array([[0, 0, 10, 10], [1, 1, 11, 11]], np.float32); s = np.array([0.9, 0.8], np.float32)
nms(b, s, 0.5); soft_nms(b, s); box_voting(b, s, b, s)
ensemble_detections(b, s, np.zeros(2, np.int32))
from engine.ensemble import ensemble_pose_detections
ensemble_pose_detections(b, s, np.zeros(2, np.int32), np.ones((2, 17, 3), np.float32))
m = np.ones((2, 1, 17, 8, 6), np.float32)
a = average_heatmaps(m, [False, True], [1.0, 1.2], [(1, 2)]); flip_heatmaps(a, [(1, 2)])
keypoints_to_image(heatmap_argmax(a, "dark"), np.ones((1, 4)), (8, 6))
print(time.perf_counter() - start)
"""


def compile_times() -> tuple[float, float]:
    """(cold compile + first calls, warm-cache import + first calls) in seconds."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(REPO_ROOT))
        runs = [
            float(subprocess.run([sys.executable, "-c", _COMPILE_SNIPPET], env=env, check=True,
                                 capture_output=True, text=True, cwd=REPO_ROOT).stdout)
            for _ in range(2)
        ]
    return runs[0], runs[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10, help="box-load images to average over")
    parser.add_argument("--repeats", type=int, default=5, help="best-of repeats per timing")
    parser.add_argument("--skip-compile", action="store_true", help="skip the subprocess timings")
    args = parser.parse_args(argv)
    cores = "not pinned (use taskset)"
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        cores = f"affinity {sorted(os.sched_getaffinity(0))}"
    cv2.setNumThreads(1)

    rng = np.random.default_rng(0)
    images = [detectron_like_image(rng) for _ in range(args.images)]
    above = np.mean([(s > 0.05).sum() for _, s, _ in images])
    check_agreement(images)
    poses = [pose_image(rng) for _ in range(args.images)]
    check_pose_agreement(poses)
    heatmaps = [heatmap_load(rng) for _ in range(3)]
    maps, flips, scales = heatmaps[0]
    ours = heatmap_argmax(average_heatmaps(maps, flips, scales, FLIP_PAIRS), "quarter")
    ref = opencv_average_argmax(maps, flips, scales, FLIP_PAIRS)
    agree = np.mean(np.all(np.abs(ours[..., :2] - ref[..., :2]) < 1e-6, axis=-1))

    def ours_boxes(b, s, l):
        return ensemble_detections(b, s, l)

    def ours_heatmaps(m, f, s):
        return heatmap_argmax(average_heatmaps(m, f, s, FLIP_PAIRS), "quarter")

    ours_boxes(*images[0])  # compile (or load from cache) outside the timings
    ours_heatmaps(*heatmaps[0])
    ensemble_pose_detections(*poses[0])
    boxes_ms = interleaved_ms({"ours": ours_boxes, "numpy": numpy_ensemble,
                               "detectron": detectron_loop_ensemble}, images, args.repeats)
    pose_ms = interleaved_ms({"ours": ensemble_pose_detections, "numpy": numpy_pose_ensemble,
                              "ours, boxes alone": lambda b, s, l, k: ensemble_detections(b, s, l)},
                             poses, args.repeats)
    maps_ms = interleaved_ms({"ours": ours_heatmaps,
                              "opencv": lambda m, f, s: opencv_average_argmax(m, f, s, FLIP_PAIRS)},
                             heatmaps, args.repeats)
    rows = [
        ("boxes 18x1000, 80 cls vs NumPy vectorised", boxes_ms["numpy"], boxes_ms["ours"]),
        ("boxes 18x1000, 80 cls vs Detectron-style loop", boxes_ms["detectron"], boxes_ms["ours"]),
        ("pose 10x300, 17 joints vs NumPy vectorised", pose_ms["numpy"], pose_ms["ours"]),
        ("heatmaps 6x20x17x64x48 vs NumPy+OpenCV", maps_ms["opencv"], maps_ms["ours"]),
    ]

    print(f"one core ({cores}), thread CPU time, "
          f"NUMBA_NUM_THREADS={os.environ['NUMBA_NUM_THREADS']}; box load: {len(images)} images, "
          f"{above:.0f} of 18000 candidates above the 0.05 floor on average")
    print(f"heatmap peaks identical to the reference (quarter refinement): {agree:.1%}")
    print(f"{'case':<48} {'reference ms/img':>17} {'ours ms/img':>12} {'speed-up':>9}")
    for name, ref_ms, ours_ms in rows:
        print(f"{name:<48} {ref_ms:>17.2f} {ours_ms:>12.3f} {ref_ms / ours_ms:>8.1f}x")
    print(f"keypoint voting on the pose load: {pose_ms['ours'] - pose_ms['ours, boxes alone']:.3f} "
          f"ms/img over ensemble_detections alone ({pose_ms['ours, boxes alone']:.3f} ms/img)")
    if not args.skip_compile:
        cold, warm = compile_times()
        print(f"first call, empty Numba cache (compile): {cold:.2f} s")
        print(f"import + first call, warm Numba cache:   {warm:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
