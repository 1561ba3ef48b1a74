"""COCO evaluation (engine.coco.evaluate, pycocotools): box AP for the detector, keypoint AP
for the keypoint model on ground-truth boxes or on a detector's person boxes; the
statistics come back as `box_AP`, `box_AP50`, ... and `keypoint_AP`, ....

Detector post-processing is the engine's: the model's pre-NMS candidates go through
`engine.ensemble.ensemble_detections` with plain per-class NMS (no voting), exactly as a
single-transform labeling pass would.
"""

from __future__ import annotations

import numpy as np
import torch
from pycocotools.coco import COCO
from tqdm import tqdm

from engine.coco.evaluate import instance_score, run_cocoeval
from engine.coco.geometry import xyxy_to_xywh
from engine.crops import person_crop_box, warp_crop
from engine.ensemble import ensemble_detections, heatmap_argmax, keypoints_to_image
from engine.scaling import resize_to_scale
from trainer.data.coco import person_category_id, read_image
from trainer.data.detection import pad_batch

NMS_THRESHOLD = 0.6  # FCOS's test-time NMS IoU
SCORE_FLOOR = 0.05


@torch.no_grad()
def detect_image(model, image: np.ndarray, min_size: int, max_size: int, device, topk: int = 1000):
    """Detections for one (H, W, 3) uint8 RGB image: boxes (K, 4) float32 xyxy in original
    pixels, scores (K,) float32, labels (K,) int64 class indices, after per-class NMS."""
    height, width = image.shape[:2]
    resized = resize_to_scale(image, min_size, max_size)
    new_h, new_w = resized.shape[:2]
    tensor = torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1))).float()
    batch = pad_batch([tensor], max(model.strides)).to(device)
    boxes, scores, labels = (t[0].float().cpu().numpy() for t in model.candidates(batch, topk))
    boxes = boxes / np.array([new_w / width, new_h / height] * 2, np.float32)
    return ensemble_detections(
        boxes, scores, labels.astype(np.int64), nms_threshold=NMS_THRESHOLD,
        vote_threshold=None, score_floor=SCORE_FLOOR, max_detections=100,
    )


def evaluate_detector(model, coco: COCO, images_dir: str, categories: list[dict], min_size: int, max_size: int, device, quiet: bool = False) -> dict[str, float]:
    """`box_*` statistics over every image of `coco` (categories: the model's label table)."""
    model.eval()
    results = []
    for image_id in tqdm(sorted(coco.getImgIds()), desc="eval bbox", disable=quiet, leave=False):
        info = coco.imgs[image_id]
        image = read_image(f"{images_dir}/{info['file_name']}")
        boxes, scores, labels = detect_image(model, image, min_size, max_size, device)
        # widths in float64 (a float32 subtraction rounds differently and shifts AP digits)
        for box, score, label in zip(xyxy_to_xywh(boxes.astype(np.float64)).tolist(), scores, labels):
            results.append({
                "image_id": image_id, "category_id": categories[int(label)]["id"],
                "bbox": box, "score": float(score),
            })
    known = {c["id"] for c in coco.dataset["categories"]}
    results = [r for r in results if r["category_id"] in known]
    return run_cocoeval(coco, results, "bbox", quiet=quiet)


@torch.no_grad()
def predict_keypoints(model, image: np.ndarray, boxes_xywh: np.ndarray, device, padding: float, batch_size: int = 64):
    """Keypoints for people in `boxes_xywh` (N, 4): (N, 17, 2) float32 image xy and (N, 17) peaks."""
    height, width = model.input_size
    crop_boxes = person_crop_box(boxes_xywh, width / height, padding).reshape(-1, 4)
    points, peaks = [], []
    for start in range(0, len(crop_boxes), batch_size):
        chunk = crop_boxes[start : start + batch_size]
        crops = np.stack([warp_crop(image, box, (height, width)) for box in chunk])
        tensor = torch.from_numpy(crops.transpose(0, 3, 1, 2).copy()).float().to(device)
        heatmaps = model(tensor).float().cpu().numpy()
        # `window`: the model's heatmaps are softmax distributions, and their local mean
        # measured 0.390 keypoint AP against 0.342 for `quarter` (README's tiny run).
        decoded = heatmap_argmax(heatmaps, refine="window")
        points.append(keypoints_to_image(decoded, chunk, heatmaps.shape[2:]))
        peaks.append(decoded[..., 2])
    if not points:
        return np.zeros((0, model.num_keypoints, 2), np.float32), np.zeros((0, model.num_keypoints), np.float32)
    return np.concatenate(points), np.concatenate(peaks)


def evaluate_keypoints(model, coco: COCO, images_dir: str, device, padding: float, detector=None, detector_meta: dict | None = None, quiet: bool = False) -> dict[str, float]:
    """`keypoint_*` statistics; people from GT boxes, or from `detector` (with its
    {"categories", "min_size", "max_size"}) when given."""
    model.eval()
    person = person_category_id(coco)
    results = []
    for image_id in tqdm(sorted(coco.getImgIds()), desc="eval keypoints", disable=quiet, leave=False):
        if detector is None:
            anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=[image_id], catIds=[person])) if not a.get("iscrowd", 0)]
            if not anns:
                continue
            boxes = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
            box_scores = np.ones(len(boxes), np.float32)
        image = read_image(f"{images_dir}/{coco.imgs[image_id]['file_name']}")
        if detector is not None:
            det_boxes, det_scores, det_labels = detect_image(detector, image, detector_meta["min_size"], detector_meta["max_size"], device)
            keep = np.array([detector_meta["categories"][int(l)]["name"] == "person" for l in det_labels], bool)
            det_boxes, box_scores = det_boxes[keep], det_scores[keep]
            boxes = xyxy_to_xywh(det_boxes)
            if not len(boxes):
                continue
        points, peaks = predict_keypoints(model, image, boxes, device, padding)
        scores = box_scores * instance_score(peaks)
        for xy, peak, score, box in zip(points, peaks, scores, boxes):
            keypoints = np.concatenate([xy, peak[:, None]], axis=1).reshape(-1)
            results.append({
                "image_id": image_id, "category_id": person, "keypoints": [float(v) for v in keypoints],
                "score": float(score), "bbox": [float(v) for v in box],
            })
    return run_cocoeval(coco, results, "keypoints", cat_ids=[person], quiet=quiet)
