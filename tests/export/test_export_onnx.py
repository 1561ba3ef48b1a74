"""Checkpoint -> ONNX: graph contract, BN folding, dynamic axes, parity (green and red), CLI."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch

from engine.backends.onnxruntime_backend import OnnxRuntimeBackend
from engine.backends.torch_backend import TorchBackend
from engine.cli import main
from engine.modelcard import CARD_KEY, ModelCard
from export import parity

DETECTOR_TOPK = 100  # what tests/export/conftest.py exports with


def _dims(info) -> list:
    return [d.dim_param or d.dim_value for d in info.type.tensor_type.shape.dim]


def test_detector_graph_contract(exported):
    path, _, card = exported["detect"]
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}
    (inp,) = model.graph.input
    assert inp.name == "images" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert _dims(inp) == ["batch", 3, "height", "width"]
    outputs = {o.name: o for o in model.graph.output}
    assert _dims(outputs["boxes"]) == ["batch", DETECTOR_TOPK, 4]
    assert outputs["labels"].type.tensor_type.elem_type == onnx.TensorProto.INT32
    stored = ModelCard.from_json({p.key: p.value for p in model.metadata_props}[CARD_KEY], "test")
    assert stored.task == "detect" and stored.topk == DETECTOR_TOPK and stored.strides == [8, 16, 32, 64]
    assert [c["id"] for c in stored.categories] == [1, 3]
    assert len(stored.checkpoint_sha256) == 64 and stored.exporter["opset"] >= 17


def test_keypoint_graph_has_no_batchnorm_and_fixed_crop(exported):
    path, wrapper, card = exported["keypoints"]
    # The trained keypoint model really has BatchNorm layers to fold.
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in wrapper.modules())
    model = onnx.load(str(path))
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}
    assert _dims(model.graph.input[0]) == ["batch", 3, 128, 96]
    assert _dims(model.graph.output[0]) == ["batch", 17, 32, 24]
    assert card.flip_pairs[0] == [1, 2] and card.skeleton[0] == [16, 14]


def test_detector_runs_at_many_sizes_and_batches_from_one_file(exported):
    path, wrapper, card = exported["detect"]
    rng = np.random.default_rng(1)
    shapes = [(1, 3, 64, 64), (2, 3, 128, 320), (3, 3, 256, 192), (1, 3, 448, 64)]
    with OnnxRuntimeBackend(path, providers="cpu") as runtime, TorchBackend(wrapper, card) as eager:
        for shape in shapes:
            images = rng.integers(0, 256, shape, dtype=np.uint8)
            got = runtime.infer({"images": images})
            assert got["boxes"].shape == (shape[0], DETECTOR_TOPK, 4)
            assert got["scores"].shape == got["labels"].shape == (shape[0], DETECTOR_TOPK)
            assert got["labels"].dtype == np.int32
            # Boxes are clipped to this input's own size: the clip limits are not baked in.
            assert got["boxes"][..., 2].max() <= shape[3] and got["boxes"][..., 3].max() <= shape[2]
            rows = parity.compare_detector([eager.infer({"images": images})], [got], top=50)
            assert all(row.ok for row in rows), [row.detail for row in rows]


@pytest.mark.parametrize("task", ["detect", "keypoints"])
def test_parity_green_on_synthetic_images(exported, task):
    path, wrapper, card = exported[task]
    feeds, source = parity.parity_feeds(card, None, count=2)
    assert "synthetic" in source
    report = parity.run_parity(TorchBackend(wrapper, card), OnnxRuntimeBackend(path, providers="cpu"),
                               feeds, card, source)
    assert report.passed, report.table()
    assert "max |diff|" in report.table()


def _parity_report(exported, task: str, images=None, count: int = 2, perturb=None):
    """ONNX Runtime (CPU) on the exported file against the PyTorch wrapper, optionally
    perturbed by `perturb = (parameter name part, noise amount)`."""
    path, wrapper, card = exported[task]
    feeds, source = parity.parity_feeds(card, images, count=count)
    reference = _perturbed(wrapper, *perturb) if perturb else wrapper
    report = parity.run_parity(TorchBackend(reference, card), OnnxRuntimeBackend(path, providers="cpu"),
                               feeds, card, source)
    return report, source


@pytest.mark.parametrize("task", ["detect", "keypoints"])
def test_parity_green_on_real_images(exported, task, coco_mini):
    report, source = _parity_report(exported, task, coco_mini / "images", count=3)
    assert "real" in source
    assert report.passed, report.table()


def _perturbed(wrapper: torch.nn.Module, name_part: str, amount: float) -> torch.nn.Module:
    broken = copy.deepcopy(wrapper)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in broken.named_parameters():
            if name_part in name:
                param.add_(torch.randn(param.shape, generator=generator) * amount)
    return broken


def test_parity_fails_loudly_on_perturbed_detector(exported):
    report, _ = _parity_report(exported, "detect", perturb=("head", 0.05))
    assert not report.passed
    message = report.failure()
    assert message.startswith("parity check failed:") and "max |diff|" in message
    assert "boxes" in message or "scores" in message


def test_parity_fails_loudly_on_perturbed_keypoints(exported):
    report, _ = _parity_report(exported, "keypoints", perturb=("final", 0.5))
    assert not report.passed
    assert "heatmaps" in report.failure() and "of joints" in report.failure()


def test_cli_exports_with_parity_table(tiny_checkpoints, tmp_path, capsys):
    out = tmp_path / "kp.onnx"
    code = main(["export", "onnx", "--checkpoint", str(tiny_checkpoints["keypoints"]), "--out", str(out),
                 "--parity-images", str(tmp_path / "no-images-here"), "--parity-count", "2"])
    assert code == 2  # a --parity-images folder that does not exist is the user's mistake
    code = main(["export", "onnx", "--checkpoint", str(tiny_checkpoints["keypoints"]), "--out", str(out),
                 "--parity-count", "2"])
    printed = capsys.readouterr().out
    assert code == 0 and out.is_file()
    assert "parity: onnxruntime vs torch" in printed and "heatmaps" in printed and "ok" in printed


def test_cli_parity_failure_exits_nonzero_and_sets_graph_aside(tiny_checkpoints, tmp_path, capsys, monkeypatch):
    # An impossible tolerance makes the (correct) export fail its check: the failure path.
    monkeypatch.setattr(parity, "ARGMAX_AGREEMENT", 1.01)
    out = tmp_path / "kp.onnx"
    code = main(["export", "onnx", "--checkpoint", str(tiny_checkpoints["keypoints"]), "--out", str(out),
                 "--parity-count", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not out.exists() and (tmp_path / "kp.failed.onnx").is_file()
    assert len(err) == 1 and "parity check failed: heatmaps" in err[0]


def test_cli_refuses_missing_and_corrupt_checkpoints(tmp_path, capsys):
    corrupt = tmp_path / "bad.pt"
    corrupt.write_bytes(b"not a zip archive")
    for checkpoint in (tmp_path / "missing.pt", corrupt):
        code = main(["export", "onnx", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and str(checkpoint.name) in err[0]


def test_cli_refuses_bad_topk(tiny_checkpoints, tmp_path, capsys):
    code = main(["export", "onnx", "--checkpoint", str(tiny_checkpoints["detect"]), "--out",
                 str(tmp_path / "d.onnx"), "--topk", "0"])
    assert code == 2 and "--topk" in capsys.readouterr().err


def test_batchnorm_pass_on_the_exporters_unoptimized_graph(exported):
    """Without onnxscript's optimizer the exporter leaves every BN in place; our pass folds
    them all and the graph still matches PyTorch."""
    import warnings

    from export.onnx_passes import fold_batch_norm
    import onnxruntime as ort

    _, wrapper, card = exported["keypoints"]
    generator = torch.Generator().manual_seed(0)
    crops = torch.randint(0, 256, (2, 3, *card.input_size), dtype=torch.uint8, generator=generator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(wrapper, (crops,), None, dynamo=True, optimize=False, verbose=False,
                                    dynamic_shapes={"crops": {0: torch.export.Dim("batch", min=1, max=64)}})
    model = program.model_proto
    bn = sum(node.op_type == "BatchNormalization" for node in model.graph.node)
    assert bn > 0 and fold_batch_norm(model) == bn
    assert "BatchNormalization" not in {node.op_type for node in model.graph.node}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: crops.numpy()})[0]
    with torch.no_grad():
        want = wrapper(crops).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
