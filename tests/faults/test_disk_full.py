"""The disk fills while `distill label` writes its shards: a tmpfs mounted by the test,
too small for the run, then grown (a remount) as a user would free space, then --resume.
Skipped where mounting is not permitted (not root, or no tmpfs)."""

from __future__ import annotations

import subprocess
import time

import pytest

from engine.label.manifest import RunManifest
from tests.faults.conftest import check_finished, check_killed, hidden_files, row, run_distill

KIND = "disk full while shards are written"


@pytest.fixture()
def small_disk(tmp_path):
    """A folder with a tmpfs mounted on it (size set by the test: `mount(size)`)."""
    disk = tmp_path / "disk"
    disk.mkdir()

    def mount(size: int, remount: bool = False) -> None:
        options = f"{'remount,' if remount else ''}size={size}"
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")

    yield disk, mount
    subprocess.run(["umount", str(disk)], capture_output=True)


def test_a_full_disk_stops_in_one_line_and_resumes_after_space_is_freed(exported, reference, small_disk):
    disk, mount = small_disk
    # tmpfs counts whole 4 KiB pages per file: the run needs a page for its manifest, its
    # failures, its lock, its temporary and every shard. Room for about half of it.
    pages = [-(-path.stat().st_size // 4096) for path in (reference.out / "shards").iterdir()]
    mount(4096 * (3 + 1 + sum(pages) // 2))
    out = disk / "run"
    full = run_distill(reference.command(exported, out))
    row(KIND).injected += 1
    lines = full.stderr.strip().splitlines()
    assert full.returncode == 2 and len(lines) == 1, full.stderr
    assert lines[0].startswith("distill label: error: the disk holding ") and f"mounted at {disk}" in lines[0]
    assert "No space left on device" in lines[0]
    check_killed(out)
    finished = RunManifest.load(out).shards
    assert 0 < len(finished) < len(pages), "the disk did not fill in the middle of the run"
    assert hidden_files(out) == []  # the half-written shard was removed

    mount(16 << 20, remount=True)
    start = time.perf_counter()
    done = run_distill(reference.command(exported, out, "--resume"))
    row(KIND).recover.append(time.perf_counter() - start)
    assert done.returncode == 0, done.stderr
    check_finished(out, reference, KIND)
