"""Two `distill label` processes on one OUT: the second is refused in one line naming the
first's process id (OUT/.lock); a lock left by a killed run is taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from engine.label.lock import LOCK_NAME
from tests.conftest import REPO_ROOT
from tests.engine.conftest import killed_after_two_shards
from tests.faults.conftest import check_finished, row, run_distill

SECOND = "a second distill label on the same OUT"
STALE = "lock left by a killed run"


def holder(out) -> str | None:
    try:
        return (out / LOCK_NAME).read_text().strip()
    except FileNotFoundError:
        return None


def test_a_second_run_on_the_same_folder_is_refused(exported, reference, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(reference.command(exported, out), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while holder(out) != str(first.pid) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        # Frozen while it holds the lock (its PID is written once it has it), so that the
        # second surely meets it.
        first.send_signal(signal.SIGSTOP)
        assert holder(out) == str(first.pid)
        for extra in ((), ("--resume",)):
            second = run_distill(reference.command(exported, out, *extra))
            row(SECOND).injected += 1
            lines = second.stderr.strip().splitlines()
            assert second.returncode == 2 and len(lines) == 1, second.stderr
            assert lines[0] == (f"distill label: error: {out} is being written by another labeling run "
                                f"(process {first.pid}, lock file {out / LOCK_NAME})")
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=600) == 0, first.stderr.read().decode()
    check_finished(out, reference, SECOND)


def test_a_lock_left_by_a_killed_run_is_taken_over(exported, reference, tmp_path):
    out = tmp_path / "run"
    killed_after_two_shards(reference.command(exported, out), out)
    dead = int((out / LOCK_NAME).read_text())
    row(STALE).injected += 1
    assert not os.path.exists(f"/proc/{dead}")
    start = time.perf_counter()
    done = run_distill(reference.command(exported, out, "--resume"))
    row(STALE).recover.append(time.perf_counter() - start)
    assert done.returncode == 0, done.stderr
    check_finished(out, reference, STALE)
