"""`distill train --backbone-weights`: torchvision/timm ResNet state dicts in our backbone,
Detectron's frozen parts and frozen BatchNorm, checkpoints and resume, one-line refusals.

The layout is proved against torchvision's own: fixtures/torchvision_resnet50.json lists
the names and shapes of `torchvision.models.resnet50().state_dict()` (its header says how
it was made; timm's `resnet50` has the same). `torchvision_layout` below writes that
layout for any ResNet from the block description alone, and is checked against the
fixture, so files for the tiny models come from an independent statement of the layout,
not from the mapping under test. Training runs use the tiny models: 20 steps of the r50
detector on 128-192 px images took 86 s with one thread on the shared 2-core machine.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from engine.cli import main as distill
from engine.errors import UserError
from tests.conftest import assert_cli_error
from trainer.checkpoint import build_model_from_checkpoint, load_checkpoint
from trainer.config import (
    BackboneConfig, r50_detector, r50_keypoints, tiny_detector, tiny_keypoints, with_pretrained_backbone,
)
from trainer.models.resnet import FrozenBatchNorm2d, ResNet
from trainer.pretrained import load_backbone_weights, read_state_dict, torchvision_name
from trainer.train import TrainOptions, train

FIXTURE = Path(__file__).parent / "fixtures" / "torchvision_resnet50.json"


def torchvision_layout(backbone: BackboneConfig, classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """{name: shape} of torchvision's ResNet with this stem, widths, depths and block kind."""
    layout: dict[str, tuple[int, ...]] = {}

    def conv_bn(conv: str, bn: str, cout: int, cin: int, k: int) -> None:
        layout[f"{conv}.weight"] = (cout, cin, k, k)
        for field in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{bn}.{field}"] = (cout,)
        layout[f"{bn}.num_batches_tracked"] = ()

    conv_bn("conv1", "bn1", backbone.stem_width, 3, 7)
    cin = backbone.stem_width
    bottleneck = backbone.block == "bottleneck"
    for stage, (width, depth) in enumerate(zip(backbone.widths, backbone.depths)):
        cout = width * (4 if bottleneck else 1)
        for b in range(depth):
            prefix = f"layer{stage + 1}.{b}"
            if bottleneck:
                convs = [(width, cin, 1), (width, width, 3), (cout, width, 1)]
            else:
                convs = [(width, cin, 3), (cout, width, 3)]
            for j, (o, i, k) in enumerate(convs, start=1):
                conv_bn(f"{prefix}.conv{j}", f"{prefix}.bn{j}", o, i, k)
            if b == 0 and (stage > 0 or cin != cout):
                conv_bn(f"{prefix}.downsample.0", f"{prefix}.downsample.1", cout, cin, 1)
            cin = cout
    layout["fc.weight"], layout["fc.bias"] = (classes, cin), (classes,)
    return layout


