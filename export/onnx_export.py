"""Checkpoint -> ONNX: flat export wrappers, torch.onnx.export, BN folding, checks, card.

Exporter choice: torch 2.13's `torch.onnx.export` defaults to the dynamo exporter
(torch.export + onnxscript); `dynamo=False` still exists but is the deprecated TorchScript
path and warns on every call. We use the dynamo exporter with `dynamic_shapes`: it traces
the models' symbolic sizes (the FCOS clip limits and location grids come from the input's
shape) into real Shape ops, where TorchScript tracing could bake them in as constants.
It needs `onnxscript` (in the `export` extra). It does not fold eval-mode BatchNorm, so
`onnx_passes.fold_batch_norm` does.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from engine.errors import UserError
from engine.modelcard import CARD_KEY, DETECTOR_INPUT, DETECTOR_OUTPUTS, KEYPOINT_INPUT, KEYPOINT_OUTPUTS, ModelCard
from export import onnx_passes
from export.trt_plan import file_sha256

EXPORTER_VERSION = "distill-export-1"
HEATMAP_STRIDE = 4


class DetectorExport(nn.Module):
    """Flat detector: `images` uint8 (B,3,H,W) RGB -> boxes (B,K,4) float32 xyxy input
    pixels, scores (B,K) float32, labels (B,K) int32 class indices."""

    def __init__(self, model: nn.Module, topk: int) -> None:
        super().__init__()
        self.model = model
        self.topk = int(topk)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Only bytes cross the bus; the model normalizes in-graph.
        boxes, scores, labels = self.model.candidates(images.to(torch.float32), self.topk)
        return boxes, scores, labels.to(torch.int32)


class KeypointExport(nn.Module):
    """Flat keypoint model: `crops` uint8 (B,3,Hc,Wc) RGB -> heatmaps (B,J,Hc/4,Wc/4) float32."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.model(crops.to(torch.float32))


@dataclass
class ExportResult:
    path: Path
    card: ModelCard
    batchnorm_folded: int
    num_nodes: int
    opset: int


def card_for_checkpoint(ckpt: dict, model: nn.Module, topk: int, checkpoint_sha256: str) -> ModelCard:
    """The model card for a trainer checkpoint and the module rebuilt from it."""
    common = dict(categories=[{"id": int(c["id"]), "name": str(c["name"])} for c in ckpt.get("categories", [])],
                  model_name=str(ckpt.get("model_name", "")), checkpoint_sha256=checkpoint_sha256)
    if ckpt["task"] == "detect":
        return ModelCard(task="detect", input_name=DETECTOR_INPUT, outputs=list(DETECTOR_OUTPUTS),
                         strides=[int(s) for s in model.strides], topk=int(topk), **common)
    return ModelCard(task="keypoints", input_name=KEYPOINT_INPUT, outputs=list(KEYPOINT_OUTPUTS),
                     strides=[HEATMAP_STRIDE], input_size=[int(v) for v in model.input_size],
                     keypoint_names=list(ckpt["keypoint_names"]),
                     flip_pairs=[list(map(int, p)) for p in ckpt["flip_pairs"]],
                     skeleton=[list(map(int, e)) for e in ckpt["skeleton"]],
                     crop_padding=float(ckpt["config"].get("padding", 1.25)),
                     # The trainer's heatmaps are softmax distributions: their local mean
                     # (`window`) beat `quarter` by 0.05 keypoint AP (engine.ensemble.keypoints).
                     heatmap_decoder="window", **common)


def wrap_checkpoint(checkpoint: str | Path, topk: int = 1000) -> tuple[nn.Module, ModelCard]:
    """Load a trainer checkpoint; return its flat export wrapper (eval mode) and card."""
    from trainer.checkpoint import build_model_from_checkpoint, load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    if ckpt.get("task") not in ("detect", "keypoints"):
        raise UserError(f"{checkpoint}: unknown task {ckpt.get('task')!r}")
    model = build_model_from_checkpoint(ckpt).eval()
    card = card_for_checkpoint(ckpt, model, topk, file_sha256(checkpoint))
    wrapper = DetectorExport(model, topk) if card.task == "detect" else KeypointExport(model)
    return wrapper.eval(), card


def export_module(wrapper: nn.Module, card: ModelCard, out: str | Path, opset: int | None = None) -> ExportResult:
    """Export a flat wrapper to `out` with dynamic axes, fold BN, check, attach the card.

    Detector: dynamic batch, height and width (multiples of the largest stride).
    Keypoints: dynamic batch; height and width fixed to the card's input_size.
    """
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=1024)
    if card.task == "detect":
        stride = card.max_stride
        example = torch.randint(0, 256, (2, 3, 2 * stride, 3 * stride), dtype=torch.uint8)
        height = torch.export.Dim("h_blocks", min=1, max=8192 // stride) * stride
        width = torch.export.Dim("w_blocks", min=1, max=8192 // stride) * stride
        dynamic = {card.input_name: {0: batch, 2: height, 3: width}}
        names = {0: "batch", 2: "height", 3: "width"}
    else:
        hc, wc = card.input_size or (0, 0)
        example = torch.randint(0, 256, (2, 3, hc, wc), dtype=torch.uint8)
        dynamic = {card.input_name: {0: batch}}
        names = {0: "batch"}
    # The exporter logs one warning per torchvision op it cannot register; our graphs use
    # none of them, and torchvision has no CPU wheel here, so the lines are only noise.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(wrapper.eval(), (example,), None, input_names=[card.input_name],
                                    output_names=list(card.outputs), dynamic_shapes=dynamic,
                                    opset_version=opset, dynamo=True, verbose=False, external_data=False)
    model = program.model_proto
    folded = onnx_passes.fold_batch_norm(model)
    onnx_passes.rename_dims(model, names, card.input_name)
    opset_used = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    card.exporter = {"exporter": EXPORTER_VERSION, "torch": torch.__version__, "onnx": onnx.__version__,
                     "opset": int(opset_used), "torch_exporter": "dynamo"}
    onnx_passes.set_metadata(model, CARD_KEY, card.to_json())
    model.producer_name = "distill"
    try:
        onnx.checker.check_model(model, full_check=True)
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise RuntimeError(f"exported graph failed ONNX checks: {error}") from error
    onnx.save_model(model, str(out))
    return ExportResult(out, card, folded, len(model.graph.node), int(opset_used))


def export_checkpoint(checkpoint: str | Path, out: str | Path, topk: int = 1000,
                      opset: int | None = None) -> tuple[ExportResult, nn.Module]:
    """`distill export onnx`'s work minus parity: returns the result and the eager wrapper."""
    if topk <= 0:
        raise UserError(f"--topk must be positive, got {topk}")
    wrapper, card = wrap_checkpoint(checkpoint, topk)
    return export_module(wrapper, card, out, opset), wrapper
