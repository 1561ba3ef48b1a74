"""ONNX Runtime backend: TensorRT, CUDA or CPU execution provider, whichever really loads.

`onnxruntime-gpu` lists the TensorRT and CUDA providers as *available* even on a box
without CUDA; they only fail when a session tries to load their shared libraries, and
ONNX Runtime then falls back to the CPU while printing errors. We therefore ask for the
preferred providers with ONNX Runtime's default logger silenced, and report the ones the
session actually got (`providers_in_use`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from engine.backends.base import Backend
from engine.errors import UserError
from engine.modelcard import GraphSignature, TensorSpec, card_from_metadata, validate_card

# Most to least preferred; "auto" tries them in this order.
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_ORT_DTYPES = {
    "tensor(uint8)": "uint8", "tensor(float)": "float32", "tensor(float16)": "float16",
    "tensor(int32)": "int32", "tensor(int64)": "int64",
}


def requested_providers(choice: str | Sequence[str], available: Sequence[str]) -> list[str]:
    """The provider list to ask ONNX Runtime for.

    choice: "auto" (best first), "cpu", "cuda", "tensorrt", or an explicit list of provider
    names. CPU is always appended last as the fallback.
    """
    aliases = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
               "tensorrt": "TensorrtExecutionProvider"}
    if isinstance(choice, str):
        if choice == "auto":
            wanted = list(PREFERRED_PROVIDERS)
        elif choice in aliases:
            wanted = [aliases[choice]]
        else:
            raise UserError(f"unknown ONNX Runtime provider {choice!r}: use auto, cpu, cuda or tensorrt")
    else:
        wanted = list(choice)
    chosen = [p for p in wanted if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def session_signature(session: "object") -> GraphSignature:
    """Inputs/outputs of an `onnxruntime.InferenceSession`; symbolic dims become None."""

    def spec(arg: "object") -> TensorSpec:
        shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
        return TensorSpec(arg.name, _ORT_DTYPES.get(arg.type, arg.type), shape)

    return GraphSignature(tuple(spec(a) for a in session.get_inputs()),
                          tuple(spec(a) for a in session.get_outputs()))


class OnnxRuntimeBackend(Backend):
    """Runs an exported ONNX model; refuses one without a valid, matching model card.

    path: the .onnx file. providers: see `requested_providers`. threads: intra-op threads
    for the CPU provider (0 lets ONNX Runtime decide). trt_cache_dir: where the TensorRT
    provider keeps its engines, so a second start does not rebuild them.
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: str | Sequence[str] = "auto",
                 threads: int = 0, device_id: int = 0, trt_cache_dir: str | Path | None = None,
                 check_card: bool = True) -> None:
        super().__init__()
        self.path = Path(path)
        self.providers = providers
        self.threads = threads
        self.device_id = device_id
        self.trt_cache_dir = trt_cache_dir
        self.check_card = check_card
        self.providers_in_use: list[str] = []
        self._session = None

    def _activate_impl(self) -> None:
        import onnxruntime as ort

        if not self.path.is_file():
            raise UserError(f"ONNX model not found: {self.path}")
        wanted = requested_providers(self.providers, ort.get_available_providers())
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        # A provider whose libraries are missing fails in one of two ways: the Python layer
        # raises (TensorRT) or the C++ layer logs and drops it (CUDA) through the
        # process-wide default logger. We silence that logger for the attempt, disable
        # ORT's print-and-retry fallback, and walk down the list ourselves; only a
        # failure with the CPU provider alone is the model's fault.
        ort.set_default_logger_severity(4)
        try:
            session = None
            while session is None:
                try:
                    session = ort.InferenceSession(str(self.path), options, providers=self._with_options(wanted),
                                                   enable_fallback=0)
                except Exception as error:  # ORT raises its own Fail/InvalidGraph/... types
                    if wanted != ["CPUExecutionProvider"]:
                        wanted = wanted[1:]
                        continue
                    text = str(error).strip()
                    reason = text.splitlines()[0] if text else type(error).__name__
                    raise UserError(f"cannot load ONNX model {self.path}: {reason}") from None
        finally:
            ort.set_default_logger_severity(2)
        self.providers_in_use = session.get_providers()
        self.signature = session_signature(session)
        metadata = session.get_modelmeta().custom_metadata_map
        if self.check_card:
            self.card = card_from_metadata(metadata, str(self.path))
            validate_card(self.card, self.signature, str(self.path))
        self._session = session
        self._output_names = [spec.name for spec in self.signature.outputs]

    @property
    def runs_on_cpu(self) -> bool:
        return self.providers_in_use[:1] == ["CPUExecutionProvider"]

    def _with_options(self, providers: list[str]) -> list[str | tuple[str, dict]]:
        result: list[str | tuple[str, dict]] = []
        for name in providers:
            if name == "CUDAExecutionProvider":
                result.append((name, {"device_id": self.device_id}))
            elif name == "TensorrtExecutionProvider":
                opts: dict = {"device_id": self.device_id}
                if self.trt_cache_dir is not None:
                    opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(self.trt_cache_dir),
                                trt_timing_cache_enable=True)
                result.append((name, opts))
            else:
                result.append(name)
        return result

    def _infer_impl(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = {name: np.ascontiguousarray(value) for name, value in feed.items()}
        values = self._session.run(self._output_names, arrays)
        return dict(zip(self._output_names, values))

    def _deactivate_impl(self) -> None:
        self._session = None
