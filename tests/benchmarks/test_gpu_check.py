"""benchmarks/gpu_check.py from the outside: the CPU code path (`--device cpu --quick
--model tiny`) writes a report with every section, and without CUDA the default run
exits 2 with one line. What the numbers are on a GPU is unverified here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_cpu_quick_run_writes_every_section(tmp_path):
    result = _run("--device", "cpu", "--quick", "--model", "tiny", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {"device", "model", "torch", "settings", "parity", "matmul_tflops", "flops_per_image",
            "throughput"} <= set(report)
    assert set(report["parity"]) == {"fp32"}  # fp16 is CUDA-only
    parity = report["parity"]["fp32"]
    assert parity["export_check_passed"] and parity["top_matched_strict"] == parity["top_checked"] > 0
    assert set(report["flops_per_image"]) == {"1 scale", "2 scales", "9 scales"}
    flops = report["flops_per_image"]
    assert 0 < flops["1 scale"] < flops["2 scales"] < flops["9 scales"]
    rows = report["throughput"]
    assert {(r["plan"], r["views"]) for r in rows} == {(p, v) for p in flops for v in ("host", "device")}
    for row in rows:
        assert row["images_per_s"] > 0 and row["views_only_images_per_s"] > 0
        assert row["views_per_image"] == 2 * len(row["scales"])
        assert 0 < row["fraction_of_matmul"] and row["matmul_reference"] == "fp32"
    assert "of matmul" in result.stdout and "parity vs ONNX Runtime CPU" in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_one_line_and_status_2(tmp_path):
    result = _run("--out", str(tmp_path), timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gpu_check: CUDA is not available"), result.stderr
    assert not (tmp_path / "gpu_check.json").exists()
