"""An Ultralytics ONNX export (`yolo export format=onnx dynamic=True`) described from its
own metadata: the class names, the task (detect or pose), the keypoint shape, the
stride, and whether NMS is inside (`end2end`).

What Ultralytics' predictor does with such a model, and so what the card asks of the
engine's views: RGB scaled to 0..1, the image letterboxed (resized, padded with grey 114
to a multiple of the stride, centred: `ultralytics/data/augment.py`, LetterBox).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from engine.errors import UserError
from export.importers.formats import InputFormat, UltralyticsOutputs, ViewPadding

TASKS = ("detect", "pose")
LETTERBOX_GREY = 114


def _literal(meta: dict[str, str], key: str, source: Path) -> Any:
    try:
        return ast.literal_eval(meta[key])
    except (ValueError, SyntaxError):
        raise UserError(f"{source}: Ultralytics metadata {key!r} is not a Python literal: {meta[key][:80]!r}") from None


def describe(model: Any, source: Path) -> tuple[InputFormat, ViewPadding, UltralyticsOutputs]:
    """The input, view padding and output of the Ultralytics export `model` (an
    onnx.ModelProto read from `source`), from its metadata and outputs."""
    meta = {p.key: p.value for p in model.metadata_props}
    missing = [key for key in ("names", "stride", "task") if key not in meta]
    if missing:
        raise UserError(f"{source}: not an Ultralytics export (its metadata lacks {missing}); "
                        "describe the graph with `distill import onnx` instead")
    task = meta["task"]
    if task not in TASKS:
        raise UserError(f"{source}: Ultralytics task {task!r}; only {' and '.join(TASKS)} models can be teachers")
    names = _literal(meta, "names", source)
    if not isinstance(names, dict) or sorted(names) != list(range(len(names))) or not names:
        raise UserError(f"{source}: Ultralytics metadata 'names' is not {{0: name, 1: name, ...}}")
    joints = 0
    if task == "pose":
        shape = _literal(meta, "kpt_shape", source) if "kpt_shape" in meta else None
        if not (isinstance(shape, (list, tuple)) and len(shape) == 2 and shape[1] == 3):
            raise UserError(f"{source}: Ultralytics pose metadata 'kpt_shape' is {shape!r}; expected [joints, 3] "
                            "(x, y, confidence)")
        joints = int(shape[0])
    try:
        stride = int(meta["stride"])
    except ValueError:
        raise UserError(f"{source}: Ultralytics metadata 'stride' is {meta['stride']!r}, not a whole number") from None
    outputs = [o.name for o in model.graph.output]
    if len(outputs) != 1:
        raise UserError(f"{source}: an Ultralytics {task} export has one output, this graph has {outputs}")
    end2end = meta.get("end2end", "False") == "True"
    return (InputFormat(scale=1 / 255),
            ViewPadding(multiple=stride, value=LETTERBOX_GREY, center=True),
            UltralyticsOutputs(outputs[0], tuple(str(names[i]) for i in range(len(names))), joints, end2end))
