"""Labels at dump scale: `distill select` and the student's data loading over synthetic
labeling runs of up to a million images, single file against shards.

    python -m benchmarks.labels_at_scale --root runs/labels-at-scale --sizes 100000 1000000 \
        --single-up-to 1000000 --today-up-to 300000

For each size N it writes a labeling run of N records straight as shards (no model runs:
`generate_run`), then measures, each command in a process of its own under
`/usr/bin/time -v` (peak RSS, wall time):
- `distill select --labeled` into one file (sizes <= --single-up-to) and with --shards;
- the student's data loading up to its first minibatch (`first-batch` below: what
  `distill train` builds before its first step) for the labeled set alone, for the
  sharded labels, and for today's loader, the single file (sizes <= --today-up-to: it
  holds every label as Python objects, several GB at a million images).
The records are realistic in count and shape: per image about 5 people (17 keypoints
each), 4 cars and 2 bicycles above the score floor, tiny boxes in 96x72 images. Their
file names are unique (d0000/000.jpg ...) but resolve, through 1000 folder links, to a pool
of 1000 images, so that a million names need 1000 files. Prints a table; writes
ROOT/report-SIZES.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import write_report

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
POOL = 1000  # image files behind the names; also names per folder link
SIZE = (72, 96)  # height, width of every image
CATEGORIES = [  # the raw predictions per image above the score floor: Poisson means
    ({"id": 1, "name": "person"}, 5.0),
    ({"id": 2, "name": "bicycle"}, 2.0),
    ({"id": 3, "name": "car"}, 4.0),
]
LABELED_IMAGES = 5000
LABELED_PER_IMAGE = {1: 2.0, 2: 0.7, 3: 1.5}  # non-crowd instances per labeled image


def person_category() -> dict:
    from engine.coco.schema import KEYPOINT_NAMES, SKELETON

    return {"id": 1, "name": "person", "keypoints": list(KEYPOINT_NAMES), "skeleton": [list(p) for p in SKELETON]}


def categories() -> list[dict]:
    return [person_category(), *(c for c, _ in CATEGORIES[1:])]


def name_of(index: int) -> str:
    return f"d{index // POOL:04d}/{index % POOL:03d}.jpg"


def write_images(root: Path, folders: int) -> Path:
    """ROOT/images: pool/000..999.jpg and the folder links d0000..d{folders-1} to pool."""
    images = root / "images"
    pool = images / "pool"
    if not pool.is_dir():
        pool.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for k in range(POOL):
            cv2.imwrite(str(pool / f"{k:03d}.jpg"), rng.integers(0, 255, (*SIZE, 3), np.uint8))
    for folder in range(folders):
        link = images / f"d{folder:04d}"
        if not link.exists():
            os.symlink("pool", link)
    return images


def detections(rng: np.random.Generator) -> list[dict]:
    """One image's raw predictions: tiny boxes, scores on the 1e-5 grid, people with 17
    keypoints (peaks up to 1.2, as raw heatmap peaks can be)."""
    height, width = SIZE
    out = []
    for category, mean in CATEGORIES:
        count = int(rng.poisson(mean))
        if not count:
            continue
        xy = rng.uniform(0, [width - 12, height - 12], (count, 2))
        wh = rng.uniform(4, 12, (count, 2))
        boxes = np.round(np.concatenate([xy, wh], 1), 2).tolist()
        scores = np.round(0.05 + 0.95 * rng.beta(1.2, 2.0, count), 5).tolist()
        points = None
        if category["id"] == 1:
            points = np.concatenate([np.round(rng.uniform(0, [width, height], (count, 17, 2)), 2),
                                     np.round(rng.uniform(0, 1.2, (count, 17, 1)), 5)], 2).reshape(count, -1).tolist()
        for i in range(count):
            detection = {"bbox": boxes[i], "score": scores[i], "category_id": category["id"]}
            if points is not None:
                detection["keypoints"] = points[i]
            out.append(detection)
    return out


def generate_run(out: Path, images: Path, size: int, shard_size: int = 1000, seed: int = 0) -> Path:
    """A finished labeling run of `size` synthetic records in `out`, written by the
    engine's run folder (manifest, shards) as `distill label` would leave it."""
    from engine.label.decode import DEFAULT_MAX_PIXELS
    from engine.label.labeler import LabelSettings
    from engine.label.manifest import ModelEntry, RunInput, RunManifest, RunSettings, RunSummary
    from engine.label.shards import RunFolder, record_line

    teacher = ModelEntry("detect", "0" * 64, "", "benchmarks/labels_at_scale.py: synthetic records")
    settings = RunSettings(RunInput(images=images), teacher, None, LabelSettings(), DEFAULT_MAX_PIXELS)
    folder = RunFolder(out, RunManifest(settings, shard_size, categories=categories()), resume=False)
    height, width = SIZE
    for shard, start in enumerate(range(0, size, shard_size)):
        rng = np.random.default_rng([seed, shard])
        names = [name_of(i) for i in range(start, min(size, start + shard_size))]
        lines = "".join(record_line({"file_name": name, "width": width, "height": height,
                                     "detections": detections(rng)}) for name in names)
        folder.write_shard(shard, lines, names[0], len(names), [])
    folder.mark_complete(RunSummary(images=size))
    return out


