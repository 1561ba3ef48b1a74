"""Small ONNX graphs with exactly the signatures of the families `distill import` takes,
built with onnx.helper, and their outputs decoded by hand in NumPy.

Every detector graph computes the same toy predictions from its input: the image is
average-pooled by the stride, and each cell of the pooled grid (an anchor) predicts a
box around its centre whose size and offset follow the pooled colour, and per-class
scores from a fixed 1x1 convolution of it. The graphs differ only in what real exports
differ in: input name, layout, dtype and normalization, and how boxes, scores, labels
(and keypoints) are laid out. `decode_*` turn each graph's raw outputs into candidates
`(boxes (N, 4) xyxy input px, scores (N,), labels (N,) category index, keypoints or
None)` by hand, the reference the wrapped graphs are compared with.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.coco.categories import COCO_CATEGORIES

OPSET = 17
STRIDE = 32
CLASSES = 4
JOINTS = 17
# TF OD API labels are COCO ids; 12 is none of COCO's 80 (a removed category).
TF_CLASS_IDS = (1, 3, 12, 90)
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
HEATMAP_CROP = (64, 48)
HEATMAP_STRIDE = 4


class _Graph:
    """Nodes and initializers of a test graph, with unique names."""

    def __init__(self) -> None:
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, value, dtype=np.float32) -> str:
        name = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, n: int = 1, **attrs):
        outs = [out] if out else [self.name(op_type) for _ in range(n)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, **attrs))
        return outs[0] if n == 1 else outs

    def model(self, inputs, outputs, metadata: dict[str, str] | None = None) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "toy", inputs, outputs, initializer=self.inits)
        # IR version 8, as Ultralytics and tf2onnx write: onnx's newest is past ONNX Runtime's.
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
        for key, value in (metadata or {}).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(model)
        return model


def _weights(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 2.0, (rows, 3)).astype(np.float32), rng.normal(-0.5, 0.5, rows).astype(np.float32)


def _anchors(g: _Graph, x: str) -> dict[str, str]:
    """From `x` (B, 3, H, W) float: the pooled grid's toy predictions, each (B, 1, h, w)
    (`cx`, `cy`, `w`, `h` in input px) or (B, C, h, w) (`logits`, `joint_logits`)."""
    pooled = g.op("AveragePool", x, kernel_shape=[STRIDE, STRIDE], strides=[STRIDE, STRIDE])
    p = [g.op("Slice", pooled, g.const([i], np.int64), g.const([i + 1], np.int64), g.const([1], np.int64))
         for i in range(3)]
    zero = g.op("Mul", p[0], g.const(0.0))
    shape = g.op("Shape", pooled)

    def index(axis: int, target: list[int]) -> str:
        size = g.op("Cast", g.op("Gather", shape, g.const(axis, np.int64)), to=TensorProto.FLOAT)
        grid = g.op("Reshape", g.op("Range", g.const(0.0), size, g.const(1.0)), g.const(target, np.int64))
        return g.op("Add", g.op("Mul", g.op("Add", grid, g.const(0.5)), g.const(float(STRIDE))), zero)

    col, row = index(3, [1, 1, 1, -1]), index(2, [1, 1, -1, 1])
    weight, bias = _weights(CLASSES, 0)
    joint_weight, joint_bias = _weights(JOINTS, 1)

    def conv(w: np.ndarray, b: np.ndarray) -> str:
        return g.op("Conv", pooled, g.const(w.reshape(-1, 3, 1, 1)), g.const(b))

    return {
        "cx": g.op("Add", col, g.op("Mul", g.op("Sub", p[0], p[1]), g.const(12.0))),
        "cy": g.op("Add", row, g.op("Mul", g.op("Sub", p[1], p[2]), g.const(12.0))),
        "w": g.op("Mul", g.op("Add", g.op("Abs", p[0]), g.const(1.0)), g.const(float(STRIDE))),
        "h": g.op("Mul", g.op("Add", g.op("Abs", p[2]), g.const(1.2)), g.const(float(STRIDE))),
        "logits": conv(weight, bias),
        "joint_logits": conv(joint_weight, joint_bias),
    }


def _flat(g: _Graph, x: str) -> str:
    """(B, C, h, w) -> (B, C, h * w)."""
    return g.op("Reshape", x, g.const([0, 0, -1], np.int64))


def _xyxy(g: _Graph, a: dict[str, str]) -> list[str]:
    half_w, half_h = g.op("Mul", a["w"], g.const(0.5)), g.op("Mul", a["h"], g.const(0.5))
    return [g.op("Sub", a["cx"], half_w), g.op("Sub", a["cy"], half_h),
            g.op("Add", a["cx"], half_w), g.op("Add", a["cy"], half_h)]


def _joints(g: _Graph, a: dict[str, str]) -> str:
    """(B, J, 3, h, w): per joint x, y around the anchor centre and a confidence."""
    offsets = np.arange(JOINTS, dtype=np.float32) - JOINTS // 2
    x = g.op("Add", a["cx"], g.const((2.0 * offsets).reshape(1, -1, 1, 1)))
    y = g.op("Add", a["cy"], g.const((3.0 * (offsets % 5)).reshape(1, -1, 1, 1)))
    c = g.op("Sigmoid", a["joint_logits"])
    parts = [g.op("Unsqueeze", t, g.const([2], np.int64)) for t in (x, y, c)]
    return g.op("Concat", *parts, axis=2)


def _float_input(name: str, height="height", width="width", batch="batch"):
    dims = [batch, 3, height, width]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def ultralytics_graph(pose: bool, end2end: bool = False, fixed: tuple[int, int] | None = None) -> onnx.ModelProto:
    """`images` float32 (B, 3, H, W) RGB 0..1 -> `output0` (B, 4 + C [+ 3J], A), or with
    `end2end` (B, A, 6 [+ 3J]) x1, y1, x2, y2, score, class [, keypoints]; metadata as
    Ultralytics writes it. `fixed`: a static export's input, (1, 3, H, W)."""
    g = _Graph()
    a = _anchors(g, "images")
    if end2end:
        x1, y1, x2, y2 = _xyxy(g, a)
        scores = g.op("Sigmoid", a["logits"])
        best = g.op("ReduceMax", scores, axes=[1], keepdims=1)
        label = g.op("Cast", g.op("ArgMax", scores, axis=1, keepdims=1), to=TensorProto.FLOAT)
        parts = [x1, y1, x2, y2, best, label]
    else:
        parts = [a["cx"], a["cy"], a["w"], a["h"], g.op("Sigmoid", a["logits"])]
    parts = [_flat(g, part) for part in parts]
    if pose:
        parts.append(g.op("Reshape", _joints(g, a), g.const([0, 3 * JOINTS, -1], np.int64)))
    out = g.op("Concat", *parts, axis=1)
    if end2end:
        out = g.op("Transpose", out, perm=[0, 2, 1])
    g.op("Identity", out, out="output0")
    names = {i: name for i, (_, name) in enumerate(COCO_CATEGORIES[:CLASSES])}
    metadata = {"author": "Ultralytics", "task": "pose" if pose else "detect", "stride": str(STRIDE),
                "names": repr(names), "imgsz": "[640, 640]", "end2end": str(end2end)}
    if pose:
        metadata["kpt_shape"] = f"[{JOINTS}, 3]"
    image = _float_input("images", *fixed, batch=1) if fixed else _float_input("images")
    dims = ["batch", "candidates", "values"] if end2end else ["batch", "values", "anchors"]
    return g.model([image], [helper.make_tensor_value_info("output0", TensorProto.FLOAT, dims)], metadata)


