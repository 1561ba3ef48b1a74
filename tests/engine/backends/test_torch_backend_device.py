"""The PyTorch backend's device choice: "auto" picks the CPU where CUDA is absent, fp16
is refused without CUDA (one line), and one parity body against ONNX Runtime on the CPU
runs per device: the CPU here, CUDA fp32 and fp16 only where a GPU is present.

Tolerances on CUDA are not the export check's (IoU >= 0.99, score 1e-3): cuDNN runs
fp32 convolutions in TF32 by default (10-bit mantissa) and fp16 autocast has 11 bits,
so the check asks for the reference's top candidates to be found at IoU >= 0.98 (or
every coordinate within 0.1 px, for the degenerate boxes of a barely trained regressor)
and score within 5e-3 (fp32/TF32), IoU >= 0.95 (0.5 px) and 2e-2 (fp16). Unverified
here: this machine has no GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import UserError

torch = pytest.importorskip("torch")
from engine.backends.torch_backend import TorchBackend  # noqa: E402

CUDA = torch.cuda.is_available()
NO_CUDA = pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine (torch.cuda.is_available() is False)")
TOP = 20


class _Stub(torch.nn.Module):
    """A detector-shaped module: images (B,3,H,W) uint8 -> boxes, scores, labels."""

    def forward(self, images):
        batch = images.shape[0]
        mean = images.float().mean(dim=(1, 2, 3))
        boxes = mean[:, None, None].expand(batch, 2, 4).contiguous()
        return boxes, mean[:, None].expand(batch, 2) / 255, torch.zeros(batch, 2, dtype=torch.int64)


def _card():
    from engine.modelcard import DETECTOR_INPUT, DETECTOR_OUTPUTS, ModelCard

    return ModelCard(task="detect", categories=[{"id": 1, "name": "person"}], input_name=DETECTOR_INPUT,
                     outputs=list(DETECTOR_OUTPUTS), strides=[8], topk=2)


@pytest.mark.skipif(CUDA, reason="this machine has CUDA: 'auto' picks it")
def test_auto_picks_cpu_without_cuda():
    images = np.full((1, 3, 8, 8), 51, np.uint8)
    with TorchBackend(_Stub(), _card(), device="auto") as backend:
        assert backend.torch_device.type == "cpu"
        out = backend.infer({"images": images})
        # Outputs keep the card's dtypes whatever the module returns (int64 labels here).
        assert out["boxes"].dtype == np.float32 and out["labels"].dtype == np.int32
        assert out["scores"][0, 0] == pytest.approx(0.2)
        # A tensor feed (device-made views) gives the same as the host array.
        again = backend.infer({"images": torch.from_numpy(images)})
        np.testing.assert_array_equal(again["boxes"], out["boxes"])


@pytest.mark.skipif(CUDA, reason="this machine has CUDA: fp16 is allowed")
def test_fp16_refused_without_cuda(tmp_path):
    with pytest.raises(UserError, match="--fp16 needs CUDA") as error:
        TorchBackend(_Stub(), _card(), device="cpu", fp16=True)
    assert "\n" not in str(error.value)
    backend = TorchBackend(_Stub(), _card(), device="auto", fp16=True)  # touches nothing yet
    with pytest.raises(UserError, match="--fp16 needs CUDA, and torch .* sees no CUDA device") as error:
        backend.activate()
    assert "\n" not in str(error.value) and not backend.is_active
    with pytest.raises(UserError, match="'cuda' requested but CUDA is not available"):
        TorchBackend(_Stub(), _card(), device="cuda").activate()
    with pytest.raises(UserError, match="unknown torch device 'gpu'"):
        TorchBackend(_Stub(), _card(), device="gpu")
    # `distill label --fp16` with another backend: refused before any model is loaded.
    from engine.label.models import make_backend

    model = tmp_path / "detector.onnx"
    model.write_bytes(b"not loaded")
    with pytest.raises(UserError, match="--fp16 applies to the torch backend only, not onnxrt"):
        make_backend(model, "auto", fp16=True)


@pytest.mark.parametrize("device, fp16, iou_min, score_atol, box_atol", [
    ("cpu", False, 0.99, 1e-3, 0.01),
    pytest.param("cuda", False, 0.98, 5e-3, 0.1, marks=NO_CUDA),
    pytest.param("cuda", True, 0.95, 2e-2, 0.5, marks=NO_CUDA),
])
def test_torch_backend_matches_onnxruntime_cpu(exported, device, fp16, iou_min, score_atol, box_atol):
    from engine.backends.onnxruntime_backend import OnnxRuntimeBackend
    from export.parity import detector_feeds, match_top_candidates, synthetic_images

    path, wrapper, card = exported["detect"]
    feeds = detector_feeds(synthetic_images(2, seed=3, size=(120, 160)), 192, 320, card.max_stride)
    with OnnxRuntimeBackend(path, providers="cpu") as runtime:
        ref = [runtime.infer({"images": f}) for f in feeds]
    with TorchBackend(wrapper, card, device=device, fp16=fp16) as eager:
        assert eager.torch_device.type == device
        test = [eager.infer({"images": f}) for f in feeds]
    wrapper.to("cpu")  # the session fixture's wrapper is shared with other tests
    for out in test:
        assert out["boxes"].dtype == np.float32 and out["scores"].dtype == np.float32
        assert out["labels"].dtype == np.int32
    match = match_top_candidates(ref, test, TOP, iou_min, score_atol, box_atol)
    matched, checked = match.matched, match.checked
    assert checked > 0 and matched == checked, (
        f"{device} fp16={fp16}: {checked - matched}/{checked} of ONNX Runtime's top-{TOP} candidates "
        f"have no same-class match at IoU >= {iou_min} (or within {box_atol} px), |score diff| <= {score_atol}")
