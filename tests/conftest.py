"""Fixtures shared by every test package: repository paths and the real-data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """`../shared/data` beside the repository, or `$DISTILL_SHARED_DATA` when set."""
    return Path(os.environ.get("DISTILL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def coco_mini() -> Path:
    """The real COCO subset; tests using it skip where the folder is absent."""
    root = shared_data_dir() / "coco-mini"
    if not (root / "annotations").is_dir():
        pytest.skip(f"real COCO data not found at {root} (set DISTILL_SHARED_DATA)")
    return root
