"""Fixtures shared by every test package: repository paths and the real-data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """`../shared/data` beside the repository, or `$DISTILL_SHARED_DATA` when set."""
    return Path(os.environ.get("DISTILL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def _shared_folder(name: str, marker: str) -> Path:
    """`shared_data_dir() / name`, or a skip where its `marker` sub-folder is absent."""
    root = shared_data_dir() / name
    if not (root / marker).is_dir():
        pytest.skip(f"real COCO data not found at {root} (set DISTILL_SHARED_DATA)")
    return root


@pytest.fixture(scope="session")
def coco_mini() -> Path:
    """The real COCO subset; tests using it skip where the folder is absent."""
    return _shared_folder("coco-mini", "annotations")


@pytest.fixture(scope="session")
def coco_unlabeled() -> Path:
    """The real unlabeled pool; tests using it skip where the folder is absent."""
    return _shared_folder("coco-unlabeled", "images")


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """{"detect": path, "keypoints": path} of freshly trained tiny checkpoints."""
    pytest.importorskip("torch")
    import torch

    from tests.tiny_models import train_detector, train_keypoints

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("checkpoints")
    paths = {"detect": root / "detector.pt", "keypoints": root / "keypoints.pt"}
    train_detector(paths["detect"])
    train_keypoints(paths["keypoints"])
    return paths


@pytest.fixture(scope="session")
def exported(tiny_checkpoints, tmp_path_factory) -> dict[str, tuple]:
    """{"detect"/"keypoints": (onnx path, eager wrapper, card)} exported once per session."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from export.onnx_export import export_checkpoint
    from tests.tiny_models import DETECTOR_TOPK

    root = tmp_path_factory.mktemp("onnx")
    result = {}
    for task, checkpoint in tiny_checkpoints.items():
        out, wrapper = export_checkpoint(checkpoint, root / f"{task}.onnx", topk=DETECTOR_TOPK)
        result[task] = (out.path, wrapper, out.card)
    return result


def assert_cli_error(capsys, code: int, command: str, *fragments: str) -> None:
    """`distill COMMAND` refused a user's mistake: exit status 2 and one line on stderr,
    `distill COMMAND: error: ...`, holding every fragment."""
    assert code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"distill {command}: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def detector_card():
    """A model card of a paper-sized detector (strides 8..128, top-1000), no graph behind it."""
    from engine.modelcard import ModelCard

    return ModelCard(task="detect", categories=[{"id": 1, "name": "person"}], input_name="images",
                     outputs=["boxes", "scores", "labels"], strides=[8, 16, 32, 64, 128], topk=1000)


def keypoint_card():
    """A model card of a 256x192 top-down keypoint model, no graph behind it."""
    from engine.modelcard import ModelCard

    return ModelCard(task="keypoints", categories=[{"id": 1, "name": "person"}], input_name="crops",
                     outputs=["heatmaps"], strides=[4], input_size=[256, 192],
                     keypoint_names=[f"k{i}" for i in range(17)], flip_pairs=[[1, 2]], skeleton=[[1, 2]])
