"""ONNX -> serialized TensorRT engine through the TensorRT 10 Python API.

Steps: OnnxParser fills a network (explicit batch is the only mode in TensorRT 10);
a builder config gets the workspace limit, precision flags, one optimization profile per
planned `Profile`, a timing cache loaded from and saved to disk (kernel timings are the
slow part of a build and are reusable across builds on the same GPU and TensorRT
version) and, for INT8, an entropy calibrator over real images with a calibration cache.

INT8 note: TensorRT 10.1+ deprecates implicit quantization (calibrators) in favour of
explicit Q/DQ graphs (NVIDIA ModelOpt); it still works in 10.x and needs no retraining,
so it is what we offer; the calibration cache makes rebuilds skip the calibration pass.

`tensorrt` is imported inside the functions; the image batching for calibration is plain
numpy and tested without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from engine.backends.tensorrt_backend import import_tensorrt
from engine.errors import UserError
from export.parity import IMAGE_SUFFIXES, read_rgb
from export.trt_plan import Profile


def calibration_images(folder: str | Path, limit: int) -> list[Path]:
    """Up to `limit` image files under `folder`, sorted; UserError when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"calibration image folder not found: {folder}")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not paths:
        raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return paths


def letterbox(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, height, width) uint8: scaled to fit, zero-padded right/bottom,
    the same placement the labeling pipeline uses."""
    import cv2

    h, w = image.shape[:2]
    f = min(height / h, width / w)
    nh, nw = max(1, min(height, round(h * f))), max(1, min(width, round(w * f)))
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas.transpose(2, 0, 1)


def calibration_batches(paths: Sequence[Path], shape: Sequence[int]) -> Iterator[np.ndarray]:
    """Full batches of `shape` (B, 3, H, W) uint8 from `paths`; a short last batch is dropped
    because the calibration profile fixes the batch size."""
    batch, _, height, width = (int(v) for v in shape)
    for start in range(0, len(paths) - batch + 1, batch):
        yield np.stack([letterbox(read_rgb(p), height, width) for p in paths[start:start + batch]])


def make_entropy_calibrator(trt: Any, batches: Iterator[np.ndarray], shape: Sequence[int],
                            cache_path: Path) -> Any:
    """An IInt8EntropyCalibrator2 feeding `batches` (each of `shape`, uint8) from device memory.

    The class is defined here because it must subclass a tensorrt type.
    """
    from engine.backends import cuda_memory as cm

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # TensorRT requires the explicit call
            self.batches = batches
            self.nbytes = int(np.prod(shape))
            self.device = cm.DeviceBuffer(self.nbytes)
            self.count = 0

        def get_batch_size(self) -> int:
            return int(shape[0])

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self.batches, None)
            if batch is None:
                return None  # tells TensorRT calibration data is exhausted
            host = np.ascontiguousarray(batch)
            kind = cm.cudart().cudaMemcpyKind.cudaMemcpyHostToDevice
            cm._check(cm.cudart().cudaMemcpy(self.device.ptr, host.ctypes.data, host.nbytes, kind))
            self.count += 1
            return [self.device.ptr]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_bytes(bytes(cache))

    return EntropyCalibrator()


def tensorrt_version() -> str:
    return str(import_tensorrt().__version__)


def build_engine(onnx_path: str | Path, profiles: Sequence[Profile], precision: str, workspace_gb: float,
                 timing_cache: Path | None = None, calibration: tuple[Iterator[np.ndarray], Path] | None = None,
                 verbose: bool = False) -> bytes:
    """Build and serialize an engine. calibration: (batches of the first profile's opt
    shape, calibration cache path), required for precision "int8"."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch: the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if precision in ("fp16", "int8"):
        # With INT8, FP16 is the fallback for layers that have no INT8 kernel.
        config.set_flag(trt.BuilderFlag.FP16)
    for plan in profiles:
        profile = builder.create_optimization_profile()
        profile.set_shape(plan.input_name, plan.min, plan.opt, plan.max)
        config.add_optimization_profile(profile)
    calibrator = None
    if precision == "int8":
        if calibration is None:
            raise UserError("int8 precision needs calibration images (real images to calibrate on)")
        if not hasattr(trt, "IInt8EntropyCalibrator2"):
            raise UserError(f"INT8 calibration needs TensorRT 10.x (calibrators are gone in {trt.__version__}); "
                            "use --precision fp16")
        batches, cache_path = calibration
        config.set_flag(trt.BuilderFlag.INT8)
        calib_profile = builder.create_optimization_profile()
        first = profiles[0]
        calib_profile.set_shape(first.input_name, first.opt, first.opt, first.opt)
        config.set_calibration_profile(calib_profile)
        calibrator = make_entropy_calibrator(trt, batches, first.opt, cache_path)
        config.int8_calibrator = calibrator
    cache = None
    if timing_cache is not None:
        blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if calibrator is not None:
        calibrator.device.free()
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    if cache is not None and timing_cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)
