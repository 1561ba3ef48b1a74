"""Backends: lifecycle state checks, ONNX Runtime provider choice and card refusal, lazy
imports, the TensorRT backend's refusal without tensorrt, the torch backend."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from engine.backends.base import BackendStateError
from engine.backends.onnxruntime_backend import OnnxRuntimeBackend, requested_providers
from engine.backends.tensorrt_backend import TensorRTBackend
from engine.errors import UserError
from engine.modelcard import CARD_KEY, ModelCard, ModelCardError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _card(size=(8, 8)) -> ModelCard:
    return ModelCard(task="keypoints", categories=[{"id": 1, "name": "person"}], input_name="crops",
                     outputs=["heatmaps"], strides=[4], input_size=list(size),
                     keypoint_names=[f"k{i}" for i in range(17)])


def _write_model(path, card: ModelCard | None) -> None:
    """A tiny keypoint-shaped graph: crops uint8 (N,3,8,8) -> Cast -> Conv k4 s4 -> (N,17,2,2)."""
    weight = np.random.default_rng(0).normal(0, 0.01, (17, 3, 4, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Cast", ["crops"], ["x"], to=TensorProto.FLOAT),
         helper.make_node("Conv", ["x", "w"], ["heatmaps"], strides=[4, 4])],
        "tiny", [helper.make_tensor_value_info("crops", TensorProto.UINT8, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["batch", 17, 2, 2])],
        [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    if card is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = CARD_KEY, card.to_json()
    onnx.save(model, str(path))


@pytest.fixture()
def tiny_onnx(tmp_path):
    path = tmp_path / "tiny.onnx"
    _write_model(path, _card())
    return path


def test_onnxruntime_backend_runs_quietly_on_whatever_loads(tiny_onnx, capfd):
    backend = OnnxRuntimeBackend(tiny_onnx, providers="auto")
    assert not backend.is_active
    with backend:
        # GPU providers that cannot load here fall back without printing anything.
        assert backend.providers_in_use[-1] == "CPUExecutionProvider"
        out = backend.infer({"crops": np.zeros((3, 3, 8, 8), np.uint8)})
        assert out["heatmaps"].shape == (3, 17, 2, 2) and out["heatmaps"].dtype == np.float32
        assert backend.card == _card()
    assert not backend.is_active
    captured = capfd.readouterr()
    assert "EP Error" not in captured.out + captured.err and "Failed to" not in captured.err


def test_lifecycle_state_is_checked(tiny_onnx):
    backend = OnnxRuntimeBackend(tiny_onnx, providers="cpu")
    with pytest.raises(BackendStateError, match="before activate"):
        backend.infer({"crops": np.zeros((1, 3, 8, 8), np.uint8)})
    with pytest.raises(BackendStateError, match="inactive"):
        backend.deactivate()
    backend.activate()
    with pytest.raises(BackendStateError, match="active backend"):
        backend.activate()
    with pytest.raises(ValueError, match="graph expects \\['crops'\\]"):
        backend.infer({"images": np.zeros((1, 3, 8, 8), np.uint8)})
    backend.deactivate()


def test_model_without_card_is_refused(tmp_path):
    path = tmp_path / "nocard.onnx"
    _write_model(path, None)
    with pytest.raises(ModelCardError, match="has no model card"):
        OnnxRuntimeBackend(path).activate()
    with OnnxRuntimeBackend(path, check_card=False) as backend:  # explicit opt-out for debugging
        assert backend.card is None


def test_card_disagreeing_with_graph_is_refused(tmp_path):
    path = tmp_path / "wrong.onnx"
    _write_model(path, _card(size=(16, 16)))
    with pytest.raises(ModelCardError, match="card's input_size is \\[16, 16\\]"):
        OnnxRuntimeBackend(path).activate()


def test_missing_and_corrupt_files_are_user_errors(tmp_path, tiny_onnx):
    with pytest.raises(UserError, match="not found"):
        OnnxRuntimeBackend(tmp_path / "missing.onnx").activate()
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(tiny_onnx.read_bytes()[: len(tiny_onnx.read_bytes()) // 2])
    with pytest.raises(UserError, match="cannot load ONNX model .*corrupt.onnx"):
        OnnxRuntimeBackend(corrupt).activate()


def test_requested_providers():
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert requested_providers("auto", gpu) == gpu
    assert requested_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert requested_providers("cuda", gpu) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert requested_providers("tensorrt", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert requested_providers(["CUDAExecutionProvider"], gpu) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(UserError, match="unknown ONNX Runtime provider 'gpu'"):
        requested_providers("gpu", gpu)


def test_engine_backends_import_no_torch_or_tensorrt():
    code = ("import sys, engine.backends.base, engine.backends.onnxruntime_backend, "
            "engine.backends.tensorrt_backend, engine.backends.torch_backend, engine.modelcard; "
            "bad = [m for m in ('torch', 'tensorrt', 'cuda', 'onnx') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_tensorrt_backend_constructs_cheaply_and_refuses_without_tensorrt(tmp_path):
    backend = TensorRTBackend(tmp_path / "m.engine")  # touches nothing
    with pytest.raises(UserError, match="TensorRT is not installed: pip install distill\\[trt\\]"):
        backend.activate()
    assert not backend.is_active


def test_torch_backend_matches_onnxruntime(tiny_onnx):
    torch = pytest.importorskip("torch")
    from engine.backends.torch_backend import TorchBackend

    weight = numpy_helper.to_array(onnx.load(str(tiny_onnx)).graph.initializer[0])

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 17, 4, stride=4, bias=False)
            self.conv.weight.data = torch.from_numpy(weight.copy())

        def forward(self, crops):
            return self.conv(crops.float())

    crops = np.random.default_rng(0).integers(0, 256, (2, 3, 8, 8), dtype=np.uint8)
    with TorchBackend(Tiny(), _card()) as eager, OnnxRuntimeBackend(tiny_onnx, providers="cpu") as runtime:
        assert eager.signature.outputs[0].shape == (None, 17, 2, 2)
        np.testing.assert_allclose(eager.infer({"crops": crops})["heatmaps"],
                                   runtime.infer({"crops": crops})["heatmaps"], rtol=1e-5, atol=1e-5)