def write_labeled(path: Path) -> Path:
    """The labeled set: LABELED_IMAGES pool images with LABELED_PER_IMAGE instances each
    on average, people with 8..17 visible keypoints."""
    rng = np.random.default_rng(1)
    height, width = SIZE
    images, annotations = [], []
    for image_id in range(1, LABELED_IMAGES + 1):
        images.append({"id": image_id, "file_name": f"pool/{image_id % POOL:03d}.jpg", "width": width,
                       "height": height})
        for cid, mean in LABELED_PER_IMAGE.items():
            for _ in range(int(rng.poisson(mean))):
                x, y = rng.uniform(0, [width - 30, height - 30])
                w, h = rng.uniform(8, 30, 2)
                annotation = {"id": len(annotations) + 1, "image_id": image_id, "category_id": cid,
                              "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)], "area": round(w * h, 2),
                              "iscrowd": 0}
                if cid == 1:
                    visible = rng.permutation(17) < rng.integers(8, 18)
                    points = np.stack([rng.uniform(x, x + w, 17), rng.uniform(y, y + h, 17), 2.0 * visible], 1)
                    points[~visible, :2] = 0
                    annotation.update(keypoints=np.round(points, 2).ravel().tolist(), num_keypoints=int(visible.sum()))
                annotations.append(annotation)
    data = {"images": images, "annotations": annotations, "categories": categories()}
    path.write_text(json.dumps(data))
    return path


