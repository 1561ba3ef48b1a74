"""`distill export trt`: one-line refusal without TensorRT; the real build where TensorRT
and a GPU exist (skipped with that reason elsewhere)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from engine.cli import main

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _have_gpu() -> bool:
    if not HAVE_TENSORRT:
        return False
    try:
        from engine.backends import cuda_memory

        return bool(cuda_memory.gpu_name(0))
    except Exception:
        return False


@pytest.mark.skipif(HAVE_TENSORRT, reason="tensorrt is installed here; the refusal path cannot run")
def test_trt_without_tensorrt_is_one_line_and_nonzero(tmp_path, capsys):
    code = main(["export", "trt", "--onnx", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "m.engine")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1
    assert "TensorRT is not installed" in err[0] and "pip install distill[trt]" in err[0]
    assert not (tmp_path / "m.engine").exists()


@pytest.mark.skipif(not _have_gpu(), reason="needs tensorrt and an NVIDIA GPU (neither is available here)")
def test_trt_build_cache_and_run(exported, tmp_path, capsys):
    from engine.backends.onnxruntime_backend import OnnxRuntimeBackend
    from engine.backends.tensorrt_backend import TensorRTBackend
    from export import parity

    onnx_path, _, card = exported["keypoints"]
    args = ["export", "trt", "--onnx", str(onnx_path), "--out", str(tmp_path / "kp.engine"),
            "--precision", "fp32", "--max-batch", "4", "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0 and "built" in capsys.readouterr().out
    assert main(args) == 0 and "cache hit" in capsys.readouterr().out  # never builds twice
    feeds, source = parity.parity_feeds(card, None, count=2)
    feeds = [f[:4] for f in feeds]
    # TensorRT's "fp32" convolutions may run in TF32 (a 10-bit mantissa, like float16): on the
    # CPU, rounding this model's weights to float16 alone moved heatmaps by 0.9-1.4% of a map's
    # range (export/parity.py), so the value check gets 2% here. Unmeasured on a GPU.
    report = parity.run_parity(OnnxRuntimeBackend(onnx_path, providers="cpu"),
                               TensorRTBackend(tmp_path / "kp.engine"), feeds, card, source, value_rtol=2e-2)
    assert report.passed, report.table()

    det_path, _, det_card = exported["detect"]
    out = tmp_path / "det.engine"
    assert main(["export", "trt", "--onnx", str(det_path), "--out", str(out), "--precision", "fp16",
                 "--scales", "128,256", "--max-size", "512", "--max-batch", "2",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    with TensorRTBackend(out) as engine:
        for shape in [(1, 3, 128, 128), (2, 3, 256, 384)]:
            got = engine.infer({"images": np.zeros(shape, np.uint8)})
            assert got["boxes"].shape == (shape[0], det_card.topk, 4)


def test_export_cli_imports_nothing_heavy():
    """`distill --help` must work on a torch-free, TensorRT-free box."""
    import subprocess
    import sys

    code = ("import sys, export.cli, export.trt_plan, export.trt_build, export.parity; "
            "bad = [m for m in ('torch', 'tensorrt', 'onnx', 'cuda') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
