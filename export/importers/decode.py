"""The graph after the network: its outputs, as a description says they are laid out,
turned into the engine's (candidates in xyxy input pixels, the best class, labels mapped
to the card's categories, invalid rows scored 0, the top-K by score), with the checks of
the description against the outputs the graph declares and those it computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import UserError
from engine.modelcard import DETECTOR_KEYPOINTS
from export.importers.formats import DetectorOutputs, UltralyticsOutputs
from export.importers.graph import format_shape, graph_output
from export.importers.nodes import Nodes


@dataclass
class Decoded:
    """A detector's candidates in the engine's terms, before top-K: boxes `(B, N, 4)`
    float32 xyxy input pixels, scores `(B, N)` float32, raw labels `(B, N)` int64 (the
    network's own numbering), optional valid `(B, N)` bool, keypoints `(B, N, J, 3)`."""

    boxes: str
    scores: str
    labels: str
    valid: str | None = None
    keypoints: str | None = None
    joints: int = 0


def _xyxy(b: Nodes, boxes: str, box_format: str) -> str:
    c = [b.columns(boxes, i, i + 1) for i in range(4)]
    if box_format == "xyxy":
        return boxes
    if box_format == "yxyx":
        x1, y1, x2, y2 = c[1], c[0], c[3], c[2]
    elif box_format == "xywh":
        x1, y1, x2, y2 = c[0], c[1], b.op("Add", c[0], c[2]), b.op("Add", c[1], c[3])
    else:  # cxcywh
        half_w = b.op("Mul", c[2], b.const(0.5, np.float32))
        half_h = b.op("Mul", c[3], b.const(0.5, np.float32))
        x1, y1 = b.op("Sub", c[0], half_w), b.op("Sub", c[1], half_h)
        x2, y2 = b.op("Add", c[0], half_w), b.op("Add", c[1], half_h)
    return b.op("Concat", x1, y1, x2, y2, axis=-1)


def _labels_int(b: Nodes, labels: str, is_float: bool) -> str:
    """Labels as int64; float labels (TF's detection_classes) rounded first."""
    from onnx import TensorProto

    if is_float:
        labels = b.op("Floor", b.op("Add", b.to_float(labels), b.const(0.5, np.float32)))
    return b.op("Cast", labels, to=TensorProto.INT64)


def check_declared(model: Any, outs: DetectorOutputs | UltralyticsOutputs, source: Path) -> None:
    """The described outputs against what the graph declares (names, ranks, known dims),
    before anything runs."""
    if isinstance(outs, UltralyticsOutputs):
        _, shape = graph_output(model, outs.name, source, (3,), "Ultralytics predictions")
        axis = 2 if outs.end2end else 1
        if shape is not None and shape[axis] not in (outs.channels, None):
            layout = ("(B, N, 6 + 3K) after NMS" if outs.end2end else "(B, 4 + classes + 3K, anchors)")
            raise UserError(f"{source}: output {outs.name!r} is {format_shape(shape)}, but {outs.classes} classes and "
                            f"{outs.keypoints} keypoints make {outs.channels} values per candidate in {layout}")
        return
    first, width, what = ((outs.dets, 5, "detections (B, N, 5)") if outs.dets is not None
                          else (outs.boxes, 4, "boxes (B, N, 4)"))
    _, shape = graph_output(model, first, source, (3,), what)
    if shape is not None and shape[2] not in (width, None):
        raise UserError(f"{source}: output {first!r} is {format_shape(shape)}: expected {what}")
    if outs.scores is not None:
        _, score_shape = graph_output(model, outs.scores, source, (2, 3), "scores (B, N) or (B, N, classes)")
        if score_shape is not None and len(score_shape) == 3 and outs.labels is not None:
            raise UserError(f"{source}: output {outs.scores!r} has a score per class, so the label is the best "
                            "class: name no labels output")
        if score_shape is not None and len(score_shape) == 2 and outs.labels is None:
            raise UserError(f"{source}: output {outs.scores!r} has one score per detection: name the labels output")
    if outs.labels is not None:
        graph_output(model, outs.labels, source, (2,), "labels (B, N)")
    if outs.count is not None:
        graph_output(model, outs.count, source, (1,), "detection count (B,)")


def decode_described(b: Nodes, outs: DetectorOutputs, got: dict[str, np.ndarray], inputs: dict[str, str],
                     hw: str) -> Decoded:
    """`distill import onnx`'s outputs (DetectorOutputs) -> candidates. `got`: the network's
    outputs on a test image (their real ranks and dtypes); `inputs` maps each network
    output name to its name inside the graph after it."""
    valid = None
    if outs.dets is not None:
        dets = b.to_float(inputs[outs.dets])
        boxes, scores = b.columns(dets, 0, 4), b.reshape(b.columns(dets, 4, 5), [0, -1])
        per_class = False
    else:
        per_class = got[outs.scores].ndim == 3
        boxes = _xyxy(b, b.to_float(inputs[outs.boxes]), outs.box_format)
        if outs.normalized:
            # 0..1 of the input's width and height -> input pixels.
            whwh = b.op("Gather", hw, b.const([1, 0, 1, 0], np.int64))
            boxes = b.op("Mul", boxes, whwh)
        scores = b.to_float(inputs[outs.scores])
    if per_class:
        scores, labels = b.best_class(scores)
    else:
        labels = _labels_int(b, inputs[outs.labels], got[outs.labels].dtype.kind == "f")
    if outs.count is not None:
        # Rows at or past the count are padding: positions (1, N) < count (B, 1).
        positions = b.to_float(b.op("Range", b.const(0, np.int64), b.dim(scores, 1), b.const(1, np.int64)))
        count = b.reshape(b.to_float(inputs[outs.count]), [-1, 1])
        valid = b.op("Less", b.reshape(positions, [1, -1]), count)
    return Decoded(boxes, scores, labels, valid)


def decode_ultralytics(b: Nodes, outs: UltralyticsOutputs, inputs: dict[str, str]) -> Decoded:
    """An Ultralytics export's output -> candidates (formats.UltralyticsOutputs)."""
    x = b.to_float(inputs[outs.name])
    if outs.end2end:
        boxes = b.columns(x, 0, 4)
        scores = b.reshape(b.columns(x, 4, 5), [0, -1])
        labels = _labels_int(b, b.reshape(b.columns(x, 5, 6), [0, -1]), is_float=True)
        first_keypoint = 6
    else:
        x = b.op("Transpose", x, perm=[0, 2, 1])  # (B, A, C): one row per anchor
        boxes = _xyxy(b, b.columns(x, 0, 4), "cxcywh")
        scores, labels = b.best_class(b.columns(x, 4, 4 + outs.classes))
        first_keypoint = 4 + outs.classes
    keypoints = None
    if outs.keypoints:
        keypoints = b.reshape(b.columns(x, first_keypoint, first_keypoint + 3 * outs.keypoints),
                              [0, 0, outs.keypoints, 3])
    return Decoded(boxes, scores, labels, keypoints=keypoints, joints=outs.keypoints)


# ---- the graph after the network: the engine's outputs ------------------------------------
def build_after(b: Nodes, decoded: Decoded, table: list[int], topk: int) -> list[str]:
    """Labels mapped through `table` (raw label -> category index, -1: none), invalid
    rows scored 0, then the top-K by score; returns the output names."""
    from onnx import TensorProto

    raw = decoded.labels
    size = len(table)
    valid = b.op("And", b.op("Not", b.op("Less", raw, b.const(0, np.int64))), b.op("Less", raw, b.const(size, np.int64)))
    index = b.op("Gather", b.const(table, np.int64), b.op("Where", valid, raw, b.const(0, np.int64)))
    valid = b.op("And", valid, b.op("Not", b.op("Less", index, b.const(0, np.int64))))
    if decoded.valid is not None:
        valid = b.op("And", valid, decoded.valid)
    scores = b.op("Where", valid, decoded.scores, b.const(0.0, np.float32))
    labels = b.op("Where", valid, index, b.const(0, np.int64))
    # K = min(N, topk): a small view has fewer anchors than the card's top-K.
    n = b.reshape(b.dim(scores, 1), [1])
    limit = b.const([topk], np.int64)
    k = b.op("Where", b.op("Less", n, limit), n, limit)
    top_scores, order = b.op("TopK", scores, k, axis=1, largest=1, sorted=1, outputs=2)
    rows = b.reshape(order, [0, -1, 1])  # (B, K, 1) for GatherElements along the candidates

    def gather(x: str, width: int) -> str:
        return b.op("GatherElements", x, b.op("Expand", rows, b.const([1, 1, width], np.int64)), axis=1)

    names = [b.op("Identity", gather(decoded.boxes, 4), out="boxes"),
             b.op("Identity", top_scores, out="scores"),
             b.op("Cast", b.reshape(gather(b.reshape(labels, [0, -1, 1]), 1), [0, -1]), to=TensorProto.INT32,
                  out="labels")]
    if decoded.keypoints is not None:
        width = 3 * decoded.joints
        picked = gather(b.reshape(decoded.keypoints, [0, 0, width]), width)
        names.append(b.op("Reshape", picked, b.const([0, 0, decoded.joints, 3], np.int64), out=DETECTOR_KEYPOINTS))
    return names


def candidate_count(got: dict[str, np.ndarray], outs: DetectorOutputs | UltralyticsOutputs) -> int:
    """N, the candidates per image of the network's outputs `got` on a test image."""
    if isinstance(outs, UltralyticsOutputs):
        return got[outs.name].shape[1 if outs.end2end else 2]
    return got[outs.dets or outs.boxes].shape[1]


def check_outputs_described(got: dict[str, np.ndarray], outs: DetectorOutputs | UltralyticsOutputs,
                            source: Path) -> None:
    """The network's real output shapes against the description (dims the graph leaves
    dynamic are only known once it runs): N candidates in every per-candidate output."""
    def fail(name: str, want: str) -> None:
        raise UserError(f"{source}: output {name!r} is {list(got[name].shape)} on a test image, the description "
                        f"says {want}")

    if isinstance(outs, UltralyticsOutputs):
        shape = got[outs.name].shape
        axis = 2 if outs.end2end else 1
        if len(shape) != 3 or shape[axis] != outs.channels:
            fail(outs.name, f"{outs.channels} values per candidate on axis {axis} "
                            f"({outs.classes} classes, {outs.keypoints} keypoints)")
        return
    first = outs.dets or outs.boxes
    shape = got[first].shape
    width = 5 if outs.dets else 4
    if len(shape) != 3 or shape[2] != width:
        fail(first, f"(B, N, {width})")
    batch, n = shape[:2]
    if outs.scores is not None:
        scores = got[outs.scores]
        if scores.shape[:2] != (batch, n) or scores.ndim not in (2, 3):
            fail(outs.scores, f"(B, N) or (B, N, classes) with the N = {n} of {first!r}")
        if scores.ndim == 3 and outs.labels is not None:
            fail(outs.scores, "one score per detection and a labels output (a score per class needs none)")
        if scores.ndim == 2 and outs.labels is None:
            fail(outs.scores, "a score per class (one score per detection needs a labels output)")
    if outs.labels is not None and got[outs.labels].shape != (batch, n):
        fail(outs.labels, f"(B, N) with the N = {n} of {first!r}")
    if outs.count is not None and got[outs.count].shape != (batch,):
        fail(outs.count, "(B,): a count per image")
