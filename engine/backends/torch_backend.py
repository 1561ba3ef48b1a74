"""PyTorch backend, for debugging and parity checks: runs the eager module the graph came from.

It takes a flat export wrapper (bytes in, named tensors out, see `export.onnx_export`) and
its model card, or rebuilds both from a trainer checkpoint. torch is imported in
`activate`, so this module is importable on a torch-free labeling box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from engine.backends.base import Backend
from engine.modelcard import GraphSignature, ModelCard, TensorSpec


class TorchBackend(Backend):
    """Runs `module(input) -> tuple of tensors` on the CPU (or `device`).

    module: a torch.nn.Module taking one uint8 NCHW tensor and returning the card's outputs
    in order; card: its model card. threads: torch intra-op threads (0 keeps torch's).
    """

    name = "torch"

    def __init__(self, module: Any, card: ModelCard, device: str = "cpu", threads: int = 0) -> None:
        super().__init__()
        self.module = module
        self.card = card
        self.device = device
        self.threads = threads

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, topk: int = 1000, device: str = "cpu") -> "TorchBackend":
        """Rebuild the export wrapper and card from a trainer checkpoint (needs torch + trainer)."""
        from export.onnx_export import wrap_checkpoint  # lazy: export depends on torch

        module, card = wrap_checkpoint(checkpoint, topk=topk)
        return cls(module, card, device=device)

    def _activate_impl(self) -> None:
        import torch

        self._torch = torch
        if self.threads:
            torch.set_num_threads(self.threads)
        self.module = self.module.to(self.device).eval()
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

    def _infer_impl(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        assert self.card is not None and self.signature is not None
        images = torch.from_numpy(np.ascontiguousarray(feed[self.card.input_name])).to(self.device)
        with torch.inference_mode():
            values = self.module(images)
        if not isinstance(values, (tuple, list)):
            values = (values,)
        names = [spec.name for spec in self.signature.outputs]
        return {name: value.detach().cpu().numpy() for name, value in zip(names, values)}

    def _deactivate_impl(self) -> None:
        self._torch = None
