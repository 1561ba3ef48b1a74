"""What a TensorRT build will do, decided in plain Python (no tensorrt needed, all tested):
optimization profiles, the engine cache key, the engine cache folder, the JSON sidecar.

Profiles. The detector sees images whose shorter side is one of the test scales (400..1200
in steps of 100 for data distillation) and whose longer side is at most `max_size`, in
either orientation, padded to multiples of the largest stride. TensorRT tunes kernels for
a profile's `opt` shape, so one profile per scale bucket keeps every bucket close to its
tuned shape: min (1, 3, S, S), opt (B, 3, S, L43) (4:3 landscape, the commonest photo),
max (B, 3, L, L), with S the scale and L the capped longer side, both rounded up to the
stride. The smallest scale's profile reaches down to (1, 3, t, t), t the stride: an image
so elongated that `max_size` caps its shorter side below every scale still has a profile
(engine.label.profiles checks a run against exactly these shapes). The keypoint model has
one profile over the batch only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from engine.errors import UserError
from engine.modelcard import ModelCard, sidecar_path
from engine.label.views import DEFAULT_MAX_SIZE, DEFAULT_SCALES
from engine.scaling import round_up

PRECISIONS = ("fp32", "fp16", "int8")
SIDECAR_FORMAT = "distill-trt-sidecar-v1"


@dataclass(frozen=True)
class Profile:
    """One optimization profile for input `input_name`: (N, C, H, W) min/opt/max shapes."""

    input_name: str
    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input_name, "min": list(self.min), "opt": list(self.opt),
                "max": list(self.max), "label": self.label}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Profile":
        return cls(data["input"], tuple(data["min"]), tuple(data["opt"]), tuple(data["max"]), data.get("label", ""))


def _round_up(value: float, multiple: int) -> int:
    return round_up(round(value), multiple)


def plan_detector_profiles(card: ModelCard, scales: Sequence[int], max_size: int, max_batch: int) -> list[Profile]:
    """One profile per scale, in ascending scale order (see the module docstring)."""
    if not scales:
        raise UserError("a detector engine needs at least one shorter-side size")
    if max_batch < 1:
        raise UserError(f"the largest batch must be >= 1, got {max_batch}")
    stride = card.view_multiple
    profiles = []
    for scale in sorted(set(int(s) for s in scales)):
        if scale <= 0:
            raise UserError(f"scale {scale} must be positive")
        if scale > max_size:
            raise UserError(f"scale {scale} exceeds the longer-side cap {max_size}")
        short = _round_up(scale, stride)
        long = max(short, _round_up(max_size, stride))
        landscape = min(long, _round_up(scale * 4 / 3, stride))
        smallest = stride if not profiles else short
        profiles.append(Profile(card.input_name, (1, 3, smallest, smallest), (max_batch, 3, short, landscape),
                                (max_batch, 3, long, long), label=f"scale{scale}"))
    return profiles


def plan_keypoint_profiles(card: ModelCard, max_batch: int) -> list[Profile]:
    """One batch profile 1..max_batch at the card's fixed crop size."""
    if max_batch < 1:
        raise UserError(f"the largest batch must be >= 1, got {max_batch}")
    hc, wc = card.input_size or (0, 0)
    return [Profile(card.input_name, (1, 3, hc, wc), (max_batch, 3, hc, wc), (max_batch, 3, hc, wc), "batch")]


def plan_profiles(card: ModelCard, scales: Sequence[int] = DEFAULT_SCALES, max_size: int = DEFAULT_MAX_SIZE,
                  max_batch: int = 8) -> list[Profile]:
    if card.task == "detect":
        return plan_detector_profiles(card, scales, max_size, max_batch)
    return plan_keypoint_profiles(card, max_batch)


def engine_cache_key(onnx_sha256: str, trt_version: str, gpu_name: str, precision: str,
                     profiles: Sequence[Profile], workspace_gb: float = 0.0, calib_sha256: str = "") -> str:
    """sha256 over everything that makes two builds differ; equal keys never build twice."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    payload = {
        "onnx": onnx_sha256, "tensorrt": trt_version, "gpu": gpu_name, "precision": precision,
        "profiles": [p.to_dict() for p in profiles], "workspace_gb": float(workspace_gb),
        "calibration": calib_sha256 if precision == "int8" else "",
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (ONNX files and checkpoints are identified by it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def calibration_fingerprint(paths: Sequence[Path]) -> str:
    """A cheap identity for a calibration set: names, sizes and mtimes, not contents."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        stat = path.stat()
        digest.update(f"{path.name}\0{stat.st_size}\0{int(stat.st_mtime)}\n".encode())
    return digest.hexdigest()


def sidecar_document(card: ModelCard, trt_version: str, gpu_name: str, precision: str,
                     profiles: Sequence[Profile], onnx_sha256: str, cache_key: str) -> dict[str, Any]:
    return {"format": SIDECAR_FORMAT, "model_card": asdict(card), "tensorrt_version": trt_version,
            "gpu_name": gpu_name, "precision": precision, "profiles": [p.to_dict() for p in profiles],
            "onnx_sha256": onnx_sha256, "cache_key": cache_key}


def write_sidecar(engine_path: str | Path, document: dict[str, Any]) -> Path:
    """Write `M.json` beside `M.engine` atomically (temp file + rename)."""
    path = sidecar_path(engine_path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


class EngineCache:
    """Built engines under `root/<cache key>.engine` with their sidecars `<key>.json`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @staticmethod
    def default_root() -> Path:
        env = os.environ.get("DISTILL_ENGINE_CACHE")
        return Path(env) if env else Path.home() / ".cache" / "distill" / "engines"

    def engine_path(self, key: str) -> Path:
        return self.root / f"{key}.engine"

    def lookup(self, key: str) -> Path | None:
        path = self.engine_path(key)
        return path if path.is_file() and sidecar_path(path).is_file() else None

    def store(self, key: str, engine_bytes: bytes, document: dict[str, Any]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.engine_path(key)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(engine_bytes)
        os.replace(tmp, path)
        write_sidecar(path, document)
        return path

    def copy_out(self, key: str, out: str | Path) -> Path:
        """Copy a cached engine and its sidecar to `out` (and `out`'s .json)."""
        source = self.engine_path(key)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, out)
        shutil.copyfile(sidecar_path(source), sidecar_path(out))
        return out
