"""A real teacher on real photos: Ultralytics' COCO-trained YOLO11n-pose, imported with
`distill import ultralytics`, labeling coco-mini's 158 val2017 photos.

    .venv/bin/python -m benchmarks.real_teacher --out runs/real-teacher [--around] [--tta] \
        [--plan PLAN_DIR] [--no-direct]
    .venv/bin/python -m benchmarks.real_teacher --out runs/real --prepare

Needs ../shared/data (the model's README says where it comes from; its weights are
AGPL-3.0: everything this writes stays under --out, which git ignores). `--prepare`
only writes the inputs `make real` feeds the distill commands (below) and stops. Rows,
each scored with COCOeval against `person_keypoints.json` restricted to the val2017
photos (box AP counts every person, also those without keypoints; a person's keypoint
score is its box score, as in Ultralytics' own evaluation):

    direct   the raw export run by ONNX Runtime here, with this file's own letterbox
             (longer side 640, grey 114, centred, padded to a multiple of 32), decoding
             and NMS: the reference the engine must match
    native   `distill label`, one pass at the native size (`--scales 640 --max-size 640
             --no-flip`), plain NMS (keypoints: each kept box's own)
    plan     (--plan) the passes `distill plan-transforms --objective keypoints` chose
             on a disjoint set (coco-unlabeled's derived keypoints: `make real`), default
             merge
    around   (--around) 480, 640, 800 px each mirrored (6 passes), default merge
    tta      (--tta) the default plan, 400..1200 px each mirrored (18 passes), merged
             by the default NMS 0.5 + box voting 0.8

In every merged row the one-stage keypoints are voted with the boxes (each kept box's
joints: its voters' joints weighted by box score x joint confidence). All rows use the
model README's protocol: scores above 0.01, NMS IoU 0.65 (the merge's default 0.5 in
the merged rows), at most 100 people per photo. A run folder already complete is scored
as it is (its time from its manifest). A row's detector cost is the padded pixels its
passes feed the detector over the photos, relative to the 18-pass plan's. Writes
OUT/results.json (every COCOeval statistic, by size too).

`--prepare` writes OUT/val2017/ (links to the val2017 photos, so that records are named
as the ground truth names them), OUT/val2017.json (their ground truth, for scoring and
`distill gallery --gt`) and OUT/train2017.json (the train2017 photos' ground truth: the
labeled-set statistics `distill select --labeled` calibrates its thresholds on).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from engine.coco.evaluate import coco_api, run_cocoeval
from engine.coco.geometry import xyxy_to_xywh
from engine.coco.schema import PERSON_CATEGORY_ID
from engine.label.manifest import RunManifest
from engine.label.views import Padding, TransformPlan
from engine.scaling import scaled_size

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
MODEL = SHARED / "models" / "yolo11n-pose" / "yolo11n-pose.onnx"
COCO_MINI = SHARED / "coco-mini"
SPLIT = "val2017"
SIZE, STRIDE, GREY = 640, 32, 114
FLOOR, NMS_IOU, MAX_PEOPLE = 0.01, 0.65, 100
PROTOCOL = ["--score-floor", str(FLOOR), "--max-detections", str(MAX_PEOPLE)]
RUNS = {
    "native": ["--scales", str(SIZE), "--max-size", str(SIZE), "--no-flip", "--vote-threshold", "-1",
               "--nms-threshold", str(NMS_IOU)],
    # Three scales around the native 640, each mirrored, default merge (voting 0.8):
    # the one-stage keypoints voted across 6 passes.
    "around": ["--scales", "480,640,800", "--max-size", "1333"],
    "tta": [],
}


# ---- ground truth --------------------------------------------------------------------------
def split_ground_truth(coco: Path = COCO_MINI, split: str = SPLIT) -> dict:
    """`person_keypoints.json` restricted to the images of `split` (their `split` field)."""
    data = json.loads((coco / "annotations" / "person_keypoints.json").read_text())
    images = [image for image in data["images"] if image.get("split") == split]
    ids = {image["id"] for image in images}
    return {**data, "images": images, "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}


def score(gt: dict, people: dict[str, list[dict]]) -> dict[str, float]:
    """Box and keypoint AP of `people` ({file name: [{"bbox" xywh, "score", "keypoints"
    (x, y, confidence) * 17 or absent}]}) against `gt`."""
    api = coco_api(gt)
    ids = {image["file_name"]: image["id"] for image in gt["images"]}
    boxes, poses = [], []
    for name, items in people.items():
        for item in items:
            result = {"image_id": ids[name], "category_id": PERSON_CATEGORY_ID, "bbox": item["bbox"],
                      "score": item["score"]}
            boxes.append(result)
            if "keypoints" in item:
                points = np.asarray(item["keypoints"], np.float64).reshape(-1, 3)
                points[:, 2] = 1.0  # COCOeval reads visibility, not confidence
                poses.append({**result, "keypoints": points.reshape(-1).tolist()})
    metrics = run_cocoeval(api, boxes, "bbox", [PERSON_CATEGORY_ID])
    if poses:
        metrics.update(run_cocoeval(api, poses, "keypoints", [PERSON_CATEGORY_ID]))
    return metrics


# ---- the reference: the raw export decoded here -------------------------------------------------
def letterbox(image: np.ndarray) -> tuple[np.ndarray, float, tuple[int, int]]:
    """`(H, W, 3)` uint8 RGB -> `(1, 3, Hp, Wp)` float32 0..1, the gain and the (top, left)
    padding: the longer side resized to 640, grey padding to multiples of 32, centred."""
    height, width = image.shape[:2]
    gain = min(SIZE / height, SIZE / width)
    h, w = max(1, round(height * gain)), max(1, round(width * gain))
    resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR) if (h, w) != (height, width) else image
    hp, wp = -(-h // STRIDE) * STRIDE, -(-w // STRIDE) * STRIDE
    top, left = (hp - h) // 2, (wp - w) // 2
    canvas = np.full((hp, wp, 3), GREY, np.uint8)
    canvas[top:top + h, left:left + w] = resized
    return canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255, gain, (top, left)


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Indices kept by greedy NMS (suppress IoU > `iou`), best score first."""
    order = np.argsort(-scores, kind="stable")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        x1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        order = rest[inter / (area[i] + area[rest] - inter) <= iou]
    return keep


