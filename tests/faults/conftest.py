"""The fault harness's shared parts: the input every labeling fault runs on, the
uninterrupted run it must end equal to, the invariants checked after every fault, and the
table of figures (`make faults` prints it; README "What it survives").

Tests marked `faults_long` (hundreds of kills, the Ray cluster) run only where
DISTILL_FAULTS_LONG=1 (`make faults`, which runs every test here, short and long) or the
marker expression names them (`pytest -m faults_long tests/faults`); the default suite
runs the short versions. With DISTILL_FAULTS_TABLE=FILE the table is also written there.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.label.manifest import RunManifest, manifest_path
from tests.conftest import REPO_ROOT
from tests.engine.conftest import dump, labeling_command, read_run  # noqa: F401 (dump: a fixture used here)
from tests.trainer.conftest import synth_small  # noqa: F401 (a fixture used here)

# Two unreadable files in the middle of the input, so that shards 2 and 3 (of six, two
# images each) carry failures: a kill between a shard's failures and its manifest entry
# then has something to repeat.
BROKEN = {"a/zz_truncated.jpg": b"\xff\xd8\xff\xe0" + b"\0" * 40, "b/0_text.jpg": b"not an image\n"}


def pytest_collection_modifyitems(config, items):
    if "faults_long" in (config.getoption("markexpr") or "") or os.environ.get("DISTILL_FAULTS_LONG") == "1":
        return
    skip = pytest.mark.skip(reason="long fault run: make faults")
    for item in items:
        if "faults_long" in item.keywords:
            item.add_marker(skip)


# ---- the table of figures -------------------------------------------------------------------
@dataclass
class Row:
    """One fault kind's figures: faults injected, runs that then completed, images lost and
    images written twice (over every completed run), seconds to recover (each completing
    resume's wall time)."""

    injected: int = 0
    completed: int = 0
    lost: int = 0
    twice: int = 0
    recover: list[float] = field(default_factory=list)


TABLE: dict[str, Row] = {}


def row(kind: str) -> Row:
    """`kind`'s row. Where DISTILL_FAULTS_TABLE is set, the table as it stands is written
    there on every call, so that a long run stopped half-way still leaves its figures."""
    write_table()
    return TABLE.setdefault(kind, Row())


def write_table() -> None:
    target = os.environ.get("DISTILL_FAULTS_TABLE")
    if target and TABLE:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text("\n".join(table_lines()) + "\n")


def table_lines() -> list[str]:
    lines = ["| fault | injected | runs completed | images lost | images written twice "
             "| time to recover, median (max) |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    for kind, r in TABLE.items():
        recover = (f"{statistics.median(r.recover):.1f} s ({max(r.recover):.1f} s)" if r.recover else "-")
        lines.append(f"| {kind} | {r.injected} | {r.completed} | {r.lost} | {r.twice} | {recover} |")
    return lines


def pytest_terminal_summary(terminalreporter):
    if not TABLE:
        return
    terminalreporter.write_sep("=", "faults survived")
    for line in table_lines():
        terminalreporter.write_line(line)
    write_table()


# ---- the input and the uninterrupted run ----------------------------------------------------
@pytest.fixture(scope="session")
def fault_images(dump, tmp_path_factory) -> Path:
    """The engine tests' ten images plus the two BROKEN files (twelve inputs, six shards)."""
    root = tmp_path_factory.mktemp("fault_images") / "images"
    shutil.copytree(dump, root)
    for name, data in BROKEN.items():
        (root / name).write_bytes(data)
    return root


@dataclass
class Reference:
    """An uninterrupted run of `command` over `images`: its folder, every input name, its
    wall time and the part of it before its manifest was written (models opened)."""

    out: Path
    images: Path
    names: list[str]
    seconds: float
    startup: float

    def command(self, exported, out: Path, *extra: str) -> list[str]:
        return labeling_command(exported, self.images, out, *extra)


@pytest.fixture(scope="session")
def reference(exported, fault_images, tmp_path_factory) -> Reference:
    out = tmp_path_factory.mktemp("reference") / "run"
    start = time.perf_counter()
    process = subprocess.Popen(labeling_command(exported, fault_images, out), cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while process.poll() is None and not manifest_path(out).exists():
        time.sleep(0.01)
    startup = time.perf_counter() - start
    assert process.wait(timeout=600) == 0, process.stderr.read().decode()
    seconds = time.perf_counter() - start
    names = sorted(p.relative_to(fault_images).as_posix() for p in fault_images.rglob("*") if p.is_file())
    records, failures = read_run(out)
    assert len(records) == 10 and sorted(f["file_name"] for f in failures) == sorted(BROKEN)
    assert {f["shard"] for f in failures} == {2, 3}
    return Reference(out, fault_images, names, seconds, startup)


def run_distill(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, **kwargs)


def killpoint_command(pattern: str, when: str, number: int, command: list[str]) -> list[str]:
    """`command` (a `python -m engine.cli ...` list) SIGKILLed by tests/faults/killpoint.py
    `when` ("before" or "after") its `number`th os.replace onto a file named like `pattern`."""
    cli = command.index("engine.cli")
    return [sys.executable, "-m", "tests.faults.killpoint", pattern, when, str(number), *command[cli + 1:]]


# ---- the invariants -------------------------------------------------------------------------
def hidden_files(out: Path) -> list[str]:
    """Temporary files (hidden: a shard before its rename, a manifest or failures file
    before its replace, a lock) left anywhere under `out`."""
    return sorted(p.relative_to(out).as_posix() for p in out.rglob(".*"))


def check_killed(out: Path) -> None:
    """What must hold right after a kill, before any resume: the manifest, when there is
    one, parses, and every shard it lists is there, whole."""
    if not manifest_path(out).exists():
        return
    manifest = RunManifest.load(out)
    for entry in manifest.shards:
        lines = (out / "shards" / entry.file).read_text(encoding="utf-8").splitlines()
        assert len(lines) == entry.images, entry


def check_finished(out: Path, reference: Reference, kind: str) -> None:
    """The invariants after the final resume, counted into `kind`'s row before they are
    asserted: every input exactly once across records and failures (a missing one is
    lost, a repeated one written twice), shards byte for byte the reference run's and
    failures line for line, the manifest complete and listing exactly the shard files, no
    temporary file."""
    manifest = RunManifest.load(out)
    listed = [entry.file for entry in manifest.shards]
    present = [entry for entry in listed if (out / "shards" / entry).is_file()]
    records = [line for entry in present
               for line in (out / "shards" / entry).read_text(encoding="utf-8").splitlines()]
    failure_lines = (out / "failures.jsonl").read_text().splitlines()
    seen = Counter([json.loads(line)["file_name"] for line in records]
                   + [json.loads(line)["file_name"] for line in failure_lines])
    r = row(kind)
    r.completed += 1
    r.lost += sum(1 for name in reference.names if name not in seen)
    r.twice += sum(count - 1 for count in seen.values())
    assert listed == present, f"the manifest lists shards that are not there: {sorted(set(listed) - set(present))}"
    assert sorted(seen) == reference.names and max(seen.values()) == 1, seen
    assert manifest.complete
    assert sorted(p.name for p in (out / "shards").iterdir() if not p.name.startswith(".")) == listed
    for entry in listed:
        assert (out / "shards" / entry).read_bytes() == (reference.out / "shards" / entry).read_bytes(), entry
    # In commit order, which a shard written again on resume changes.
    assert sorted(failure_lines) == sorted((reference.out / "failures.jsonl").read_text().splitlines())
    old = RunManifest.load(reference.out)
    assert [e.to_dict() for e in manifest.shards] == [e.to_dict() for e in old.shards]
    assert hidden_files(out) == []