def mmdeploy_graph() -> onnx.ModelProto:
    """`input` float32 (B, 3, H, W) RGB, (x - MEAN) / STD -> `dets` (B, N, 5) xyxy px and
    score, `labels` (B, N) int64 contiguous COCO-80 indices (MMDeploy's detection export)."""
    g = _Graph()
    a = _anchors(g, "input")
    scores = g.op("Sigmoid", a["logits"])
    best = g.op("ReduceMax", scores, axes=[1], keepdims=1)
    dets = g.op("Concat", *_xyxy(g, a), best, axis=1)
    g.op("Transpose", _flat(g, dets), perm=[0, 2, 1], out="dets")
    label = g.op("ArgMax", scores, axis=1, keepdims=1)
    g.op("Reshape", label, g.const([0, -1], np.int64), out="labels")
    return g.model([_float_input("input")],
                   [helper.make_tensor_value_info("dets", TensorProto.FLOAT, ["batch", "num_dets", 5]),
                    helper.make_tensor_value_info("labels", TensorProto.INT64, ["batch", "num_dets"])])


def tf_od_graph() -> onnx.ModelProto:
    """tf2onnx's TF Object Detection API signature: `image_tensor:0` uint8 (B, H, W, 3) ->
    `detection_boxes:0` (B, N, 4) normalized y1, x1, y2, x2; `detection_scores:0` (B, N);
    `detection_classes:0` (B, N) float COCO ids; `num_detections:0` (B,) float, here the
    rows scoring above 0.3 (rows past it are padding to ignore)."""
    g = _Graph()
    x = g.op("Transpose", g.op("Cast", "image_tensor:0", to=TensorProto.FLOAT), perm=[0, 3, 1, 2])
    a = _anchors(g, g.op("Div", x, g.const(255.0)))
    x1, y1, x2, y2 = _xyxy(g, a)
    hw = g.op("Cast", g.op("Shape", "image_tensor:0"), to=TensorProto.FLOAT)
    height = g.op("Gather", hw, g.const(1, np.int64))
    width = g.op("Gather", hw, g.const(2, np.int64))
    boxes = g.op("Concat", g.op("Div", y1, height), g.op("Div", x1, width), g.op("Div", y2, height),
                 g.op("Div", x2, width), axis=1)
    g.op("Transpose", _flat(g, boxes), perm=[0, 2, 1], out="detection_boxes:0")
    scores = g.op("Sigmoid", a["logits"])
    best = g.op("Reshape", g.op("ReduceMax", scores, axes=[1], keepdims=1), g.const([0, -1], np.int64))
    g.op("Identity", best, out="detection_scores:0")
    index = g.op("Reshape", g.op("ArgMax", scores, axis=1, keepdims=1), g.const([0, -1], np.int64))
    g.op("Gather", g.const(np.asarray(TF_CLASS_IDS, np.float32)), index, out="detection_classes:0")
    above = g.op("Cast", g.op("Greater", best, g.const(0.3)), to=TensorProto.FLOAT)
    g.op("ReduceSum", above, g.const([1], np.int64), keepdims=0, out="num_detections:0")
    image = helper.make_tensor_value_info("image_tensor:0", TensorProto.UINT8, ["batch", "height", "width", 3])
    return g.model([image], [
        helper.make_tensor_value_info("detection_boxes:0", TensorProto.FLOAT, ["batch", "n", 4]),
        helper.make_tensor_value_info("detection_scores:0", TensorProto.FLOAT, ["batch", "n"]),
        helper.make_tensor_value_info("detection_classes:0", TensorProto.FLOAT, ["batch", "n"]),
        helper.make_tensor_value_info("num_detections:0", TensorProto.FLOAT, ["batch"])])