def direct_predictions(model: Path, images: list[Path]) -> dict[str, list[dict]]:
    """The raw export over `images`, decoded here (module docstring, `direct`)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    result = {}
    for path in images:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        height, width = image.shape[:2]
        pixels, gain, (top, left) = letterbox(image)
        rows = session.run(None, {"images": pixels})[0][0].T  # (anchors, 4 + 1 + 51)
        rows = rows[rows[:, 4] > FLOOR]
        cx, cy, w, h = rows[:, :4].T
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        keep = greedy_nms(boxes, rows[:, 4], NMS_IOU)[:MAX_PEOPLE]
        boxes = (boxes[keep] - [left, top, left, top]) / gain
        boxes = np.clip(boxes, 0, [width, height, width, height])
        points = rows[keep, 5:].reshape(len(keep), 17, 3).copy()
        points[..., 0] = np.clip((points[..., 0] - left) / gain, 0, width)
        points[..., 1] = np.clip((points[..., 1] - top) / gain, 0, height)
        result[path.name] = [{"bbox": xyxy_to_xywh(box[None])[0].tolist(), "score": float(s),
                              "keypoints": p.reshape(-1).tolist()}
                             for box, s, p in zip(boxes, rows[keep, 4], points)]
    return result


# ---- the engine ------------------------------------------------------------------------------
def distill(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=REPO, check=True)


def labeled_people(run: Path) -> dict[str, list[dict]]:
    """A finished `distill label` run's records as {file name: detections}."""
    people = {}
    for shard in sorted((run / "shards").glob("*.jsonl")):
        for line in shard.read_text().splitlines():
            record = json.loads(line)
            people[Path(record["file_name"]).name] = [d for d in record["detections"]
                                                      if d["category_id"] == PERSON_CATEGORY_ID]
    return people


def import_teacher(out: Path, model: Path = MODEL) -> Path:
    teacher = out / "yolo11n-pose-teacher.onnx"
    if not teacher.is_file():
        distill("import", "ultralytics", "--onnx", str(model), "--out", str(teacher))
    return teacher


def prepare(out: Path, gt: dict, coco: Path = COCO_MINI) -> Path:
    """The inputs `make real` feeds the distill commands (module docstring); the folder
    of links to the split's photos."""
    folder = out / SPLIT
    folder.mkdir(parents=True, exist_ok=True)
    for image in gt["images"]:
        link = folder / image["file_name"]
        if not link.is_symlink():
            link.symlink_to((coco / "images" / image["file_name"]).resolve())
    (out / f"{SPLIT}.json").write_text(json.dumps(gt))
    (out / "train2017.json").write_text(json.dumps(split_ground_truth(coco, "train2017")))
    return folder


