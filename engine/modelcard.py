"""The model card: the one JSON document that says what an exported graph is and expects.

A card travels inside an ONNX file (`metadata_props["distill.model_card"]`) and in a
`.json` sidecar beside a TensorRT engine (under the key `model_card`). The engine reads
nothing about a model from its file name or from flags: everything it needs to feed the
graph and to interpret its outputs is here, and `validate_card` checks the card against
the graph's real inputs and outputs before anything runs.

Pure Python (no onnx, no torch): graph signatures come from whichever backend opened the
model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from engine.json_file import read_json_object
from engine.errors import UserError

CARD_KEY = "distill.model_card"
CARD_FORMAT = "distill-model-card-v1"
TASKS = ("detect", "keypoints")
DETECTOR_INPUT = "images"
DETECTOR_OUTPUTS = ("boxes", "scores", "labels")
# A one-stage pose detector's extra output: (B, K, J, 3) x, y in input pixels, confidence.
DETECTOR_KEYPOINTS = "keypoints"
KEYPOINT_INPUT = "crops"
KEYPOINT_OUTPUTS = ("heatmaps",)
# Heatmap peak refinements the engine implements (engine.ensemble.keypoints).
HEATMAP_DECODERS = ("argmax", "quarter", "dark", "window")
# Where a view sits in its padded input: our exports' top-left corner, or centred as
# Ultralytics' letterbox places it.
PAD_POSITIONS = ("top-left", "center")
# Dtypes as ONNX Runtime spells them; TensorRT and numpy names are mapped onto these.
_OUTPUT_DTYPES = {
    "boxes": ("float32",),
    "scores": ("float32",),
    "labels": ("int32",),
    "heatmaps": ("float32", "float16"),
    "keypoints": ("float32",),
}


class ModelCardError(UserError):
    """A model without a card, with a malformed card, or whose card contradicts its graph."""


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: `shape` holds ints for fixed dims, None for dynamic ones."""

    name: str
    dtype: str  # numpy spelling: "uint8", "float32", "int32", ...
    shape: tuple[int | None, ...]


