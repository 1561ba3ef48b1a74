"""The teachers: which backend runs a model file, and whether the two cards fit together.

`--backend auto` picks from the file: `.engine`/`.plan` -> native TensorRT, `.onnx` ->
ONNX Runtime (TensorRT, CUDA or CPU provider, whichever loads), `.pt` -> PyTorch (a
trainer checkpoint; debugging only). Backends are imported lazily so a box without torch
or tensorrt can run the others.
"""

from __future__ import annotations

from pathlib import Path

from engine.backends.base import Backend
from engine.coco.schema import PERSON_CATEGORY_ID
from engine.errors import UserError
from engine.modelcard import ModelCard

BACKENDS = ("auto", "onnxrt", "tensorrt", "torch")
_BY_SUFFIX = {".onnx": "onnxrt", ".engine": "tensorrt", ".plan": "tensorrt", ".pt": "torch", ".pth": "torch"}


def backend_kind(path: Path, choice: str) -> str:
    if choice not in BACKENDS:
        raise UserError(f"unknown backend {choice!r}: choose from {', '.join(BACKENDS)}")
    if choice != "auto":
        return choice
    kind = _BY_SUFFIX.get(path.suffix.lower())
    if kind is None:
        raise UserError(f"{path}: cannot tell the backend from the suffix {path.suffix!r}; "
                        f"use .onnx, .engine or .pt, or pass --backend")
    return kind


def make_backend(path: Path, choice: str, threads: int = 0, device: str = "auto", fp16: bool = False) -> Backend:
    """An inactive backend for the model file `path` (activate it to load the model).

    device, fp16: the torch backend's device ("auto": CUDA where present) and float16
    autocast (CUDA only, refused at activation elsewhere); fp16 is refused for the others.
    """
    if not path.is_file():
        raise UserError(f"model file not found: {path}")
    kind = backend_kind(path, choice)
    if fp16 and kind != "torch":
        raise UserError(f"--fp16 applies to the torch backend only, not {kind} ({path}); "
                        f"use --backend torch with a .pt checkpoint")
    if kind == "onnxrt":
        from engine.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, threads=threads)
    if kind == "tensorrt":
        from engine.backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path)
    try:
        from engine.backends.torch_backend import TorchBackend

        return TorchBackend.from_checkpoint(path, device=device, fp16=fp16)
    except ImportError as error:
        raise UserError(f"--backend torch needs PyTorch and the trainer ({error})") from None


def check_task(card: ModelCard, expected: str, path: Path) -> None:
    if card.task != expected:
        flag = "--detector" if expected == "detect" else "--keypoints"
        raise UserError(f"{path}: {flag} needs a {expected!r} model, its card says task {card.task!r}")


def one_stage_person_label(detector: ModelCard) -> int | None:
    """The label index whose detections a one-stage pose detector's keypoints belong to:
    COCO's person, else its only category; None for a detector without keypoints (or
    several categories, none of them person: no keypoint schema applies to them)."""
    if not detector.has_keypoints:
        return None
    ids = [int(c["id"]) for c in detector.categories]
    if PERSON_CATEGORY_ID in ids:
        return ids.index(PERSON_CATEGORY_ID)
    return 0 if len(ids) == 1 else None


def person_label_for(detector: ModelCard, keypoints: ModelCard) -> int:
    """The detector's label index for the keypoint model's person category; refuses cards
    that disagree (one line naming both sides)."""
    (person,) = keypoints.categories[:1]
    for index, category in enumerate(detector.categories):
        if category["id"] == person["id"]:
            if category["name"] != person["name"]:
                break
            return index
    names = ", ".join(f"{c['id']}:{c['name']}" for c in detector.categories)
    raise UserError(f"the keypoint model's category {person['id']}:{person['name']} is not among the "
                    f"detector's categories ({names}): the two model cards disagree on the person category")
