"""Ultralytics' own predictions for the parity test (test_ultralytics_parity.py), run by a
Python that has `ultralytics` (here a separate virtualenv, docs/import.md says why):

    python ultralytics_reference.py --out DIR IMAGE...

writes DIR/model.onnx (`yolo export format=onnx dynamic=True`) and DIR/predictions.json
(per image: xyxy boxes, scores, classes, keypoints from `YOLO.predict` at its defaults:
imgsz 640, conf 0.25, iou 0.7, max_det 300). The model is YOLO11n-pose built from the
package's own yaml with seeded random weights: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import types
from pathlib import Path


def torchvision_stand_in() -> None:
    """PyPI's torchvision here is a CUDA build that does not load beside the CPU torch, and
    Ultralytics' predictor imports it unconditionally (to make its NMS use
    torchvision.ops.nms). Its NMS falls back to its own `TorchNMS.nms` ("matches torchvision
    behavior exactly") when torchvision is absent; the stand-in module hands it exactly that."""
    from ultralytics.utils.nms import TorchNMS

    module, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    ops.nms = TorchNMS.nms
    module.ops = ops
    sys.modules.update({"torchvision": module, "torchvision.ops": ops})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("images", nargs="+", type=Path)
    args = parser.parse_args()

    import cv2
    import numpy as np
    import torch
    from ultralytics import YOLO

    torch.manual_seed(args.seed)
    model = YOLO("yolo11n-pose.yaml")
    # Freshly initialized, the activations fade to ~0 by the head (eval-mode BatchNorm with
    # unit statistics), so every anchor predicts the same box and score. One training-mode
    # pass over the test photos with momentum 1 sets each BatchNorm's statistics to theirs,
    # and the activations keep unit scale. The class branch's last layer is then
    # damped (its bias prior puts every score near 1e-5) so that a few hundred anchors of
    # a photo score above 0.25, with distinct scores, and NMS has work to do.
    net = model.model
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 1.0
    photos = [cv2.resize(cv2.imread(str(p))[:, :, ::-1], (320, 320)) for p in args.images]
    net.train()
    with torch.no_grad():
        net(torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).float() / 255)
    net.eval()
    for branch in net.model[-1].cv3:
        branch[-1].weight.data.mul_(0.25)
        branch[-1].bias.data.fill_(-4.2)
    exported = model.export(format="onnx", dynamic=True, simplify=False, opset=17, imgsz=640, verbose=False)
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.move(exported, args.out / "model.onnx")
    torchvision_stand_in()
    predictions = {}
    for path in args.images:
        result = model.predict(str(path), imgsz=640, conf=0.25, iou=0.7, max_det=300, verbose=False)[0]
        predictions[path.name] = {"boxes": result.boxes.xyxy.tolist(), "scores": result.boxes.conf.tolist(),
                                  "classes": result.boxes.cls.int().tolist(),
                                  "keypoints": result.keypoints.data.tolist()}
    (args.out / "predictions.json").write_text(json.dumps(predictions))


if __name__ == "__main__":
    main()
