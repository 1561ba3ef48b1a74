"""Build time of `distill gallery` on a 1,000-image label set, and the index's page weight.

    .venv/bin/python -m benchmarks.gallery_build [--work runs/gallery-bench] [--count 1000] [--workers 1 2]
    .venv/bin/python -m benchmarks.gallery_build --labels L.json --images DIR [--predictions OUT] [--gt GT.json]

Without --labels, a label set is made in WORK (the images once, reused by later runs):
`generate_dataset` writes COUNT synthetic images (seed 11); run/ is a labeling run of
them made from their ground truth (every non-crowd instance, shifted by 5% of its width,
with a score in [0.5, 1); every fifth dropped, so that the ground truth has misses;
people's keypoints scored 0.9 where the ground truth labels them, else 0.1; plus one
prediction at 0.45 per image, an almost-label); labels.json is what `distill select` makes
of it under the fixed rule score >= 0.5, keypoint >= 0.3, and the ground truth goes in as
--gt. So every page kind is built.

For each worker count, `distill gallery` runs as a subprocess (its imports included) into
WORK/gallery-wN with the default sample (200 per category) and pages; the table gives the
wall time, what was built and the index page weight: index.html plus the files it loads
(style.css and the plot PNGs; it shows no thumbnail).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from engine.label.decode import DEFAULT_MAX_PIXELS
from engine.label.labeler import LabelSettings
from engine.label.manifest import ModelEntry, RunInput, RunManifest, RunSettings, RunSummary
from engine.label.shards import RunFolder, record_line
from engine.review.build import page_weight
from engine.select.coco import select_labels
from engine.synth.dataset import generate_dataset


def make_label_set(work: Path, count: int) -> dict[str, Path]:
    """WORK/data (images, annotations.json), WORK/run and WORK/labels.json; the images made once."""
    gt_path = work / "data" / "annotations.json"
    if not gt_path.exists():
        generate_dataset(work / "data", count, seed=11)
    gt = json.loads(gt_path.read_text())
    detections: dict[int, list[dict]] = {image["id"]: [] for image in gt["images"]}
    for k, a in enumerate(a for a in gt["annotations"] if not a["iscrowd"]):
        if k % 5 == 4:
            continue
        x, y, w, h = a["bbox"]
        detection = {"bbox": [x + 0.05 * w, y, w, h], "category_id": a["category_id"],
                     "score": round(0.5 + 0.5 * ((k * 7919) % 1000) / 1000, 5)}
        if "keypoints" in a:  # keypoint scores 0.9 where the ground truth labels a joint, else 0.1
            values = a["keypoints"]
            detection["keypoints"] = [v for i in range(0, len(values), 3)
                                      for v in (values[i], values[i + 1], 0.9 if values[i + 2] else 0.1)]
        detections[a["image_id"]].append(detection)
    records = []
    for image in gt["images"]:
        near = {"bbox": [image["width"] * 0.3, image["height"] * 0.3, 30, 30], "score": 0.45, "category_id": 37}
        records.append({"file_name": image["file_name"], "width": image["width"], "height": image["height"],
                        "detections": detections[image["id"]] + [near]})
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    # No model made these records: the detector entry says what did (the gallery reads
    # only the shards and the categories).
    made_by = ModelEntry(task="detect", card_sha256="", checkpoint_sha256="",
                         model_name="shifted ground truth (benchmarks.gallery_build)")
    settings = RunSettings(RunInput(images=(work / "data" / "images").resolve()), made_by, None, LabelSettings(),
                           DEFAULT_MAX_PIXELS)
    folder = RunFolder(run, RunManifest(settings, shard_size=500, categories=gt["categories"]), resume=False)
    for index, start in enumerate(range(0, len(records), folder.shard_size)):
        chunk = records[start:start + folder.shard_size]
        folder.write_shard(index, "".join(record_line(r) for r in chunk), chunk[0]["file_name"], len(chunk), [])
    folder.mark_complete(RunSummary(images=len(records), detections=sum(len(r["detections"]) for r in records)))
    # What `distill select --threshold 0.5 --keypoint-threshold 0.3` makes of the run.
    info = {"description": "benchmark labels from synthetic ground truth",
            "thresholds": {"rule": "fixed", "score": 0.5, "keypoint": 0.3}}
    labels = select_labels(records, gt["categories"], {c["id"]: 0.5 for c in gt["categories"]}, 0.3, info)
    labels_path = work / "labels.json"
    labels_path.write_text(json.dumps(labels))
    return {"labels": labels_path, "images": work / "data" / "images", "predictions": run, "gt": gt_path}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/gallery-bench"))
    parser.add_argument("--count", type=int, default=1000, help="synthetic images (without --labels)")
    parser.add_argument("--labels", type=Path, default=None)
    parser.add_argument("--images", type=Path, default=None)
    parser.add_argument("--predictions", type=Path, default=None)
    parser.add_argument("--gt", type=Path, default=None)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.labels is None:
        inputs = make_label_set(args.work, args.count)
    else:
        inputs = {"labels": args.labels, "images": args.images, "predictions": args.predictions, "gt": args.gt}
    labels = json.loads(inputs["labels"].read_text())
    print(f"label set: {len(labels['images'])} images, {len(labels['annotations'])} labels ({inputs['labels']})")
    print(f"{'workers':>7}  {'seconds':>8}  {'pages':>5}  {'thumbnails':>10}  {'index bytes':>11}")
    for workers in args.workers:
        out = args.work / f"gallery-w{workers}"
        command = [sys.executable, "-m", "engine.cli", "gallery", "--out", str(out), "--workers", str(workers)]
        command += [part for key in ("labels", "images", "predictions", "gt") if inputs[key] is not None
                    for part in (f"--{key}", str(inputs[key]))]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds = time.perf_counter() - start
        built = json.loads((out / "gallery.json").read_text())
        print(f"{workers:>7}  {seconds:>8.1f}  {len(built['pages']):>5}  {built['thumbnails']:>10}  "
              f"{page_weight(out):>11,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