def heatmap_graph() -> onnx.ModelProto:
    """A top-down keypoint model as MMPose exports one: `input` float32 (B, 3, 64, 48) BGR,
    (x - MEAN) / STD -> `output` heatmaps (B, 17, 16, 12)."""
    g = _Graph()
    pooled = g.op("AveragePool", "input", kernel_shape=[HEATMAP_STRIDE] * 2, strides=[HEATMAP_STRIDE] * 2)
    weight, bias = _weights(JOINTS, 2)
    g.op("Conv", pooled, g.const(weight.reshape(-1, 3, 1, 1)), g.const(bias), out="output")
    h, w = HEATMAP_CROP
    return g.model([_float_input("input", h, w)],
                   [helper.make_tensor_value_info("output", TensorProto.FLOAT,
                                                  ["batch", JOINTS, h // HEATMAP_STRIDE, w // HEATMAP_STRIDE])])


# ---- hand decoding of each family's raw outputs ------------------------------------------
def decode_ultralytics(out: np.ndarray, pose: bool, end2end: bool = False):
    """One image's `output0` -> candidates (module docstring)."""
    keypoints = None
    if end2end:
        rows = out
        boxes, scores, labels = rows[:, :4], rows[:, 4], np.rint(rows[:, 5]).astype(np.int64)
        first = 6
    else:
        rows = out.T
        cx, cy, w, h = rows[:, :4].T
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        scores, labels = rows[:, 4:4 + CLASSES].max(1), rows[:, 4:4 + CLASSES].argmax(1)
        first = 4 + CLASSES
    if pose:
        keypoints = rows[:, first:first + 3 * JOINTS].reshape(-1, JOINTS, 3)
    return boxes, scores, labels, keypoints


def decode_mmdeploy(dets: np.ndarray, labels: np.ndarray):
    return dets[:, :4], dets[:, 4], labels.astype(np.int64), None


def decode_tf(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, count: float, height: int, width: int):
    """TF's normalized yxyx boxes and COCO ids -> candidates; rows past `count` and ids of
    none of COCO's 80 categories get score 0."""
    y1, x1, y2, x2 = boxes.T
    xyxy = np.stack([x1 * width, y1 * height, x2 * width, y2 * height], axis=1)
    index = {cid: i for i, (cid, _) in enumerate(COCO_CATEGORIES)}
    labels = np.array([index.get(int(round(c)), -1) for c in classes])
    scores = np.where((np.arange(len(scores)) < count) & (labels >= 0), scores, 0.0)
    return xyxy, scores, np.maximum(labels, 0), None


def top(candidates, k: int):
    """The k best candidates by score (the wrapped graphs' pre-NMS top-K), without the
    zero-scored rows (their order among equals is arbitrary)."""
    boxes, scores, labels, keypoints = candidates
    order = np.argsort(-scores, kind="stable")[:k]
    order = order[scores[order] > 0]
    return boxes[order], scores[order], labels[order], None if keypoints is None else keypoints[order]
