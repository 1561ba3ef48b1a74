"""Build time of `distill gallery` on a 1,000-image label set, and the index's page weight.

    .venv/bin/python -m benchmarks.gallery_build [--work runs/gallery-bench] [--count 1000] [--workers 1 2]
    .venv/bin/python -m benchmarks.gallery_build --labels L.json --images DIR [--predictions OUT] [--gt GT.json]

Without --labels, a label set is made once in WORK (and reused by later runs):
`generate_dataset` writes COUNT synthetic images (seed 11), and labels.json is its ground
truth turned into labels (every non-crowd instance, shifted by 5% of its width, with a
score in [0.5, 1); every fifth dropped, so that the ground truth has misses; people keep
their visible keypoints), under the fixed rule score >= 0.5, keypoint >= 0.3; run/ is a
labeling run of the same images (the labels plus one prediction at 0.45 per image, an
almost-label), and the ground truth goes in as --gt. So every page kind is built.

For each worker count, `distill gallery` runs as a subprocess (its imports included) into
WORK/gallery-wN with the default sample (200 per category) and pages; the table gives the
wall time, what was built and the index page weight: index.html plus the files it loads
(style.css and the plot PNGs; it shows no thumbnail).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from engine.label.shards import FORMAT, shard_name
from engine.review.build import page_weight
from engine.synth.dataset import generate_dataset


def make_label_set(work: Path, count: int) -> dict[str, Path]:
    """WORK/data (images, annotations.json), WORK/labels.json and WORK/run, made once."""
    gt_path = work / "data" / "annotations.json"
    if not gt_path.exists():
        generate_dataset(work / "data", count, seed=11)
    gt = json.loads(gt_path.read_text())
    labels = []
    for k, a in enumerate(a for a in gt["annotations"] if not a["iscrowd"]):
        if k % 5 == 4:
            continue
        x, y, w, h = a["bbox"]
        label = {"id": len(labels) + 1, "image_id": a["image_id"], "category_id": a["category_id"],
                 "bbox": [x + 0.05 * w, y, w, h], "area": w * h, "iscrowd": 0,
                 "score": round(0.5 + 0.5 * ((k * 7919) % 1000) / 1000, 5)}
        if "keypoints" in a:
            values = a["keypoints"]
            label["keypoints"] = [v for i in range(0, len(values), 3)
                                  for v in ((values[i], values[i + 1], 2) if values[i + 2] else (0, 0, 0))]
            label["num_keypoints"] = sum(1 for v in label["keypoints"][2::3] if v)
            label["keypoint_scores"] = [0.9 if v else 0.1 for v in values[2::3]]
        labels.append(label)
    info = {"description": "benchmark labels from synthetic ground truth",
            "thresholds": {"rule": "fixed", "score": 0.5, "keypoint": 0.3}}
    labels_path = work / "labels.json"
    labels_path.write_text(json.dumps({"info": info, "images": gt["images"], "annotations": labels,
                                       "categories": gt["categories"]}))
    by_image: dict[int, list[dict]] = {}
    for a in labels:
        by_image.setdefault(a["image_id"], []).append(
            {"bbox": a["bbox"], "score": a["score"], "category_id": a["category_id"]})
    run = work / "run"
    (run / "shards").mkdir(parents=True, exist_ok=True)
    shards, size = [], 500
    for index, start in enumerate(range(0, len(gt["images"]), size)):
        chunk = gt["images"][start:start + size]
        lines = []
        for image in chunk:
            near = {"bbox": [image["width"] * 0.3, image["height"] * 0.3, 30, 30], "score": 0.45, "category_id": 37}
            lines.append(json.dumps({"file_name": image["file_name"], "width": image["width"],
                                     "height": image["height"], "detections": by_image.get(image["id"], []) + [near]}))
        (run / "shards" / shard_name(index)).write_text("\n".join(lines) + "\n")
        shards.append({"index": index, "file": shard_name(index), "first": chunk[0]["file_name"],
                       "images": len(chunk), "failures": 0})
    (run / "manifest.json").write_text(json.dumps({
        "format": FORMAT, "settings": {}, "shard_size": size, "shards": shards, "complete": True,
        "categories": gt["categories"]}))
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
