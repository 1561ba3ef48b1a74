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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from engine.errors import UserError
from engine.json_file import read_json_object

CARD_KEY = "distill.model_card"
CARD_FORMAT = "distill-model-card-v1"
TASKS = ("detect", "keypoints")
DETECTOR_INPUT = "images"
DETECTOR_OUTPUTS = ("boxes", "scores", "labels")
KEYPOINT_INPUT = "crops"
KEYPOINT_OUTPUTS = ("heatmaps",)
# Heatmap peak refinements the engine implements (engine.ensemble.keypoints).
HEATMAP_DECODERS = ("argmax", "quarter", "dark", "window")
# Dtypes as ONNX Runtime spells them; TensorRT and numpy names are mapped onto these.
_OUTPUT_DTYPES = {
    "boxes": ("float32",),
    "scores": ("float32",),
    "labels": ("int32",),
    "heatmaps": ("float32", "float16"),
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

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def sha256(self) -> str:
        """Hash of the card's canonical JSON: two models with equal hashes are interchangeable
        for the engine (same checkpoint, categories, geometry)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @property
    def max_stride(self) -> int:
        return max(self.strides)

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
        if self.task == "detect":
            if self.input_name != DETECTOR_INPUT or tuple(self.outputs) != DETECTOR_OUTPUTS:
                fail(f"detector must read {DETECTOR_INPUT!r} and write {list(DETECTOR_OUTPUTS)}")
            if not isinstance(self.topk, int) or self.topk <= 0:
                fail(f"topk {self.topk!r} must be a positive integer for a detector")
        else:
            if self.input_name != KEYPOINT_INPUT or tuple(self.outputs) != KEYPOINT_OUTPUTS:
                fail(f"keypoint model must read {KEYPOINT_INPUT!r} and write {list(KEYPOINT_OUTPUTS)}")
            size = self.input_size
            if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
                fail(f"input_size {size!r} must be [Hc, Wc]")
            if not self.keypoint_names:
                fail("keypoint_names is empty")
            joints = len(self.keypoint_names)
            for left, right in self.flip_pairs:
                if not (0 <= left < joints and 0 <= right < joints):
                    fail(f"flip pair {[left, right]} is outside 0..{joints - 1}")
            if not (isinstance(self.crop_padding, (int, float)) and self.crop_padding >= 1.0):
                fail(f"crop_padding {self.crop_padding!r} must be a number >= 1")
            if self.heatmap_decoder not in HEATMAP_DECODERS:
                fail(f"heatmap_decoder {self.heatmap_decoder!r} is not one of {list(HEATMAP_DECODERS)}")
            for a, b in self.skeleton:
                if not (1 <= a <= joints and 1 <= b <= joints):
                    fail(f"skeleton edge {[a, b]} is outside 1..{joints} (1-based)")


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
    expected = {"boxes": (None, card.topk, 4), "scores": (None, card.topk), "labels": (None, card.topk)}
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
