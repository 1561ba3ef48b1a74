"""BatchNorm folding on hand-built graphs, checked numerically against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import onnxruntime as ort  # noqa: E402

from export.onnx_passes import fold_batch_norm, rename_dims, set_metadata  # noqa: E402


def _bn(name: str, x: str, y: str, channels: int, rng: np.random.Generator) -> tuple:
    params = {
        f"{name}_g": rng.uniform(0.5, 2.0, channels), f"{name}_b": rng.normal(0, 1, channels),
        f"{name}_m": rng.normal(0, 1, channels), f"{name}_v": rng.uniform(0.2, 3.0, channels),
    }
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in params.items()]
    node = helper.make_node("BatchNormalization", [x, *params], [y], name=name, epsilon=1e-3)
    return node, inits


def _graph() -> onnx.ModelProto:
    """x -> Conv(no bias)+BN -> ConvTranspose(group 2, bias)+BN -> Relu -> BN (standalone)
    -> y, plus Conv+BN whose conv output is also a second consumer's input (not foldable)."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 4, 4)).astype(np.float32), "w2")  # (Cin, Cout/g, k, k)
    b2 = numpy_helper.from_array(rng.normal(0, 0.3, 6).astype(np.float32), "b2")
    w3 = numpy_helper.from_array(rng.normal(0, 0.3, (6, 6, 1, 1)).astype(np.float32), "w3")
    bn1, i1 = _bn("bn1", "c1", "n1", 4, rng)
    bn2, i2 = _bn("bn2", "c2", "n2", 6, rng)
    bn3, i3 = _bn("bn3", "r", "n3", 6, rng)
    bn4, i4 = _bn("bn4", "c3", "n4", 6, rng)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), bn1,
        helper.make_node("ConvTranspose", ["n1", "w2", "b2"], ["c2"], group=2, strides=[2, 2], pads=[1, 1, 1, 1]),
        bn2, helper.make_node("Relu", ["n2"], ["r"]), bn3,
        helper.make_node("Conv", ["n3", "w3"], ["c3"]), bn4,
        helper.make_node("Add", ["n4", "c3"], ["y"]),  # c3 has two consumers: BN4 stays an affine
    ]
    graph = helper.make_graph(
        nodes, "bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 6, 16, 16])],
        [w1, w2, b2, w3, *i1, *i2, *i3, *i4])
    # IR version 8 (onnx 1.10+): every ONNX Runtime we target reads it.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_fold_batch_norm_removes_every_bn_and_keeps_outputs():
    model = _graph()
    x = np.random.default_rng(1).normal(0, 50, (2, 3, 8, 8)).astype(np.float32)
    before = _run(model, x)
    assert fold_batch_norm(model) == 4
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert "BatchNormalization" not in ops
    # Two folded into their convolutions, two (standalone, shared conv output) became Mul+Add.
    assert ops.count("Mul") == 2 and ops.count("Add") == 3
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-4, atol=1e-3)
    assert {i.name for i in model.graph.initializer}.isdisjoint({"bn1_g", "bn2_m"})


def test_fold_batch_norm_refuses_runtime_statistics():
    model = _graph()
    bn = next(n for n in model.graph.node if n.name == "bn1")
    bn.input[3] = "x"  # mean now comes from the data, not an initializer
    with pytest.raises(ValueError, match="bn1"):
        fold_batch_norm(model)


def test_rename_dims_and_metadata():
    model = _graph()
    rename_dims(model, {0: "batch"}, "x")
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    set_metadata(model, "k", "1")
    set_metadata(model, "k", "2")
    assert [(p.key, p.value) for p in model.metadata_props] == [("k", "2")]
