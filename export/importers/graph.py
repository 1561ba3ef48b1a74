"""The network to import, read: its opset, its one image input, its declared outputs,
and what it really computes on a grey test image (the dims a graph leaves dynamic are
only known once it runs). One-line errors for everything a description can get wrong
about the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import UserError
from export.importers.formats import InputFormat
from export.importers.nodes import MIN_OPSET

DTYPES = {1: "float32", 2: "uint8", 10: "float16", 11: "float64"}  # onnx.TensorProto element types


@dataclass(frozen=True)
class TeacherInput:
    """The network's one input as the graph declares it: element type (onnx enum), and
    per axis of `InputFormat.layout` the batch, height and width (None: dynamic)."""

    name: str
    elem_type: int
    batch: int | None
    size: tuple[int, int] | None  # fixed (H, W), or None for any


def load_model(path: Path) -> Any:
    """The ONNX model at `path`; one-line errors for a missing or unreadable file or an
    opset the wrapper graphs cannot join."""
    import onnx

    if not path.is_file():
        raise UserError(f"ONNX model not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as error:  # protobuf's DecodeError, onnx's own errors
        raise UserError(f"{path}: not an ONNX model ({str(error).splitlines()[0] if str(error) else error})") from None
    opset = default_opset(model)
    if opset < MIN_OPSET:
        raise UserError(f"{path}: opset {opset} is older than {MIN_OPSET}, the oldest the import supports; "
                        f"re-export the model with a newer opset")
    return model


def default_opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _shape(value_info: Any) -> tuple[int | None, ...] | None:
    """Dims of a value info (None per dynamic dim), or None when its rank is unknown."""
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)


def format_shape(shape: tuple[int | None, ...] | None) -> str:
    return "of unknown rank" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _graph_inputs(model: Any) -> list[Any]:
    initializers = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def graph_output(model: Any, name: str, source: Path, ranks: tuple[int, ...], what: str) -> tuple[Any, tuple]:
    """The graph output `name` and its shape, refused unless its rank is one of `ranks`."""
    outputs = {o.name: o for o in model.graph.output}
    if name not in outputs:
        raise UserError(f"{source}: the graph has no output {name!r} ({what}); its outputs are {list(outputs)}")
    shape = _shape(outputs[name])
    if shape is not None and len(shape) not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise UserError(f"{source}: output {name!r} ({what}) is {format_shape(shape)}, expected rank {want}")
    return outputs[name], shape


def teacher_input(model: Any, fmt: InputFormat, source: Path) -> TeacherInput:
    """The network's input described by `fmt`, checked against the graph."""
    inputs = _graph_inputs(model)
    names = [i.name for i in inputs]
    if fmt.name is not None and fmt.name not in names:
        raise UserError(f"{source}: the graph has no input {fmt.name!r}; its inputs are {names}")
    if len(inputs) != 1:
        raise UserError(f"{source}: the graph has inputs {names}; only a graph of one image input can be imported")
    (inp,) = inputs
    elem = inp.type.tensor_type.elem_type
    if elem not in DTYPES:
        raise UserError(f"{source}: input {inp.name!r} has element type {elem}; uint8 and float inputs are supported")
    shape = _shape(inp)
    if shape is None or len(shape) != 4:
        raise UserError(f"{source}: input {inp.name!r} is {format_shape(shape)}, not an image batch of rank 4")
    channel_axis, other = (1, 3) if fmt.layout == "NCHW" else (3, 1)
    if shape[channel_axis] != 3 and (shape[channel_axis] is not None or shape[other] == 3):
        hint = f" (it looks {'NHWC' if fmt.layout == 'NCHW' else 'NCHW'})" if shape[other] == 3 else ""
        raise UserError(f"{source}: input {inp.name!r} is {format_shape(shape)}, whose {fmt.layout} channel axis does not "
                        f"hold 3 channels{hint}")
    if DTYPES[elem] == "uint8" and fmt.normalizes:
        raise UserError(f"{source}: input {inp.name!r} is uint8, so the graph normalizes itself: "
                        "a scale, mean or std applies to float inputs only")
    if shape[0] not in (None, 1):
        raise UserError(f"{source}: input {inp.name!r} is {format_shape(shape)}, a fixed batch of {shape[0]}; "
                        "export it with a dynamic batch (or a batch of 1)")
    h, w = (shape[2], shape[3]) if fmt.layout == "NCHW" else (shape[1], shape[2])
    if (h is None) != (w is None):
        raise UserError(f"{source}: input {inp.name!r} is {format_shape(shape)}: fix both height and width or neither")
    return TeacherInput(inp.name, elem, shape[0], None if h is None else (h, w))


def probe_size(teacher: TeacherInput, multiple: int) -> tuple[int, int]:
    """(H, W) of the grey test image: the fixed size, else a small landscape view."""
    side = multiple if multiple > 1 else 32
    return teacher.size or (2 * side, 3 * side)


def run_network(model: Any, teacher: TeacherInput, fmt: InputFormat, size: tuple[int, int],
                source: Path) -> dict[str, np.ndarray]:
    """The network's own outputs on a grey image of `size` (H, W), made as the graph
    before it makes them: the real output shapes, which the graph may leave dynamic."""
    import onnxruntime as ort

    grey = 114.0 * fmt.scale
    value = (grey - np.asarray(fmt.mean, np.float64)) / np.asarray(fmt.std, np.float64)  # per channel, (3,)
    image = np.broadcast_to(value.reshape(1, 3, 1, 1), (1, 3, *size))
    if fmt.layout == "NHWC":
        image = image.transpose(0, 2, 3, 1)
    feed = np.ascontiguousarray(image).astype(DTYPES[teacher.elem_type])
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as error:  # ONNX Runtime's own error types
        raise UserError(f"{source}: ONNX Runtime cannot load the network ({first_line(error)})") from None
    names = [o.name for o in session.get_outputs()]
    try:
        return dict(zip(names, session.run(names, {teacher.name: feed})))
    except Exception as error:
        reason = first_line(error)
        raise UserError(f"{source}: the network fails on a grey {size[0]}x{size[1]} {fmt.layout} image ({reason}): "
                        "the description of its input does not match the graph") from None


def first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
