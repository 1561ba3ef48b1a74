"""PyTorch backend: runs the eager module the graph came from, on CUDA when present.

It takes a flat export wrapper (bytes in, named tensors out, see `export.onnx_export`) and
its model card, or rebuilds both from a trainer checkpoint. A box without TensorRT still
uses its GPU this way: `device="auto"` picks CUDA where `torch.cuda.is_available()`,
and `fp16=True` runs the convolutions under `torch.autocast` in float16 (CUDA only).
Outputs are host arrays of the card's dtypes (float32 boxes, scores and heatmaps, int32
labels) whatever the precision inside.

`infer` also takes a torch tensor already on the device (`engine.label.device_views`
makes the views there), so only the original image's bytes cross the bus.

torch is imported in `activate`, so this module is importable on a torch-free labeling
box, and constructing a backend touches no GPU.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from engine.backends.base import Backend
from engine.errors import UserError
from engine.modelcard import GraphSignature, ModelCard, TensorSpec

DEVICES = "auto, cpu, cuda or cuda:N"
_DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device(device: str, fp16: bool) -> None:
    """Refuse a malformed device string, or fp16 on an explicit CPU, before any import."""
    if not _DEVICE_PATTERN.fullmatch(device):
        raise UserError(f"unknown torch device {device!r}: use {DEVICES}")
    if fp16 and device == "cpu":
        raise UserError("--fp16 needs CUDA: the torch backend runs fp16 autocast on CUDA only, not on the CPU")


def resolve_device(torch: Any, device: str, fp16: bool) -> Any:
    """The `torch.device` for `device` ("auto" -> cuda where available, else cpu);
    refuses CUDA requests, and fp16, where CUDA is absent (one-line UserError)."""
    check_device(device, fp16)
    cuda = torch.cuda.is_available()
    if device == "auto":
        device = "cuda" if cuda else "cpu"
    if device.startswith("cuda") and not cuda:
        raise UserError(f"torch device {device!r} requested but CUDA is not available "
                        f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})")
    if fp16 and not device.startswith("cuda"):
        raise UserError(f"--fp16 needs CUDA, and torch {torch.__version__} sees no CUDA device "
                        f"(built for CUDA {torch.version.cuda})")
    return torch.device(device)


class TorchBackend(Backend):
    """Runs `module(input) -> tuple of tensors` on `device`.

    module: a torch.nn.Module taking one uint8 NCHW tensor and returning the card's outputs
    in order; card: its model card. device: "cpu" (the default, so parity references stay
    on the CPU), "auto", "cuda" or "cuda:N". fp16: float16 autocast (CUDA only).
    threads: torch intra-op threads on the CPU (0 keeps torch's). On CUDA, host feeds go
    through a reused page-locked buffer (see `_to_device`).
    """

    name = "torch"

    def __init__(self, module: Any, card: ModelCard, device: str = "cpu", threads: int = 0,
                 fp16: bool = False) -> None:
        super().__init__()
        check_device(device, fp16)
        self.module = module
        self.card = card
        self.device = device
        self.fp16 = fp16
        self.threads = threads
        self.torch_device: Any = None  # the resolved torch.device, set by activate
        self._staging: Any = None

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, topk: int = 1000, device: str = "auto",
                        fp16: bool = False) -> "TorchBackend":
        """Rebuild the export wrapper and card from a trainer checkpoint (needs torch + trainer)."""
        import torch

        resolve_device(torch, device, fp16)  # refuse (no CUDA for fp16, say) before the slow rebuild
        from export.onnx_export import wrap_checkpoint  # lazy: export depends on torch

        module, card = wrap_checkpoint(checkpoint, topk=topk)
        return cls(module, card, device=device, fp16=fp16)

    def _activate_impl(self) -> None:
        import torch

        self._torch = torch
        self.torch_device = resolve_device(torch, self.device, self.fp16)
        if self.torch_device.type == "cpu" and self.threads:
            torch.set_num_threads(self.threads)
        if self.torch_device.type == "cuda":
            # Views fall into few padded shapes (one per scale and aspect), so cuDNN's
            # per-shape algorithm search is paid once per shape and then reused.
            torch.backends.cudnn.benchmark = True
        self.module = self.module.to(self.torch_device).eval()
        card = self.card
        assert card is not None
        if card.task == "detect":
            outputs = (TensorSpec("boxes", "float32", (None, card.topk, 4)),
                       TensorSpec("scores", "float32", (None, card.topk)),
                       TensorSpec("labels", "int32", (None, card.topk)))
            inp = TensorSpec(card.input_name, "uint8", (None, 3, None, None))
        else:
            hc, wc = card.input_size or (0, 0)
            stride = card.strides[0]
            outputs = (TensorSpec("heatmaps", "float32",
                                  (None, len(card.keypoint_names), hc // stride, wc // stride)),)
            inp = TensorSpec(card.input_name, "uint8", (None, 3, hc, wc))
        self.signature = GraphSignature((inp,), outputs)

    @property
    def runs_on_cpu(self) -> bool:
        return self.torch_device is not None and self.torch_device.type == "cpu"

    def _to_device(self, value: Any) -> Any:
        """A feed (`(B, 3, H, W)` uint8 host array, or a tensor) as a tensor on the device.

        On CUDA a host array is copied into a reused page-locked buffer and sent with
        `non_blocking`: pageable memory would make the driver stage it through its own
        bounce buffer while the CPU waits; from pinned memory it is a DMA, and the CPU
        goes on queueing the model's kernels behind it on the same stream. Reusing the
        buffer is safe because every `infer` ends by copying its outputs to the host,
        which waits for the stream, so the previous upload has finished.
        """
        torch = self._torch
        if isinstance(value, torch.Tensor):
            return value.to(self.torch_device, non_blocking=True)
        host = torch.from_numpy(np.ascontiguousarray(value))
        if self.torch_device.type != "cuda":
            return host.to(self.torch_device)
        count = host.numel()
        if self._staging is None or self._staging.numel() < count:
            self._staging = torch.empty(count, dtype=host.dtype, pin_memory=True)
        staging = self._staging[:count].view(host.shape)
        staging.copy_(host)
        return staging.to(self.torch_device, non_blocking=True)

    def _infer_impl(self, feed: Mapping[str, Any]) -> dict[str, np.ndarray]:
        torch = self._torch
        assert self.card is not None and self.signature is not None
        images = self._to_device(feed[self.card.input_name])
        # Autocast runs convolutions and matmuls in float16 and keeps the ops it lists as
        # unsafe (exp, GroupNorm, ...) in float32; disabled it is a no-op.
        autocast = torch.autocast(device_type=self.torch_device.type, dtype=torch.float16, enabled=self.fp16)
        with torch.inference_mode(), autocast:
            values = self.module(images)
        if not isinstance(values, (tuple, list)):
            values = (values,)
        result = {}
        for spec, value in zip(self.signature.outputs, values):
            # Cast on the device (fp16 scores come back as float32, labels as int32), then
            # one copy each; the first `.cpu()` is the sync point with the stream.
            value = value.to(getattr(torch, spec.dtype))
            result[spec.name] = value.cpu().numpy()
        return result

    def _deactivate_impl(self) -> None:
        self._staging = None
        self._torch = None