@dataclass(frozen=True)
class GraphSignature:
    """The inputs and outputs a backend found in the model file itself."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass
class ModelCard:
    """What an exported model is. Field meanings follow DESIGN.md, "Model card"."""

    task: str
    categories: list[dict[str, Any]]  # label index order: [{"id": COCO id, "name": str}]
    input_name: str
    outputs: list[str]
    strides: list[int]  # detector: feature strides; keypoints: [heatmap stride]
    model_name: str = ""
    input_layout: str = "NCHW"
    input_dtype: str = "uint8"
    pixel_format: str = "RGB"
    normalization: str = "in-graph"
    input_size: list[int] | None = None  # keypoints: fixed crop [Hc, Wc]
    topk: int | None = None  # detector: candidates per image
    keypoint_names: list[str] = field(default_factory=list)
    flip_pairs: list[list[int]] = field(default_factory=list)  # 0-based
    skeleton: list[list[int]] = field(default_factory=list)  # 1-based, COCO file format
    # Keypoints: how the crop box grows from a person box (engine.crops.person_crop_box)
    # and how heatmap peaks are refined (engine.ensemble.keypoints.REFINEMENTS; "argmax"
    # is the plain integer peak). A card from elsewhere without them gets these defaults.
    crop_padding: float = 1.25
    heatmap_decoder: str = "quarter"
    exporter: dict[str, Any] = field(default_factory=dict)  # versions, opset
    checkpoint_sha256: str = ""
    format: str = CARD_FORMAT
    # What a graph from elsewhere (`distill import`) needs of the engine's views; our own
    # exports keep the defaults. Written only where they differ from the defaults
    # (`to_json`), so older cards read, and hash, as they always did.
    pad_multiple: int | None = None  # views padded to multiples of this (None: the largest stride; 1: any size)
    pad_value: int = 0  # grey level of the padding (Ultralytics letterboxes with 114)
    pad_position: str = "top-left"  # PAD_POSITIONS: where the resized image sits in the padded view
    fixed_input: list[int] | None = None  # detector: the only input [H, W] the graph takes; views padded to it
    fixed_batch: int | None = None  # 1: the graph takes one image (or crop) per call; None: any batch
    post_nms: bool = False  # detector: outputs after the model's own NMS (the engine still merges the passes)
    clip_after_merge: bool = False  # detector: boxes clipped to the image after the merge, not per view (Ultralytics)

    def to_json(self) -> str:
        data = asdict(self)
        for name in _IMPORT_FIELDS:
            if data[name] == _FIELD_DEFAULTS[name]:
                del data[name]
        return json.dumps(data, sort_keys=True)

    def sha256(self) -> str:
        """Hash of the card's canonical JSON: two models with equal hashes are interchangeable
        for the engine (same checkpoint, categories, geometry)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @property
    def max_stride(self) -> int:
        return max(self.strides)

    @property
    def view_multiple(self) -> int:
        """A detector's views are padded to multiples of this many px."""
        return self.pad_multiple if self.pad_multiple is not None else self.max_stride

    @property
    def has_keypoints(self) -> bool:
        """A detector that also outputs each candidate's keypoints (one-stage pose)."""
        return self.task == "detect" and DETECTOR_KEYPOINTS in self.outputs

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> "ModelCard":
        """Parse and check a card's own consistency; `source` names the file in errors."""
        if not isinstance(data, Mapping):
            raise ModelCardError(f"{source}: model card is not a JSON object")
        if data.get("format") != CARD_FORMAT:
            raise ModelCardError(
                f"{source}: model card format {data.get('format')!r}, expected {CARD_FORMAT!r}"
            )
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelCardError(f"{source}: model card has unknown fields {unknown}")
        missing = [name for name in ("task", "categories", "input_name", "outputs", "strides")
                   if name not in data]
        if missing:
            raise ModelCardError(f"{source}: model card lacks fields {missing}")
        card = cls(**dict(data))
        card._check_fields(source)
        return card

    @classmethod
    def from_json(cls, text: str, source: str) -> "ModelCard":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ModelCardError(f"{source}: model card is not valid JSON ({error})") from None
        return cls.from_dict(data, source)

    def _check_fields(self, source: str) -> None:
        def fail(message: str) -> None:
            raise ModelCardError(f"{source}: model card {message}")

        if self.task not in TASKS:
            fail(f"task {self.task!r} is not one of {list(TASKS)}")
        if not self.categories or not all(
            isinstance(c, Mapping) and isinstance(c.get("id"), int) and isinstance(c.get("name"), str)
            for c in self.categories
        ):
            fail("categories must be a non-empty list of {'id': int, 'name': str}")
        if not self.strides or not all(isinstance(s, int) and s > 0 for s in self.strides):
            fail(f"strides {self.strides!r} must be positive integers")
        if (self.input_layout, self.input_dtype, self.pixel_format) != ("NCHW", "uint8", "RGB"):
            fail(f"input {self.input_layout}/{self.input_dtype}/{self.pixel_format} is not NCHW/uint8/RGB")
        if self.normalization != "in-graph":
            fail(f"normalization {self.normalization!r} is not supported (only 'in-graph')")
        self._check_geometry(fail)
        if self.task == "detect":
            allowed = (list(DETECTOR_OUTPUTS), [*DETECTOR_OUTPUTS, DETECTOR_KEYPOINTS])
            if self.input_name != DETECTOR_INPUT or list(self.outputs) not in allowed:
                fail(f"detector must read {DETECTOR_INPUT!r} and write {list(DETECTOR_OUTPUTS)} "
                     f"(and {DETECTOR_KEYPOINTS!r} for a one-stage pose detector)")
            if not isinstance(self.topk, int) or self.topk <= 0:
                fail(f"topk {self.topk!r} must be a positive integer for a detector")
            if self.has_keypoints:
                self._check_keypoint_schema(fail)
        else:
            if self.input_name != KEYPOINT_INPUT or tuple(self.outputs) != KEYPOINT_OUTPUTS:
                fail(f"keypoint model must read {KEYPOINT_INPUT!r} and write {list(KEYPOINT_OUTPUTS)}")
            if not _is_size(self.input_size):
                fail(f"input_size {self.input_size!r} must be [Hc, Wc]")
            if self.fixed_input is not None:
                fail("fixed_input is for detectors; a keypoint model's crop size is input_size")
            self._check_keypoint_schema(fail)
            if not (isinstance(self.crop_padding, (int, float)) and self.crop_padding >= 1.0):
                fail(f"crop_padding {self.crop_padding!r} must be a number >= 1")
            if self.heatmap_decoder not in HEATMAP_DECODERS:
                fail(f"heatmap_decoder {self.heatmap_decoder!r} is not one of {list(HEATMAP_DECODERS)}")

    def _check_keypoint_schema(self, fail) -> None:
        if not self.keypoint_names:
            fail("keypoint_names is empty")
        joints = len(self.keypoint_names)
        for left, right in self.flip_pairs:
            if not (0 <= left < joints and 0 <= right < joints):
                fail(f"flip pair {[left, right]} is outside 0..{joints - 1}")
        for a, b in self.skeleton:
            if not (1 <= a <= joints and 1 <= b <= joints):
                fail(f"skeleton edge {[a, b]} is outside 1..{joints} (1-based)")

    def _check_geometry(self, fail) -> None:
        """The fields of graphs from elsewhere (padding, fixed sizes, post-NMS)."""
        if self.pad_multiple is not None and not _is_positive_int(self.pad_multiple):
            fail(f"pad_multiple {self.pad_multiple!r} must be a positive integer")
        if not (_is_int(self.pad_value) and 0 <= self.pad_value <= 255):
            fail(f"pad_value {self.pad_value!r} must be a grey level 0..255")
        if self.pad_position not in PAD_POSITIONS:
            fail(f"pad_position {self.pad_position!r} is not one of {list(PAD_POSITIONS)}")
        if self.fixed_input is not None and not _is_size(self.fixed_input):
            fail(f"fixed_input {self.fixed_input!r} must be [H, W]")
        if self.fixed_batch not in (None, 1) or isinstance(self.fixed_batch, bool):
            # The last batch of a view shape is short, so only a batch of 1 fits every call.
            fail(f"fixed_batch {self.fixed_batch!r} must be 1 or null (any batch size)")
        for name in ("post_nms", "clip_after_merge"):
            if not isinstance(getattr(self, name), bool):
                fail(f"{name} {getattr(self, name)!r} must be true or false")


