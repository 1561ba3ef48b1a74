"""Wrap an imported network: a graph before it, one after it, a model card, checks.

    images uint8 (B, 3, H, W) RGB
      -> [before] channel order, layout, dtype, (x * scale - mean) / std
      -> the network, untouched (its names prefixed `teacher/`)
      -> [after] boxes to xyxy input pixels, best class, label -> category index,
                 rows past a detection count and unknown labels scored 0,
                 top-K by score (K = min(topk, N))
      -> boxes (B, K, 4) float32, scores (B, K) float32, labels (B, K) int32
         [, keypoints (B, K, J, 3) float32]   or   heatmaps (B, J, h, w) float32

The three graphs are joined with `onnx.compose.merge_models`. Every description is
checked against the graph before anything is built (export.importers.graph: the input;
export.importers.decode: the outputs), and the result is opened the way `distill label`
opens a model (the engine's card check) and run once on a grey image.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.coco.schema import FLIP_PAIRS, KEYPOINT_NAMES, NUM_KEYPOINTS, SKELETON
from engine.errors import UserError
from engine.modelcard import (CARD_KEY, DETECTOR_INPUT, DETECTOR_KEYPOINTS, DETECTOR_OUTPUTS, KEYPOINT_INPUT,
                              KEYPOINT_OUTPUTS, ModelCard)
from export.importers.decode import (build_after, candidate_count, check_declared, check_outputs_described,
                                     decode_described, decode_ultralytics)
from export.importers.formats import (DetectorOutputs, HeatmapOutputs, InputFormat, LabelMap, UltralyticsOutputs,
                                      ViewPadding)
from export.importers.graph import (DTYPES, TeacherInput, default_opset, first_line, format_shape, graph_output,
                                    load_model, probe_size, run_network, teacher_input)
from export.importers.nodes import Nodes

IMPORTER_VERSION = "distill-import-1"
TEACHER_PREFIX = "teacher/"
_PRE, _POST = "distill/pre/", "distill/post/"


@dataclass
class ImportResult:
    path: Path
    card: ModelCard
    opset: int


# ---- the graph before the network --------------------------------------------------------
def _images_input(teacher: TeacherInput, name: str) -> Any:
    from onnx import TensorProto, helper

    batch = teacher.batch if teacher.batch is not None else "batch"
    height, width = teacher.size if teacher.size is not None else ("height", "width")
    return helper.make_tensor_value_info(name, TensorProto.UINT8, [batch, 3, height, width])


def build_before(b: Nodes, teacher: TeacherInput, fmt: InputFormat, images: str) -> tuple[str, str]:
    """uint8 NCHW RGB `images` -> the network's input; also the input's (H, W) as float32
    `(2,)` for decoders of normalized boxes. Returns (network input, hw)."""
    from onnx import TensorProto

    x = images
    if fmt.channels == "BGR":
        x = b.op("Gather", x, b.const([2, 1, 0], np.int64), axis=1)
    if DTYPES[teacher.elem_type] != "uint8":
        x = b.op("Cast", x, to=TensorProto.FLOAT)
        if fmt.normalizes:
            # (x * scale - mean) / std as one multiply-add per channel.
            gain = np.float32(fmt.scale) / np.asarray(fmt.std, np.float32)
            bias = -np.asarray(fmt.mean, np.float32) / np.asarray(fmt.std, np.float32)
            x = b.op("Add", b.op("Mul", x, b.const(gain.reshape(1, 3, 1, 1), np.float32)),
                     b.const(bias.reshape(1, 3, 1, 1), np.float32))
        if teacher.elem_type != TensorProto.FLOAT:
            x = b.op("Cast", x, to=teacher.elem_type)
    if fmt.layout == "NHWC":
        x = b.op("Transpose", x, perm=[0, 2, 3, 1])
    x = b.op("Identity", x, out=_PRE + "x")
    hw = b.op("Cast", b.op("Slice", b.op("Shape", images), b.const([2], np.int64), b.const([4], np.int64)),
              to=TensorProto.FLOAT, out=_PRE + "hw")
    return x, hw


# ---- joining the three graphs ------------------------------------------------------------
def _small_model(b: Nodes, inputs: list[Any], outputs: list[Any], like: Any) -> Any:
    """The graph under construction as a model of `like`'s opset and IR version (what
    onnx.compose.merge_models requires of the models it joins)."""
    from onnx import helper

    graph = helper.make_graph(b.nodes, b.prefix.strip("/").replace("/", "_"), inputs, outputs,
                              initializer=b.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", default_opset(like))],
                             ir_version=like.ir_version)


def _renamed(value_info: Any, name: str) -> Any:
    from onnx import ValueInfoProto

    copy = ValueInfoProto()
    copy.CopyFrom(value_info)
    copy.name = name
    return copy


def wrap_graph(model: Any, teacher: TeacherInput, fmt: InputFormat, input_name: str, used: list[str],
               build_after_network) -> Any:
    """The network `model` between the graph before it (reading `input_name`) and the one
    `build_after_network(nodes, inputs, hw)` builds from its outputs `used` (`inputs`: each
    output's name inside that graph; `hw`: the input's float32 (H, W)); returns the joined
    model, whose outputs are those `build_after_network` returns as value infos."""
    from onnx import TensorProto, compose, helper

    before = Nodes(_PRE)
    x, hw = build_before(before, teacher, fmt, input_name)
    network_input = next(i for i in model.graph.input if i.name == teacher.name)
    first = _small_model(before, [_images_input(teacher, input_name)],
                         [_renamed(network_input, x), helper.make_tensor_value_info(hw, TensorProto.FLOAT, [2])], model)
    network = compose.add_prefix(model, TEACHER_PREFIX)
    joined = compose.merge_models(first, network, io_map=[(x, TEACHER_PREFIX + teacher.name)])

    after = Nodes(_POST)
    inputs = {name: f"{_POST}in/{name}" for name in used}
    after_hw = _POST + "hw"
    outputs = build_after_network(after, inputs, after_hw)
    network_outputs = {o.name: o for o in model.graph.output}
    after_inputs = [_renamed(network_outputs[name], inputs[name]) for name in used]
    after_inputs.append(helper.make_tensor_value_info(after_hw, TensorProto.FLOAT, [2]))
    second = _small_model(after, after_inputs, outputs, model)
    io_map = [(TEACHER_PREFIX + name, inputs[name]) for name in used] + [(hw, after_hw)]
    wrapped = compose.merge_models(joined, second, io_map=io_map, producer_name="distill import",
                                   producer_version=IMPORTER_VERSION)
    # The network's outputs the wrapper does not read stay computed but are no outputs.
    keep = [o for o in wrapped.graph.output if o.name in {v.name for v in outputs}]
    del wrapped.graph.output[:]
    wrapped.graph.output.extend(keep)
    return wrapped


def _detector_outputs(joints: int) -> list[Any]:
    from onnx import TensorProto, helper

    specs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", "candidates", 4]),
             helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", "candidates"]),
             helper.make_tensor_value_info("labels", TensorProto.INT32, ["batch", "candidates"])]
    if joints:
        specs.append(helper.make_tensor_value_info(DETECTOR_KEYPOINTS, TensorProto.FLOAT,
                                                   ["batch", "candidates", joints, 3]))
    return specs


# ---- the two kinds of import ---------------------------------------------------------------
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _provenance(model: Any, source: Path, family: str) -> dict[str, Any]:
    import onnx

    return {"importer": IMPORTER_VERSION, "family": family, "source": source.name, "onnx": onnx.__version__,
            "opset": default_opset(model), "producer": f"{model.producer_name} {model.producer_version}".strip()}


def import_detector(source: Path, out: Path, fmt: InputFormat, padding: ViewPadding,
                    outputs: DetectorOutputs | UltralyticsOutputs, topk: int, family: str,
                    clip_after_merge: bool = False) -> ImportResult:
    """Wrap the detector `source` as the engine's detector graph and write it to `out`;
    `clip_after_merge`: the card asks for boxes clipped after the merge (as the tool that
    made the model does)."""
    if topk < 1:
        raise UserError(f"the number of candidates kept per image must be >= 1, got {topk}")
    model = load_model(source)
    teacher = teacher_input(model, fmt, source)
    if isinstance(outputs, UltralyticsOutputs):
        used, label_map, joints, post_nms = [outputs.name], None, outputs.keypoints, outputs.end2end
        categories_names = outputs.names
    else:
        used, label_map, joints, post_nms = outputs.names, outputs.label_map, 0, outputs.post_nms
        categories_names = None
    if joints and joints != NUM_KEYPOINTS:
        raise UserError(f"{source}: {joints} keypoints per person; only COCO's {NUM_KEYPOINTS} are known "
                        "(their names, flip pairs and skeleton)")
    label_map = label_map or LabelMap("names", categories_names)

    check_declared(model, outputs, source)
    got = run_network(model, teacher, fmt, probe_size(teacher, padding.multiple), source)
    check_outputs_described(got, outputs, source)
    if teacher.size is not None:
        # A fixed input fixes the number of candidates N, and ONNX Runtime then knows the
        # top-K outputs' size, min(N, topk): the card must say the same.
        topk = min(topk, candidate_count(got, outputs))

    def after(b: Nodes, inputs: dict[str, str], hw: str) -> list[Any]:
        if isinstance(outputs, UltralyticsOutputs):
            decoded = decode_ultralytics(b, outputs, inputs)
        else:
            decoded = decode_described(b, outputs, got, inputs, hw)
        build_after(b, decoded, label_map.table(), topk)
        return _detector_outputs(joints)

    wrapped = wrap_graph(model, teacher, fmt, DETECTOR_INPUT, used, after)
    keypoint_fields = ({"keypoint_names": list(KEYPOINT_NAMES), "flip_pairs": [list(p) for p in FLIP_PAIRS],
                        "skeleton": [list(e) for e in SKELETON]} if joints else {})
    card = ModelCard(task="detect", categories=label_map.categories(), input_name=DETECTOR_INPUT,
                     outputs=[*DETECTOR_OUTPUTS, *([DETECTOR_KEYPOINTS] if joints else [])],
                     strides=[padding.multiple], model_name=source.stem, topk=topk,
                     exporter=_provenance(model, source, family), checkpoint_sha256=file_sha256(source),
                     pad_multiple=padding.multiple, pad_value=padding.value,
                     pad_position="center" if padding.center else "top-left",
                     fixed_input=list(teacher.size) if teacher.size is not None else None,
                     fixed_batch=teacher.batch, post_nms=post_nms, clip_after_merge=clip_after_merge,
                     **keypoint_fields)
    return _write_checked(wrapped, card, out, source)


def import_keypoints(source: Path, out: Path, fmt: InputFormat, heatmaps: HeatmapOutputs, family: str) -> ImportResult:
    """Wrap the top-down keypoint model `source` as the engine's keypoint graph."""
    from onnx import TensorProto, helper

    model = load_model(source)
    teacher = teacher_input(model, fmt, source)
    if teacher.size is None:
        raise UserError(f"{source}: a top-down keypoint model reads crops of one fixed size, but its input's "
                        "height and width are dynamic")
    _, shape = graph_output(model, heatmaps.heatmaps, source, (4,), "heatmaps (B, J, h, w)")
    if shape is None or None in shape[1:]:
        raise UserError(f"{source}: output {heatmaps.heatmaps!r} (heatmaps) is {format_shape(shape)}: its joints, height "
                        "and width must be fixed")
    joints, h, w = shape[1:]
    (hc, wc) = teacher.size
    if joints != NUM_KEYPOINTS:
        raise UserError(f"{source}: {joints} heatmaps; only COCO's {NUM_KEYPOINTS} keypoints are known "
                        "(their names, flip pairs and skeleton)")
    if hc % h or wc % w or hc // h != wc // w:
        raise UserError(f"{source}: heatmaps {h}x{w} are not the {hc}x{wc} crop divided by one integer stride")

    def after(b: Nodes, inputs: dict[str, str], hw: str) -> list[Any]:
        b.op("Cast", inputs[heatmaps.heatmaps], to=TensorProto.FLOAT, out=KEYPOINT_OUTPUTS[0])
        return [helper.make_tensor_value_info(KEYPOINT_OUTPUTS[0], TensorProto.FLOAT, ["batch", joints, h, w])]

    wrapped = wrap_graph(model, teacher, fmt, KEYPOINT_INPUT, [heatmaps.heatmaps], after)
    card = ModelCard(task="keypoints", categories=[{"id": 1, "name": "person"}], input_name=KEYPOINT_INPUT,
                     outputs=list(KEYPOINT_OUTPUTS), strides=[hc // h], model_name=source.stem,
                     input_size=[hc, wc], keypoint_names=list(KEYPOINT_NAMES),
                     flip_pairs=[list(p) for p in FLIP_PAIRS], skeleton=[list(e) for e in SKELETON],
                     crop_padding=heatmaps.crop_padding, heatmap_decoder=heatmaps.decoder,
                     exporter=_provenance(model, source, family), checkpoint_sha256=file_sha256(source),
                     fixed_batch=teacher.batch)
    return _write_checked(wrapped, card, out, source)


# ---- writing and checking -----------------------------------------------------------------
def _write_checked(wrapped: Any, card: ModelCard, out: Path, source: Path) -> ImportResult:
    """Attach the card, check the model (ONNX's checker, then opened as the engine opens a
    model and run once on a grey input), and only then move it to `out`."""
    import onnx

    entry = next((p for p in wrapped.metadata_props if p.key == CARD_KEY), None) or wrapped.metadata_props.add()
    entry.key, entry.value = CARD_KEY, card.to_json()
    try:
        onnx.checker.check_model(wrapped)
    except onnx.checker.ValidationError as error:
        raise UserError(f"{source}: the wrapped graph fails ONNX's checks: {str(error).splitlines()[0]}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    onnx.save_model(wrapped, str(partial))
    try:
        smoke_run(partial, card, source)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return ImportResult(out, card, default_opset(wrapped))


def smoke_run(path: Path, card: ModelCard, source: Path) -> None:
    """Open `path` as `distill label` does (the card checked against the graph) and run
    it once on a grey input; one line naming the likely mistake when it fails."""
    from engine.backends.onnxruntime_backend import OnnxRuntimeBackend

    if card.task == "detect":
        h, w = card.fixed_input or probe_size(TeacherInput("", 0, None, None), card.view_multiple)
    else:
        h, w = card.input_size
    feed = np.full((1, 3, h, w), 114, np.uint8)
    with OnnxRuntimeBackend(path, providers="cpu") as backend:
        try:
            out = backend.infer({card.input_name: feed})
        except Exception as error:  # ONNX Runtime's own error types
            reason = first_line(error)
            raise UserError(f"{source}: the wrapped graph fails on a grey {h}x{w} image ({reason}): the description "
                            f"of its input or outputs does not match the graph") from None
    _check_outputs(out, card, source)


def _check_outputs(out: dict[str, np.ndarray], card: ModelCard, source: Path) -> None:
    def fail(message: str) -> None:
        raise UserError(f"{source}: the wrapped graph {message}: the description of its outputs does not match "
                        "the graph")

    if card.task != "detect":
        return
    boxes, scores, labels = out["boxes"], out["scores"], out["labels"]
    k = scores.shape[1] if scores.ndim == 2 else -1
    if boxes.shape != (1, k, 4) or labels.shape != (1, k) or not 0 < k <= card.topk:
        fail(f"gives boxes {list(boxes.shape)}, scores {list(scores.shape)}, labels {list(labels.shape)}")
    if labels.size and not (0 <= labels.min() and labels.max() < len(card.categories)):
        fail(f"gives labels outside 0..{len(card.categories) - 1}")
    if card.has_keypoints and out[DETECTOR_KEYPOINTS].shape != (1, k, len(card.keypoint_names), 3):
        fail(f"gives keypoints {list(out[DETECTOR_KEYPOINTS].shape)}")
