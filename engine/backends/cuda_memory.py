"""Thin wrappers over the CUDA runtime (NVIDIA's `cuda-python` bindings) for TensorRT.

Only the TensorRT backend and the engine builder use this; `cuda-python` is imported on
first use, so importing this module costs nothing on a box without CUDA. Every runtime
call returns `(cudaError_t, *values)`; `_check` turns a non-zero error into an exception
with CUDA's own error name.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from engine.errors import UserError

_CUDART: Any = None


def cudart() -> Any:
    """The `cudart` module of cuda-python (new `cuda.bindings` layout, or the 12.x one)."""
    global _CUDART
    if _CUDART is None:
        try:
            from cuda.bindings import runtime as module  # cuda-python >= 12.6
        except ImportError:
            try:
                from cuda import cudart as module  # older cuda-python 12.x
            except ImportError:
                raise UserError(
                    "cuda-python is not installed: pip install distill[trt] on a machine with an NVIDIA GPU"
                ) from None
        _CUDART = module
    return _CUDART


def _check(result: tuple) -> Any:
    error, *values = result
    if int(error) != 0:
        name = cudart().cudaGetErrorName(error)[1]
        raise RuntimeError(f"CUDA error {name.decode() if isinstance(name, bytes) else name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def gpu_name(device: int = 0) -> str:
    """The device's marketing name (e.g. "NVIDIA H100 80GB HBM3"), part of engine cache keys."""
    props = _check(cudart().cudaGetDeviceProperties(device))
    name = props.name
    return (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00").strip()


class Stream:
    """One CUDA stream: copies and the engine run on it, so they overlap other streams' work."""

    def __init__(self) -> None:
        self.handle = _check(cudart().cudaStreamCreate())
        self.ptr = int(self.handle)  # TensorRT takes the stream as a plain integer handle

    def synchronize(self) -> None:
        # The only host-device sync point in an inference call.
        _check(cudart().cudaStreamSynchronize(self.handle))

    def free(self) -> None:
        if self.handle is not None:
            _check(cudart().cudaStreamDestroy(self.handle))
            self.handle = None


class DeviceBuffer:
    """`nbytes` of device memory (cudaMalloc)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = max(int(nbytes), 1)
        self.ptr = int(_check(cudart().cudaMalloc(self.nbytes)))

    def free(self) -> None:
        if self.ptr:
            _check(cudart().cudaFree(self.ptr))
            self.ptr = 0


class PinnedBuffer:
    """Page-locked host memory seen as a flat numpy array of `dtype`.

    Pinned memory lets cudaMemcpyAsync run as a true DMA overlapping other work; from
    pageable memory the driver would stage through its own pinned buffer synchronously.
    """

    def __init__(self, count: int, dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        self.nbytes = max(int(count), 1) * self.dtype.itemsize
        self.ptr = int(_check(cudart().cudaMallocHost(self.nbytes)))
        raw = np.ctypeslib.as_array((ctypes.c_byte * self.nbytes).from_address(self.ptr))
        self.array = raw.view(self.dtype)

    def free(self) -> None:
        if self.ptr:
            self.array = None
            _check(cudart().cudaFreeHost(self.ptr))
            self.ptr = 0


def copy_to_device_async(dst: DeviceBuffer, src: PinnedBuffer, nbytes: int, stream: Stream) -> None:
    kind = cudart().cudaMemcpyKind.cudaMemcpyHostToDevice
    _check(cudart().cudaMemcpyAsync(dst.ptr, src.ptr, nbytes, kind, stream.handle))


def copy_to_host_async(dst: PinnedBuffer, src: DeviceBuffer, nbytes: int, stream: Stream) -> None:
    kind = cudart().cudaMemcpyKind.cudaMemcpyDeviceToHost
    _check(cudart().cudaMemcpyAsync(dst.ptr, src.ptr, nbytes, kind, stream.handle))