def timed(command: list[str], log: Path) -> dict:
    """Run `command` under /usr/bin/time -v: {"seconds" (wall), "cpu_seconds" (user + system:
    what a loaded machine distorts least), "peak_rss_mb", "ok", "stdout"}."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    log.write_text(f"$ {' '.join(command)}\n{done.stdout}\n{done.stderr}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    cpu = sum(float(v) for v in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", done.stderr))
    return {"seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "peak_rss_mb": round(int(peak.group(1)) / 1024, 1) if peak else None,
            "ok": done.returncode == 0, "stdout": done.stdout.strip().splitlines()[-1:] if done.stdout else []}


def first_batch(args: argparse.Namespace) -> int:
    """What `distill train` builds before its first step, up to the first minibatch; prints
    {"seconds": data setup to first minibatch, "generated": items} as JSON."""
    start = time.perf_counter()
    import torch

    from trainer.config import get_config
    from trainer.data.coco import load_annotations, load_generated
    from trainer.data.mixing import MixedBatchSampler
    from trainer.train import build_dataset, check_same_categories

    config = get_config(args.task, "tiny")
    imported = time.perf_counter()
    labeled_coco = load_annotations(args.labeled, args.images)
    dataset, table, collate = build_dataset(args.task, config, labeled_coco, str(args.images), 0)
    generated = None
    if args.pseudo is not None:
        pseudo = load_generated(args.pseudo, args.images)
        check_same_categories(labeled_coco, pseudo, str(args.pseudo))
        generated, _, _ = build_dataset(args.task, config, pseudo, str(args.images), 1, table)
        batching = {"batch_sampler": MixedBatchSampler(len(dataset), len(generated), args.batch_size, 0.6)}
        dataset = torch.utils.data.ConcatDataset([dataset, generated])
    else:
        batching = {"batch_size": args.batch_size, "shuffle": True}
    loader = torch.utils.data.DataLoader(dataset, **batching, num_workers=0, collate_fn=collate)
    next(iter(loader))
    end = time.perf_counter()
    print(json.dumps({"seconds": round(end - imported, 2), "with_imports": round(end - start, 2),
                      "generated": None if generated is None else len(generated)}))
    return 0


def measure(args: argparse.Namespace) -> int:
    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    images = write_images(root, (max(args.sizes) + POOL - 1) // POOL)
    labeled = root / "labeled.json"
    if not labeled.is_file():
        write_labeled(labeled)
    report: dict = {"sizes": args.sizes, "select": {}, "loading": {}}
    distill = str(BIN / "distill")
    for size in args.sizes:
        folder = root / f"n{size}"
        run = folder / "run"
        if not (run / "manifest.json").is_file() or not json.loads((run / "manifest.json").read_text())["complete"]:
            start = time.perf_counter()
            generate_run(run, images, size, args.shard_size)
            print(f"generated {size} records in {time.perf_counter() - start:.0f} s", flush=True)
        kinds = [("sharded", folder / "labels", ["--shards"])] if "select" in args.steps else []
        if size <= args.single_up_to and "select" in args.steps:
            kinds.insert(0, ("single", folder / "labels.json", []))
        for kind, out, extra in kinds:
            result = timed([distill, "select", "--predictions", str(run), "--labeled", str(labeled), "--out", str(out),
                            *extra], folder / f"select-{kind}.log")
            report["select"][f"{kind} {size}"] = result
            print(f"select {kind} {size}: {result}", flush=True)
    for task in args.tasks if "loading" in args.steps else []:
        cases = [("labeled only", None)]
        for size in args.sizes:
            cases.append((f"sharded {size}", root / f"n{size}" / "labels"))
            if size <= min(args.today_up_to, args.single_up_to):
                cases.append((f"today (single file) {size}", root / f"n{size}" / "labels.json"))
        for name, pseudo in cases:
            command = [sys.executable, "-m", "benchmarks.labels_at_scale", "first-batch", "--task", task,
                       "--labeled", str(labeled), "--images", str(images)]
            result = timed(command + ([] if pseudo is None else ["--pseudo", str(pseudo)]),
                           root / f"loading-{task}-{name.replace(' ', '-')}.log")
            if result["ok"]:
                result.update(json.loads(result.pop("stdout")[0]))
            report["loading"][f"{task}: {name}"] = result
            print(f"loading {task} {name}: {result}", flush=True)
    write_report(root, f"report-{'-'.join(map(str, args.sizes))}.json", report)
    print_tables(report)
    return 0


def print_tables(report: dict) -> None:
    print(f"\n{'distill select --labeled':<32} {'wall s':>8} {'CPU s':>8} {'peak RSS MB':>12}")
    for name, r in report["select"].items():
        print(f"{name:<32} {r['seconds']:>8.1f} {r['cpu_seconds']:>8.1f} {r['peak_rss_mb']:>12.1f}"
              f"{'' if r['ok'] else '  FAILED'}")
    print(f"\n{'student data loading':<40} {'to 1st batch s':>14} {'peak RSS MB':>12} {'generated items':>16}")
    for name, r in report["loading"].items():
        print(f"{name:<40} {r.get('seconds', float('nan')):>14.2f} {r['peak_rss_mb']:>12.1f} "
              f"{str(r.get('generated')):>16}{'' if r['ok'] else '  FAILED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    batch = sub.add_parser("first-batch", help="(measured in a process of its own) data loading to the first minibatch")
    batch.add_argument("--task", default="keypoints")
    batch.add_argument("--labeled", type=Path, required=True)
    batch.add_argument("--images", type=Path, required=True)
    batch.add_argument("--pseudo", type=Path)
    batch.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--root", type=Path, default=REPO / "runs" / "labels-at-scale")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--shard-size", type=int, default=1000, help="records per labeling shard")
    parser.add_argument("--single-up-to", type=int, default=1_000_000,
                        help="largest size whose single-file select is measured")
    parser.add_argument("--today-up-to", type=int, default=300_000,
                        help="largest size whose single file today's loader reads (it needs several GB a 100k)")
    parser.add_argument("--tasks", nargs="+", default=["keypoints", "detect"])
    parser.add_argument("--steps", nargs="+", default=["select", "loading"], choices=["select", "loading"],
                        help="what to measure (loading reads the labels an earlier select step wrote)")
    args = parser.parse_args(argv)
    return first_batch(args) if args.command == "first-batch" else measure(args)


if __name__ == "__main__":
    sys.exit(main())