_IMPORT_FIELDS = ("pad_multiple", "pad_value", "pad_position", "fixed_input", "fixed_batch", "post_nms",
                  "clip_after_merge")
_FIELD_DEFAULTS = {f.name: f.default for f in fields(ModelCard) if f.name in _IMPORT_FIELDS}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_int(value: Any) -> bool:
    return _is_int(value) and value > 0


def _is_size(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_is_positive_int(v) for v in value)


def card_from_metadata(metadata: Mapping[str, str], source: str) -> ModelCard:
    """The card stored in a model's metadata map (ONNX `metadata_props`)."""
    if CARD_KEY not in metadata:
        raise ModelCardError(
            f"{source}: model has no model card (metadata key {CARD_KEY!r} is missing); "
            "export it with `distill export onnx`"
        )
    return ModelCard.from_json(metadata[CARD_KEY], source)


def read_sidecar(engine_path: str | Path) -> dict[str, Any]:
    """The JSON sidecar of a TensorRT engine (`M.engine` -> `M.json`), card included."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise ModelCardError(f"{engine_path}: no sidecar {path.name} beside the engine (no model card)")
    try:
        data = read_json_object(path)
    except (OSError, ValueError) as error:
        raise ModelCardError(f"{path}: cannot read sidecar: {error}") from None
    if "model_card" not in data:
        raise ModelCardError(f"{path}: sidecar has no 'model_card'")
    data["model_card"] = ModelCard.from_dict(data["model_card"], str(path))
    return data


def sidecar_path(engine_path: str | Path) -> Path:
    return Path(engine_path).with_suffix(".json")


def validate_card(card: ModelCard, graph: GraphSignature, source: str) -> None:
    """Refuse a graph whose inputs or outputs contradict its card, naming the mismatch."""

    def fail(message: str) -> None:
        raise ModelCardError(f"{source}: model card disagrees with the graph: {message}")

    if len(graph.inputs) != 1:
        fail(f"graph has inputs {[t.name for t in graph.inputs]}, card expects only {card.input_name!r}")
    (inp,) = graph.inputs
    if inp.name != card.input_name:
        fail(f"graph input is {inp.name!r}, card says {card.input_name!r}")
    if inp.dtype != card.input_dtype:
        fail(f"input {inp.name!r} is {inp.dtype}, card says {card.input_dtype}")
    if len(inp.shape) != 4 or inp.shape[1] not in (3, None):
        fail(f"input {inp.name!r} has shape {_fmt(inp.shape)}, card says NCHW with 3 channels")
    if inp.shape[0] != card.fixed_batch:
        fail(f"input {inp.name!r} has shape {_fmt(inp.shape)}, card says "
             + ("any batch size" if card.fixed_batch is None else f"batches of {card.fixed_batch}"))
    names = [t.name for t in graph.outputs]
    if sorted(names) != sorted(card.outputs):
        fail(f"graph outputs are {names}, card says {card.outputs}")
    outputs = {t.name: t for t in graph.outputs}
    for name, spec in outputs.items():
        if spec.dtype not in _OUTPUT_DTYPES[name]:
            fail(f"output {name!r} is {spec.dtype}, expected {' or '.join(_OUTPUT_DTYPES[name])}")
    if card.task == "detect":
        _check_detector(card, inp, outputs, fail)
    else:
        _check_keypoints(card, inp, outputs["heatmaps"], fail)


def _check_detector(card: ModelCard, inp: TensorSpec, outputs: dict[str, TensorSpec], fail) -> None:
    size = tuple(card.fixed_input) if card.fixed_input is not None else (None, None)
    if inp.shape[2:] != size:
        fail(f"input {inp.name!r} has shape {_fmt(inp.shape)}, card says "
             + ("any height and width" if card.fixed_input is None else f"only {card.fixed_input[0]}x{card.fixed_input[1]}"))
    expected = {"boxes": (None, card.topk, 4), "scores": (None, card.topk), "labels": (None, card.topk)}
    if card.has_keypoints:
        expected[DETECTOR_KEYPOINTS] = (None, card.topk, len(card.keypoint_names), 3)
    for name, want in expected.items():
        got = outputs[name].shape
        if len(got) != len(want) or any(w is not None and g is not None and g != w
                                        for g, w in zip(got[1:], want[1:])):
            fail(f"output {name!r} has shape {_fmt(got)}, card implies {_fmt(want)}")


def _check_keypoints(card: ModelCard, inp: TensorSpec, heatmaps: TensorSpec, fail) -> None:
    hc, wc = card.input_size or (0, 0)
    if inp.shape[2:] != (hc, wc):
        fail(f"input {inp.name!r} has shape {_fmt(inp.shape)}, card's input_size is {[hc, wc]}")
    stride = card.strides[0]
    want = (None, len(card.keypoint_names), hc // stride, wc // stride)
    got = heatmaps.shape
    if len(got) != 4 or any(g is not None and g != w for g, w in zip(got[1:], want[1:])):
        fail(f"output 'heatmaps' has shape {_fmt(got)}, card implies {_fmt(want)} "
             f"({len(card.keypoint_names)} keypoints, stride {stride})")


def _fmt(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