def random_state_dict(layout: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Random values of every shape; variances positive, counters integers, as in a real file."""
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name, shape in layout.items():
        if name.endswith("num_batches_tracked"):
            weights[name] = torch.tensor(1000, dtype=torch.long)
        elif name.endswith("running_var"):
            weights[name] = torch.rand(shape, generator=generator) + 0.5
        else:
            weights[name] = torch.randn(shape, generator=generator) * 0.05
    return weights


def assert_loaded(backbone: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Every backbone tensor equals the file's tensor of the same torchvision name."""
    state = backbone.state_dict()
    checked = [name for name in state if not name.endswith("num_batches_tracked")]
    assert checked
    for name in checked:
        assert torch.equal(state[name], weights[torchvision_name(name)]), name


def pretrained_backbone(config, freeze_at: int = 2, frozen_bn: bool = True) -> ResNet:
    return ResNet(with_pretrained_backbone(config, freeze_at, frozen_bn).backbone)


@pytest.fixture(scope="module")
def r50_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A torchvision-layout ResNet-50 .pth file of random values, and its tensors."""
    layout = {name: tuple(shape) for name, shape in json.loads(FIXTURE.read_text())["tensors"].items()}
    weights = random_state_dict(layout, seed=0)
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.save(weights, path)
    return path, weights


def test_layout_reference_is_torchvision_resnet50():
    fixture = json.loads(FIXTURE.read_text())
    assert "torchvision" in fixture["source"] and len(fixture["tensors"]) == 320
    expected = {name: tuple(shape) for name, shape in fixture["tensors"].items()}
    assert torchvision_layout(r50_detector().backbone) == expected


@pytest.mark.parametrize("frozen_bn", [True, False])
def test_r50_backbone_maps_onto_exactly_torchvision_resnet50(frozen_bn):
    """Every tensor of our r50 backbone has a torchvision name with the same shape, and
    every torchvision tensor but the classifier (and, for frozen BN, the counters) is one."""
    fixture = {name: tuple(shape) for name, shape in json.loads(FIXTURE.read_text())["tensors"].items()}
    for config in (r50_detector(), r50_keypoints()):
        ours = {torchvision_name(name): tuple(t.shape)
                for name, t in pretrained_backbone(config, freeze_at=0, frozen_bn=frozen_bn).state_dict().items()}
        expected = {name: shape for name, shape in fixture.items()
                    if not name.startswith("fc.") and (not frozen_bn or not name.endswith("num_batches_tracked"))}
        assert ours == expected


def test_r50_loads_the_files_tensors_from_pth_checkpoint_and_safetensors(r50_file, tmp_path):
    path, weights = r50_file
    for config in (r50_detector(), r50_keypoints()):
        backbone = pretrained_backbone(config)
        assert load_backbone_weights(backbone, path) == 265  # 320 less fc (2) and the 53 counters
        assert_loaded(backbone, weights)
    # A training checkpoint holding the state dict (timm's and torchvision's scripts).
    wrapped = tmp_path / "checkpoint.pth"
    torch.save({"model": weights, "epoch": 90}, wrapped)
    backbone = pretrained_backbone(r50_detector(), frozen_bn=False)
    load_backbone_weights(backbone, wrapped)
    assert_loaded(backbone, weights)
    safetensors = pytest.importorskip("safetensors.torch")
    single = tmp_path / "model.safetensors"
    safetensors.save_file(weights, single)
    backbone = pretrained_backbone(r50_detector())
    load_backbone_weights(backbone, single)
    assert_loaded(backbone, weights)


def test_mismatched_files_are_one_line_naming_the_first_few(r50_file, tmp_path):
    _, weights = r50_file
    bad = dict(weights)
    del bad["layer4.2.conv3.weight"]
    bad["layer5.0.conv1.weight"] = torch.zeros(1)
    bad["layer1.0.conv1.weight"] = torch.zeros(64, 64, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(UserError) as error:
        load_backbone_weights(pretrained_backbone(r50_detector()), path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path} does not fit the backbone: ")
    assert "missing layer4.2.conv3.weight" in message and "unexpected layer5.0.conv1.weight" in message
    assert "layer1.0.conv1.weight (64, 64, 3, 3) vs (64, 64, 1, 1)" in message
    # The tiny backbone is no ResNet-50: refused, naming only the first three of each kind.
    with pytest.raises(UserError, match=r"\(\+\d+ more\)") as error:
        load_backbone_weights(pretrained_backbone(tiny_detector()), r50_file[0])
    assert "conv1.weight (64, 3, 7, 7) vs (16, 3, 7, 7)" in str(error.value)


def test_unreadable_files(tmp_path, monkeypatch):
    text = tmp_path / "weights.pth"
    text.write_text("not a torch file")
    with pytest.raises(UserError, match="cannot read"):
        read_state_dict(text)
    numpy_file = tmp_path / "weights.npz"
    numpy_file.write_bytes(b"")
    with pytest.raises(UserError, match=r"expected a \.pth, \.pt, \.bin or \.safetensors file"):
        read_state_dict(numpy_file)
    config = tmp_path / "config.pth"
    torch.save({"epochs": 90, "arch": "resnet50"}, config)
    with pytest.raises(UserError, match="holds no state dict"):
        read_state_dict(config)
    single = tmp_path / "model.safetensors"
    single.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    monkeypatch.setitem(sys.modules, "safetensors", None)  # as where it is not installed
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(UserError, match=r"needs the safetensors package \(the train extra"):
        read_state_dict(single)


def test_frozen_batchnorm_is_eval_batchnorm_with_and_without_gradients():
    torch.manual_seed(0)
    reference = torch.nn.BatchNorm2d(8).eval()
    frozen = FrozenBatchNorm2d(8)
    with torch.no_grad():
        for tensor in (reference.weight, reference.bias, reference.running_mean):
            tensor.normal_()
        reference.running_var.uniform_(0.5, 2.0)
    frozen.load_state_dict({k: v for k, v in reference.state_dict().items() if k != "num_batches_tracked"})
    x = torch.randn(2, 8, 5, 7)
    expected = reference(x).detach()
    assert torch.allclose(frozen.train()(x), expected, atol=1e-6)  # no gradient: batch_norm
    x.requires_grad_(True)
    out = frozen(x)  # with gradient: scale and shift
    assert torch.allclose(out.detach(), expected, atol=1e-5)
    out.sum().backward()
    assert x.grad is not None and not list(frozen.parameters())


def test_freeze_at_freezes_parts_and_their_batchnorms():
    backbone = pretrained_backbone(tiny_keypoints(), freeze_at=2, frozen_bn=False)
    parts = [backbone.stem, *backbone.stages]
    assert all(not p.requires_grad for part in parts[:2] for p in part.parameters())
    assert all(p.requires_grad for part in parts[2:] for p in part.parameters())
    assert all(isinstance(m, FrozenBatchNorm2d) for part in parts[:2] for m in part.modules()
               if isinstance(m, (torch.nn.BatchNorm2d, FrozenBatchNorm2d)))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in parts[2].modules())
    with pytest.raises(UserError, match=r"freeze_at 5 is outside 0\.\.4"):
        with_pretrained_backbone(tiny_keypoints(), 5, True)


def _options(data: dict, task: str, out, **kw) -> TrainOptions:
    base = dict(task=task, train_json=str(data["train_json"]), train_images=str(data["train_images"]), model="tiny",
                iters=20, batch_size=2, out=str(out), workers=0, checkpoint_every=0, lr=0.05,
                # One thread: on two cores shared with other work, two threads ran 10x slower.
                threads=1)
    if task == "detect":
        base["overrides"] = ("train_min_sizes=[128]", "train_max_size=192")
    base.update(kw)
    return TrainOptions(**base)


def _tiny_file(tmp_path: Path, task: str, seed: int = 1) -> tuple[Path, dict[str, torch.Tensor]]:
    config = tiny_detector() if task == "detect" else tiny_keypoints()
    weights = random_state_dict(torchvision_layout(config.backbone), seed)
    path = tmp_path / f"tiny-{task}-{seed}.pth"
    torch.save(weights, path)
    return path, weights


def _moved(before: dict, after: dict, prefix: str) -> dict[str, bool]:
    return {k: not torch.equal(before[k], after[k]) for k in before
            if k.startswith(prefix) and not k.endswith("num_batches_tracked")}


def test_default_fine_tuning_freezes_stem_res2_and_every_batchnorm(synth_small, tmp_path, trainers):
    """20 steps of the detector from a file: the loaded tensors are the file's, the stem,
    res2 and every BatchNorm (statistics and affine) stay as loaded, every other weight moves."""
    path, weights = _tiny_file(tmp_path, "detect")
    metrics = train(_options(synth_small, "detect", tmp_path / "run", backbone_weights=str(path)))
    (run,) = trainers
    initial = {k[len("backbone."):]: v for k, v in run.initial.items() if k.startswith("backbone.")}
    for name, tensor in initial.items():
        assert torch.equal(tensor, weights[torchvision_name(name)]), name
    after = run.model.state_dict()
    moved = _moved(run.initial, after, "")
    frozen = {k for k in moved if k.startswith(("backbone.stem.", "backbone.stages.0."))}
    norms = {f"backbone.{name}.{field}" for name, module in run.model.backbone.named_modules()
             if isinstance(module, FrozenBatchNorm2d) for field in ("weight", "bias", "running_mean", "running_var")}
    assert frozen and not any(moved[k] for k in frozen)
    assert len(norms) == 4 * 12 and not any(moved[k] for k in norms)  # stem, 2 per block, 3 shortcuts
    trained = [k for k in moved if k.startswith("backbone.") and k not in frozen | norms]
    assert trained and all(moved[k] for k in trained), [k for k in trained if not moved[k]]
    # FPN and head train too (not every tensor: the regression scales of levels that no
    # box of these small images reaches get no gradient).
    assert any(moved[k] for k in moved if k.startswith(("fpn.", "head.")))
    assert metrics["backbone_weights"] == str(path)
    # The checkpoint holds what the run trained from (the frozen stem is still the
    # file's) and the config to rebuild it: frozen BN, freeze_at 2.
    ckpt = load_checkpoint(tmp_path / "run" / "model.pt")
    assert ckpt["config"]["backbone"]["norm"] == "FrozenBN" and ckpt["config"]["backbone"]["freeze_at"] == 2
    assert torch.equal(ckpt["state_dict"]["backbone.stem.0.weight"], weights["conv1.weight"])
    rebuilt = build_model_from_checkpoint(ckpt)
    assert all(torch.equal(v, after[k]) for k, v in rebuilt.state_dict().items())


def test_freeze_at_and_trained_batchnorm(synth_small, tmp_path, trainers):
    """--freeze-at 1 --no-frozen-bn: only the stem stays; res2's weights and the
    statistics of every trained BatchNorm move."""
    path, _ = _tiny_file(tmp_path, "keypoints")
    train(_options(synth_small, "keypoints", tmp_path / "run", backbone_weights=str(path), freeze_at=1, frozen_bn=False))
    (run,) = trainers
    moved = _moved(run.initial, run.model.state_dict(), "backbone.")
    assert not any(v for k, v in moved.items() if k.startswith("backbone.stem."))
    rest = {k: v for k, v in moved.items() if not k.startswith("backbone.stem.")}
    assert rest and all(rest.values()), [k for k, v in rest.items() if not v]
    assert any(k.endswith("running_var") for k in rest)


def test_resume_keeps_trained_weights_and_never_reads_the_file(synth_small, tmp_path, trainers):
    path, _ = _tiny_file(tmp_path, "detect")
    run = dict(backbone_weights=str(path), iters=2)
    train(_options(synth_small, "detect", tmp_path / "whole", checkpoint_every=1, **run))
    (tmp_path / "killed").mkdir()
    shutil.copy(tmp_path / "whole" / "last.pt", tmp_path / "killed" / "last.pt")
    path.unlink()  # a resumed run that read it would fail
    resumed = train(_options(synth_small, "detect", tmp_path / "killed", resume=True, **run))
    assert resumed["start_iteration"] == 1
    _, rest = trainers
    saved = load_checkpoint(tmp_path / "killed" / "last.pt")["state_dict"]
    assert all(torch.equal(rest.initial[k], v) for k, v in saved.items())
    with pytest.raises(UserError, match="was started with backbone norm FrozenBN, freeze_at 2, these flags give norm GN"):
        train(_options(synth_small, "detect", tmp_path / "killed", resume=True, iters=3))


def _cli(tiny_coco, out, *extra) -> list[str]:
    return ["train", "--task", "detect", "--train-json", str(tiny_coco), "--train-images", str(tiny_coco.parent / "images"),
            "--model", "tiny", "--iters", "1", "--batch-size", "1", "--out", str(out), "--workers", "0", *extra]


def test_cli_refusals_are_one_line(tiny_coco, tmp_path, capsys, r50_file):
    out = tmp_path / "out"
    assert_cli_error(capsys, distill(_cli(tiny_coco, out, "--backbone-weights", str(r50_file[0]))), "train",
                     f"--backbone-weights {r50_file[0]} does not fit the backbone: ", "shape (file vs model) conv1.weight")
    assert_cli_error(capsys, distill(_cli(tiny_coco, out, "--backbone-weights", str(tmp_path / "none.pth"))), "train",
                     "none.pth does not exist")
    assert_cli_error(capsys, distill(_cli(tiny_coco, out, "--freeze-at", "1")), "train",
                     "--freeze-at and --no-frozen-bn apply only with --backbone-weights")
    assert_cli_error(capsys, distill(_cli(tiny_coco, out, "--backbone-weights", "w.pth", "--freeze-at", "9")), "train",
                     "--freeze-at: freeze_at 9 is outside 0..5")
    assert_cli_error(capsys, distill(_cli(tiny_coco, out, "--backbone-weights", "w.pth", "--init", "c.pt")), "train",
                     "--init and --backbone-weights both set the starting weights")
