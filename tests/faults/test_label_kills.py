"""`distill label` SIGKILLed, then resumed: at every step of a shard's commit, and at random
times, many times over one run. After the last resume the run must equal the
uninterrupted one byte for byte, with every input exactly once (conftest.check_finished).
"""

from __future__ import annotations

import random
import signal
import subprocess
import time

import pytest

from engine.errors import UserError
from engine.label.manifest import RunManifest, manifest_path
from engine.label.run import label
from tests.conftest import REPO_ROOT
from tests.engine.conftest import request
from tests.faults.conftest import check_finished, check_killed, killpoint_command, row, run_distill

AT_A_STEP = "SIGKILL of distill label at a commit step"
AT_RANDOM = "SIGKILL of distill label at a random time"


def resume_and_check(exported, reference, out, kind: str) -> None:
    start = time.perf_counter()
    done = run_distill(reference.command(exported, out, "--resume"))
    row(kind).recover.append(time.perf_counter() - start)
    assert done.returncode == 0, done.stderr
    check_finished(out, reference, kind)


# Shard 2 (the third) holds a failure. Before its rename: its failure is already appended
# to failures.jsonl but the shard is a hidden temporary and not in the manifest. After its
# rename: the shard is visible but not in the manifest. After the manifest's write: the
# shard is finished. A resume must drop the failure lines of the shards the manifest does
# not list, and the manifest must never list a shard before its rename.
LONG = pytest.mark.faults_long


@pytest.mark.parametrize("pattern, when, number", [
    ("shard-*.jsonl", "before", 3),
    ("shard-*.jsonl", "after", 3),
    pytest.param("manifest.json", "after", 4, marks=LONG),  # the creation's, then shards 0, 1, 2
    pytest.param("shard-*.jsonl", "before", 4, marks=LONG),
])
def test_kill_at_each_commit_step(exported, reference, tmp_path, pattern, when, number):
    out = tmp_path / "run"
    killed = run_distill(killpoint_command(pattern, when, number, reference.command(exported, out)))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    row(AT_A_STEP).injected += 1
    check_killed(out)
    resume_and_check(exported, reference, out, AT_A_STEP)


@LONG
def test_kill_while_resume_drops_unfinished_failures(exported, reference, tmp_path):
    """A second kill, inside the first resume's rewrite of failures.jsonl (after its
    replace), then a second resume."""
    out = tmp_path / "run"
    run_distill(killpoint_command("shard-*.jsonl", "after", 4, reference.command(exported, out)))
    killed = run_distill(killpoint_command("failures.jsonl", "after", 1,
                                           reference.command(exported, out, "--resume")))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    row(AT_A_STEP).injected += 2
    check_killed(out)
    resume_and_check(exported, reference, out, AT_A_STEP)


@pytest.mark.parametrize("kills", [20, pytest.param(200, marks=pytest.mark.faults_long)])
def test_random_kills_then_resume(exported, reference, tmp_path, kills):
    """`kills` SIGKILLs, each followed by --resume (or a fresh start where the kill came
    before the manifest). Each kill's time is drawn uniformly over 1.3 times what this
    process is expected to take: its start (the models opened) plus its share of the
    shards still to do, from the last uninterrupted run's time (re-measured as the load
    changes); so about one process in four finishes first. A run that finishes is checked
    and the next one starts in a new folder."""
    rng, injected, folders = random.Random(kills), 0, 0
    out, killed_before = tmp_path / "run-0", 0
    whole, startup = reference.seconds, reference.startup
    shards = len(RunManifest.load(reference.out).shards)
    while True:
        resume = manifest_path(out).exists()
        left = 1 - len(RunManifest.load(out).shards) / shards if resume else 1
        command = reference.command(exported, out, *(["--resume"] if resume else []))
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        expected = startup + left * (whole - startup)
        try:
            process.wait(timeout=rng.uniform(0, 1.3 * expected) if injected < kills else 600)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            injected += 1
            row(AT_RANDOM).injected += 1
            killed_before += 1
            check_killed(out)
            continue
        assert process.returncode == 0, process.stderr.read().decode()
        if killed_before:
            row(AT_RANDOM).recover.append(time.perf_counter() - start)
        elif not resume:
            whole, startup = time.perf_counter() - start, startup * (time.perf_counter() - start) / whole
        check_finished(out, reference, AT_RANDOM)
        if injected >= kills:
            break
        folders += 1
        out, killed_before = tmp_path / f"run-{folders}", 0


def test_a_file_added_after_a_partial_last_shard_is_refused(exported, dump, tmp_path):
    """A finished run whose last shard is partial (5 images, shards of 4), then a file
    that sorts last: it would fall into that finished shard, so resuming cannot label it
    and must refuse rather than take it as done."""
    images = tmp_path / "images"
    for path in sorted(dump.rglob("*.jpg"))[:5]:
        (images / path.parent.name).mkdir(parents=True, exist_ok=True)
        (images / path.parent.name / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "run"
    label(request(exported, images, out))
    assert [entry.images for entry in RunManifest.load(out).shards] == [4, 1]
    (images / "a" / "zz_new.jpg").write_bytes(next(images.rglob("*.jpg")).read_bytes())
    with pytest.raises(UserError, match="cannot resume: the input changed"):
        label(request(exported, images, out, resume=True))
