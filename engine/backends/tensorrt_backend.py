"""Native TensorRT backend (TensorRT 10 Python API, named-tensor I/O).

An engine built by `distill export trt` holds one optimization profile per scale bucket
(detector) or one batch profile (keypoint model), and carries its model card in the JSON
sidecar beside it. On `activate` we deserialize the engine, check the sidecar against the
running TensorRT version and GPU (a serialized engine is only valid for the exact
TensorRT version and GPU model that built it), validate the card against the engine's
I/O tensors and the sidecar's optimization profiles against the engine's (runs are checked
against the sidecar's before they start: engine.label.profiles), and allocate pinned host
and device buffers large enough for every profile, once. `infer` picks the profile whose
shape range holds the input, then does H2D copy -> execute_async_v3 -> D2H copies on one
CUDA stream and synchronizes once.

`tensorrt` and `cuda-python` are imported in `activate`, never at module import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from engine.backends import cuda_memory as cm
from engine.backends.base import Backend, ShapeRange
from engine.errors import UserError
from engine.modelcard import (GraphSignature, ModelCardError, TensorSpec, read_sidecar, sidecar_path,
                             validate_card)

TENSORRT_MISSING = "TensorRT is not installed: pip install distill[trt] on a machine with an NVIDIA GPU"


def import_tensorrt() -> Any:
    """`import tensorrt`, or a one-line UserError saying how to get it."""
    try:
        import tensorrt
    except ImportError:
        raise UserError(TENSORRT_MISSING) from None
    return tensorrt


def fitting_profiles(shape: tuple[int, ...], ranges: Sequence[ShapeRange]) -> list[int]:
    """Indices of the profiles whose [min, max] box contains `shape`. ranges: per profile,
    (min shape, max shape) of the input."""
    return [i for i, (lo, hi) in enumerate(ranges)
            if len(lo) == len(shape) and all(a <= s <= b for a, s, b in zip(lo, shape, hi))]


def choose_profile(shape: tuple[int, ...], ranges: Sequence[ShapeRange]) -> int:
    """Index of the profile whose [min, max] box contains `shape`, the nearest one winning.

    Scale-bucket profiles nest (same max, growing min), so the nearest is the one with the
    largest min (the bucket the image's scale belongs to, whose opt shape TensorRT tuned
    for), then the smallest max. ranges: per profile, (min shape, max shape) of the input.
    """
    fitting = [(-int(np.prod(ranges[i][0])), int(np.prod(ranges[i][1])), i)
               for i in fitting_profiles(shape, ranges)]
    if not fitting:
        described = ", ".join(f"{list(lo)}..{list(hi)}" for lo, hi in ranges)
        raise ValueError(f"input shape {list(shape)} fits no optimization profile ({described})")
    return min(fitting)[2]


def sidecar_profiles(sidecar: Mapping[str, Any], engine_path: Path) -> list[ShapeRange]:
    """(min, max) input shapes of each optimization profile the sidecar of `engine_path`
    records, in the engine's profile order (`export.trt_plan.sidecar_document` writes them)."""
    try:
        return [(tuple(int(v) for v in p["min"]), tuple(int(v) for v in p["max"])) for p in sidecar["profiles"]]
    except (KeyError, TypeError, ValueError) as error:
        raise ModelCardError(f"{sidecar_path(engine_path)}: malformed optimization profiles ({error!r}); "
                             f"rebuild the engine with `distill export trt`") from None


