"""Checkpoint -> ONNX: graph contract, BN folding, dynamic axes, parity (green and red), CLI.

Keypoint parity and BN folding are proved on `peaked_keypoints` (tests/export/conftest.py),
whose heatmaps have real, input-dependent peaks: on the shared 3-step model's flat maps
an all-zeros input or doubled heatmaps pass any comparison."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch

from engine.backends.base import Backend
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


@pytest.fixture
def models(exported, peaked_keypoints) -> dict[str, tuple]:
    """{"detect"/"keypoints": (onnx path, eager wrapper, card)}: the shared detector and
    the keypoint model with real peaks."""
    kp = peaked_keypoints
    return {"detect": exported["detect"], "keypoints": (kp["onnx"], kp["wrapper"], kp["card"])}


def _heatmaps(wrapper: torch.nn.Module, feeds: list[np.ndarray]) -> np.ndarray:
    """(N, J, h, w) float32 heatmaps of the eager wrapper on (B,3,Hc,Wc) uint8 feeds."""
    with torch.no_grad():
        return np.concatenate([wrapper(torch.from_numpy(feed)).numpy() for feed in feeds])


def test_keypoint_fixture_has_peaks_that_follow_the_input(models):
    _, wrapper, card = models["keypoints"]
    feeds, _ = parity.parity_feeds(card, None, count=4)
    heatmaps = _heatmaps(wrapper, feeds)  # (8, 17, 32, 24)
    flat = heatmaps.reshape(*heatmaps.shape[:2], -1)
    peak, span = flat.max(axis=2), flat.max(axis=2) - flat.min(axis=2)
    # Peaks like a trained model's (the teacher's are 0.1..1.5), not the 3-step model's
    # 0.0184 +- 0.0001, and each joint's argmax moves from crop to crop.
    assert span.min() > 0.05 and 0.2 < np.median(peak) < 2.0
    distinct = [len(set(flat[:, j].argmax(axis=1))) for j in range(flat.shape[1])]
    assert np.mean(distinct) >= 0.75 * flat.shape[0], distinct


@pytest.mark.parametrize("task", ["detect", "keypoints"])
def test_parity_green_on_synthetic_images(models, task):
    path, wrapper, card = models[task]
    feeds, source = parity.parity_feeds(card, None, count=2)
    assert "synthetic" in source
    report = parity.run_parity(TorchBackend(wrapper, card), OnnxRuntimeBackend(path, providers="cpu"),
                               feeds, card, source)
    assert report.passed, report.table()
    assert "max |diff|" in report.table()


def _parity_report(models, task: str, images=None, count: int = 2, perturb=None, candidate=None):
    """ONNX Runtime (CPU) on the exported file, or `candidate(path)`, against the PyTorch
    wrapper, optionally perturbed by `perturb = (parameter name part, noise, relative)`."""
    path, wrapper, card = models[task]
    feeds, source = parity.parity_feeds(card, images, count=count)
    reference = _perturbed(wrapper, *perturb) if perturb else wrapper
    runner = candidate(path) if candidate else OnnxRuntimeBackend(path, providers="cpu")
    report = parity.run_parity(TorchBackend(reference, card), runner, feeds, card, source)
    return report, source


@pytest.mark.parametrize("task", ["detect", "keypoints"])
def test_parity_green_on_real_images(models, task, coco_mini):
    report, source = _parity_report(models, task, coco_mini / "images", count=3)
    assert "real" in source
    assert report.passed, report.table()


def _perturbed(wrapper: torch.nn.Module, name_part: str, amount: float, relative: bool = False) -> torch.nn.Module:
    """A copy with Gaussian noise added to every parameter whose name contains
    `name_part`: std `amount`, or `amount` x that tensor's own std when `relative`."""
    broken = copy.deepcopy(wrapper)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in broken.named_parameters():
            if name_part in name:
                scale = amount * float(param.std()) if relative and param.numel() > 1 else amount
                param.add_(torch.randn(param.shape, generator=generator) * scale)
    return broken


class _BuggyRuntime(Backend):
    """ONNX Runtime (CPU) with a deliberate bug: `feed_bug` applied to the uint8 feed
    before the graph sees it, `output_bug` to what the graph returns."""

    name = "buggy-onnxruntime"

    def __init__(self, path, feed_bug=None, output_bug=None) -> None:
        super().__init__()
        self.inner = OnnxRuntimeBackend(path, providers="cpu")
        self.feed_bug, self.output_bug = feed_bug or (lambda x: x), output_bug or (lambda x: x)

    def _activate_impl(self) -> None:
        self.inner.activate()
        self.card, self.signature = self.inner.card, self.inner.signature

    def _infer_impl(self, feed):
        outputs = self.inner.infer({name: self.feed_bug(array) for name, array in feed.items()})
        return {name: self.output_bug(array) for name, array in outputs.items()}

    def _deactivate_impl(self) -> None:
        self.inner.deactivate()


def _shifted(feed: np.ndarray, by: int) -> np.ndarray:
    return np.clip(feed.astype(np.int16) + by, 0, 255).astype(np.uint8)


def test_parity_fails_loudly_on_perturbed_detector(models):
    report, _ = _parity_report(models, "detect", perturb=("head", 0.05))
    assert not report.passed
    message = report.failure()
    assert message.startswith("parity check failed:") and "max |diff|" in message
    assert "boxes" in message or "scores" in message