def label_run(teacher: Path, images: Path, out: Path, name: str, options: list[str]) -> tuple[Path, float]:
    """`distill label` of the folder `images` with `options`, unless a complete run is
    there (an unfinished one is resumed); (run folder, the run's wall seconds from its
    manifest)."""
    run = out / name
    started = (run / "manifest.json").is_file()
    if not (started and RunManifest.load(run).complete):
        distill("label", "--detector", str(teacher), "--images", str(images), "--out", str(run), "--no-progress",
                *PROTOCOL, *options, *(["--resume"] if started else []))
    return run, RunManifest.load(run).summary.wall_seconds


def padded_pixels(plan: TransformPlan, padding: Padding, sizes: list[tuple[int, int]]) -> int:
    """Pixels the detector processes for `plan` over images of `sizes` (H, W): every
    pass's view, padded (a mirrored pass costs what its original does)."""
    total = 0
    for height, width in sizes:
        for scale, _ in plan.passes:
            total += int(np.prod(padding.padded_shape(*scaled_size(height, width, scale, plan.max_size))))
    return total


def teacher_padding(teacher: Path) -> Padding:
    import onnxruntime as ort

    from engine.modelcard import card_from_metadata

    metadata = ort.InferenceSession(str(teacher), providers=["CPUExecutionProvider"]).get_modelmeta()
    return Padding.of(card_from_metadata(metadata.custom_metadata_map, str(teacher)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "real-teacher")
    parser.add_argument("--around", action="store_true", help="also 480, 640, 800 px each mirrored (6 passes)")
    parser.add_argument("--tta", action="store_true", help="also the 18-pass run (about 50x the native pass)")
    parser.add_argument("--plan", type=Path, help="also a run with this plan (distill plan-transforms' folder)")
    parser.add_argument("--no-direct", action="store_true", help="leave out the direct row")
    parser.add_argument("--prepare", action="store_true", help="only write the inputs make real uses")
    args = parser.parse_args()
    if not MODEL.is_file():
        raise SystemExit(f"real_teacher: {MODEL} not found (../shared/data is absent)")
    args.out.mkdir(parents=True, exist_ok=True)
    gt = split_ground_truth()
    images = prepare(args.out, gt)
    if args.prepare:
        return
    teacher = import_teacher(args.out)
    paths = sorted(images.iterdir())
    sizes = [(image["height"], image["width"]) for image in gt["images"]]
    padding, full = teacher_padding(teacher), TransformPlan()
    rows = {}
    if not args.no_direct:
        started = time.perf_counter()
        # One letterboxed pass: the longer side at 640, padded to multiples of 32.
        direct = TransformPlan(((SIZE, False),), SIZE)
        rows["direct"] = (score(gt, direct_predictions(MODEL, paths)), time.perf_counter() - started,
                          padded_pixels(direct, padding, sizes))
    runs = {"native": RUNS["native"], **({"plan": ["--plan", str(args.plan)]} if args.plan else {}),
            **({"around": RUNS["around"]} if args.around else {}), **({"tta": RUNS["tta"]} if args.tta else {})}
    for name, options in runs.items():
        run, seconds = label_run(teacher, images, args.out, name, options)
        plan = RunManifest.load(run).settings.labeling.plan
        rows[name] = (score(gt, labeled_people(run)), seconds, padded_pixels(plan, padding, sizes))
    full_pixels = padded_pixels(full, padding, sizes)
    results = {name: {**m, "seconds": round(s, 1), "images": len(paths), "cost": round(pixels / full_pixels, 4)}
               for name, (m, s, pixels) in rows.items()}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"{'run':8} {'cost':>6} {'box AP':>7} {'APs':>6} {'APm':>6} {'APl':>6} {'kpt AP':>7} {'APm':>6} "
          f"{'APl':>6} {'seconds':>8}   ({len(paths)} {SPLIT} photos; cost: padded pixels, 18-pass plan = 1)")
    for name, r in results.items():
        kp = ("      -" + " " * 14 if r.get("keypoint_AP") is None else
              f"{r['keypoint_AP']:7.3f} {r['keypoint_APm']:6.3f} {r['keypoint_APl']:6.3f}")
        print(f"{name:8} {r['cost']:6.3f} {r['box_AP']:7.3f} {r['box_APs']:6.3f} {r['box_APm']:6.3f} "
              f"{r['box_APl']:6.3f} {kp} {r['seconds']:8.1f}")


if __name__ == "__main__":
    main()