class TensorRTBackend(Backend):
    """Runs a serialized TensorRT engine with the model card from its sidecar.

    engine_path: `M.engine` (sidecar `M.json` beside it). device: CUDA device index.
    check_build: refuse an engine whose sidecar names another TensorRT version or GPU.
    """

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, device: int = 0, check_build: bool = True) -> None:
        super().__init__()
        self.engine_path = Path(engine_path)
        self.device = device
        self.check_build = check_build
        self.sidecar: dict[str, Any] = {}

    def _activate_impl(self) -> None:
        try:
            self._load()
        except BaseException:
            self._deactivate_impl()  # free whatever was allocated before the failure
            raise

    def _load(self) -> None:
        trt = import_tensorrt()
        if not self.engine_path.is_file():
            raise UserError(f"TensorRT engine not found: {self.engine_path}")
        self.sidecar = read_sidecar(self.engine_path)
        self.card = self.sidecar["model_card"]
        cm._check(cm.cudart().cudaSetDevice(self.device))
        if self.check_build:
            self._check_build(trt.__version__, cm.gpu_name(self.device))
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if engine is None:
            raise UserError(f"cannot deserialize TensorRT engine {self.engine_path} (corrupt or built elsewhere)")
        self._engine = engine
        self.signature = self._engine_signature(trt)
        validate_card(self.card, self.signature, str(self.engine_path))
        self._context = engine.create_execution_context()
        self._stream = cm.Stream()
        self._input = self.signature.inputs[0].name
        self._ranges = [tuple(tuple(int(d) for d in shape)
                              for shape in engine.get_tensor_profile_shape(self._input, i)[0::2])
                        for i in range(engine.num_optimization_profiles)]
        if self._ranges != sidecar_profiles(self.sidecar, self.engine_path):
            # Runs are checked against the sidecar's profiles before they start (engine.label.profiles).
            raise ModelCardError(f"{self.engine_path}: the engine's optimization profiles {self._ranges} are not "
                                 f"the sidecar's; rebuild it with `distill export trt`")
        self._profile = 0
        self._allocate(trt)

    @property
    def input_profiles(self) -> list[ShapeRange]:
        """The profiles from the sidecar (readable before `activate` and without TensorRT;
        activation refuses an engine whose own profiles differ)."""
        return sidecar_profiles(self.sidecar or read_sidecar(self.engine_path), self.engine_path)

    def _check_build(self, trt_version: str, gpu: str) -> None:
        built = (self.sidecar.get("tensorrt_version"), self.sidecar.get("gpu_name"))
        if built != (trt_version, gpu):
            raise ModelCardError(
                f"{self.engine_path}: engine was built with TensorRT {built[0]} on {built[1]!r}, "
                f"this is TensorRT {trt_version} on {gpu!r}; rebuild it with `distill export trt`"
            )

    def _engine_signature(self, trt: Any) -> GraphSignature:
        inputs, outputs = [], []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))).name
            shape = tuple(d if d >= 0 else None for d in self._engine.get_tensor_shape(name))
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (inputs if is_input else outputs).append(TensorSpec(name, dtype, shape))
        return GraphSignature(tuple(inputs), tuple(outputs))

    def _allocate(self, trt: Any) -> None:
        """Buffers sized for the largest shape of every profile, allocated once."""
        sizes: dict[str, int] = {}
        for index, (_, max_shape) in enumerate(self._ranges):
            self._context.set_optimization_profile_async(index, self._stream.ptr)
            self._context.set_input_shape(self._input, max_shape)
            for spec in (*self.signature.inputs, *self.signature.outputs):
                count = int(np.prod(self._context.get_tensor_shape(spec.name)))
                sizes[spec.name] = max(sizes.get(spec.name, 0), count)
        self._stream.synchronize()
        self._host = {s.name: cm.PinnedBuffer(sizes[s.name], np.dtype(s.dtype))
                      for s in (*self.signature.inputs, *self.signature.outputs)}
        self._device = {name: cm.DeviceBuffer(buf.nbytes) for name, buf in self._host.items()}
        for name, buf in self._device.items():
            self._context.set_tensor_address(name, buf.ptr)
        self._context.set_optimization_profile_async(self._profile, self._stream.ptr)

    def _infer_impl(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        array = np.ascontiguousarray(feed[self._input], dtype=self.signature.inputs[0].dtype)
        profile = choose_profile(array.shape, self._ranges)
        if profile != self._profile:
            self._context.set_optimization_profile_async(profile, self._stream.ptr)
            self._profile = profile
        if not self._context.set_input_shape(self._input, array.shape):
            raise ValueError(f"TensorRT refused input shape {list(array.shape)}")
        host_in = self._host[self._input]
        host_in.array[: array.size] = array.reshape(-1)
        cm.copy_to_device_async(self._device[self._input], host_in, array.nbytes, self._stream)
        if not self._context.execute_async_v3(self._stream.ptr):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        shapes = {}
        for spec in self.signature.outputs:
            shape = tuple(self._context.get_tensor_shape(spec.name))
            nbytes = int(np.prod(shape)) * np.dtype(spec.dtype).itemsize
            cm.copy_to_host_async(self._host[spec.name], self._device[spec.name], nbytes, self._stream)
            shapes[spec.name] = shape
        self._stream.synchronize()
        # Copy out of the pinned buffers: the next call overwrites them.
        return {name: self._host[name].array[: int(np.prod(shape))].reshape(shape).copy()
                for name, shape in shapes.items()}

    def _deactivate_impl(self) -> None:
        for buffers in (getattr(self, "_device", {}), getattr(self, "_host", {})):
            for buf in buffers.values():
                buf.free()
        self._device, self._host = {}, {}
        if getattr(self, "_stream", None) is not None:
            self._stream.free()
        self._context = self._engine = self._runtime = None