def test_parity_fails_loudly_on_perturbed_keypoints(models):
    # Noise of 1% of the final conv's weight std: the values differ by ~4% of a map's
    # range, 40x parity.HEATMAP_VALUE_RTOL (whose comment lists the measurements), while
    # the peaks barely move (argmax agrees for 97-100% of joints).
    report, _ = _parity_report(models, "keypoints", perturb=("final", 0.01, True))
    assert not report.passed
    message = report.failure()
    assert message.startswith("parity check failed: heatmaps:")
    assert "heatmaps: values differ" in message and "of a map's range" in message


# name: (bug applied to the uint8 feed, bug applied to the heatmaps, argmax alone fails)
GRAPH_BUGS = {
    "doubled heatmaps": (None, lambda h: 2 * h, False),  # peaks stay put: only values see it
    "input shifted by -10": (lambda f: _shifted(f, -10), None, True),
    "all-zeros input": (np.zeros_like, None, True),
}


@pytest.mark.parametrize("bug", list(GRAPH_BUGS))
def test_parity_fails_on_buggy_keypoint_graph(models, bug):
    feed_bug, output_bug, argmax_sees_it = GRAPH_BUGS[bug]
    report, _ = _parity_report(models, "keypoints", candidate=lambda path: _BuggyRuntime(path, feed_bug, output_bug))
    argmax_row, value_row = report.rows
    assert not value_row.ok, report.table()
    assert argmax_row.ok != argmax_sees_it, report.table()


def _bottom_row_off(heatmaps: np.ndarray) -> np.ndarray:
    """(B, J, h, w) heatmaps with 1% of each map's range added to its bottom row only: a
    bug confined to a border (a padding or crop off by one)."""
    span = heatmaps.max(axis=(2, 3)) - heatmaps.min(axis=(2, 3))
    out = heatmaps.copy()
    out[:, :, -1, :] += 0.01 * span[..., None]
    return out


def test_parity_fails_on_a_bug_confined_to_a_border_row(models):
    # The value check takes each map's worst pixel: 1% of the range, 10x the tolerance. A
    # mean over the map's pixels would dilute it h times (32 rows: 3e-4) and pass it.
    report, _ = _parity_report(models, "keypoints", candidate=lambda path: _BuggyRuntime(path, None, _bottom_row_off))
    value_row = report.rows[1]
    assert not value_row.ok, report.table()
    assert "values differ by up to 0.01 of a map's range" in value_row.detail
    reference = np.random.default_rng(0).random((4, 32 * 24)).astype(np.float32)
    np.testing.assert_allclose(parity.heatmap_value_error(reference, _bottom_row_off(reference.reshape(4, 1, 32, 24))
                                                          .reshape(4, -1)), 0.01, rtol=1e-4)


def test_cli_exports_with_parity_table(peaked_keypoints, tmp_path, capsys):
    out = tmp_path / "kp.onnx"
    checkpoint = str(peaked_keypoints["checkpoint"])
    code = main(["export", "onnx", "--checkpoint", checkpoint, "--out", str(out),
                 "--parity-images", str(tmp_path / "no-images-here"), "--parity-count", "2"])
    assert code == 2  # a --parity-images folder that does not exist is the user's mistake
    code = main(["export", "onnx", "--checkpoint", checkpoint, "--out", str(out), "--parity-count", "2"])
    printed = capsys.readouterr().out
    assert code == 0 and out.is_file()
    assert "parity: onnxruntime vs torch" in printed
    rows = [line for line in printed.splitlines() if line.startswith("heatmaps")]
    assert len(rows) == 2 and all(line.endswith(" ok") for line in rows) and "x map range" in rows[1]


def test_cli_parity_failure_exits_nonzero_and_sets_graph_aside(peaked_keypoints, tmp_path, capsys, monkeypatch):
    # An impossible tolerance makes the (correct) export fail its check: the failure path.
    monkeypatch.setattr(parity, "HEATMAP_VALUE_RTOL", 0.0)
    out = tmp_path / "kp.onnx"
    code = main(["export", "onnx", "--checkpoint", str(peaked_keypoints["checkpoint"]), "--out", str(out),
                 "--parity-count", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not out.exists() and (tmp_path / "kp.failed.onnx").is_file()
    assert len(err) == 1 and "parity check failed: heatmaps: values differ" in err[0]


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


def test_batchnorm_pass_on_the_exporters_unoptimized_graph(models):
    """Without onnxscript's optimizer the exporter leaves every BN in place; our pass folds
    them all and the graph still matches PyTorch: every heatmap's values within
    parity.HEATMAP_VALUE_RTOL of its own range, on maps with real peaks (a fold that
    flattened them to their mean would pass an rtol/atol test of flat maps)."""
    import warnings

    from export.onnx_passes import fold_batch_norm
    import onnxruntime as ort

    _, wrapper, card = models["keypoints"]
    feeds, _ = parity.parity_feeds(card, None, count=1)
    crops = torch.from_numpy(feeds[0])  # (2, 3, 128, 96) crops of a structured image
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
    want = _heatmaps(wrapper, feeds)
    span = np.ptp(want.reshape(-1, want.shape[2] * want.shape[3]), axis=1)
    assert span.min() > 0.05  # structure to lose: the 3-step model's maps span 1e-4
    rows = parity.compare_keypoints([{"heatmaps": want}], [{"heatmaps": got}])
    assert all(row.ok for row in rows), [row.detail for row in rows]
