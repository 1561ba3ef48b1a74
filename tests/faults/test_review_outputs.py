"""`distill select`, `distill convert` and `distill gallery` SIGKILLed at random times:
their output is whole or absent (or, for a gallery, marked incomplete), never half
written, and the next run completes with nothing left behind.

- select: LABELS.json is replaced atomically (absent, or the reference's bytes);
- convert: DIR is built in a hidden staging folder renamed at the end (absent, or every
  file the reference has, equal); a killed conversion's staging folder is removed by the
  next one;
- gallery: gallery.json says `complete: false` from before the first file is touched
  until the last is written; a folder that says `complete: true` holds every file.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO_ROOT
from tests.faults.conftest import killpoint_command, row, run_distill


def distill(*args) -> list[str]:
    return [sys.executable, "-m", "engine.cli", *map(str, args)]


def files_of(folder) -> dict[str, bytes]:
    """{path: bytes} of every file under `folder`, the folder's own path in them (data.yaml
    names it) replaced by DIR."""
    return {p.relative_to(folder).as_posix(): p.read_bytes().replace(str(folder).encode(), b"DIR")
            for p in sorted(folder.rglob("*")) if p.is_file()}


def labels_of(path) -> dict:
    """A labels file's JSON without its time of writing."""
    data = json.loads(path.read_text())
    del data["info"]["date_created"]
    return data


def leftovers(folder) -> list[str]:
    """Hidden files or folders beside or inside an output (temporaries, staging folders)."""
    return sorted(p.name for p in folder.rglob(".*"))


COMMANDS = {
    "select": lambda ref, out: distill("select", "--predictions", ref.out, "--out", out, "--threshold", 0.02),
    "convert": lambda ref, out: distill("convert", "--labels", ref.labels, "--to", "yolo", "--out", out),
    "gallery": lambda ref, out: distill("gallery", "--labels", ref.labels, "--images", ref.images, "--out", out,
                                        "--workers", 1),
}


def check_output(command: str, out, reference) -> bool:
    """Whether `out` is a complete output equal to `reference`; asserts that it is one of
    the states allowed after a kill."""
    if command == "select":
        if not out.exists():
            return False
        assert labels_of(out) == labels_of(reference)
        return True
    if command == "convert":
        if not out.exists():
            return False
        assert files_of(out) == files_of(reference)
        return True
    marker = out / "gallery.json"
    if not marker.exists():
        return False
    if not json.loads(marker.read_text())["complete"]:
        return False
    assert sorted(files_of(out)) == sorted(files_of(reference))
    return True


class Ref:
    pass


@pytest.fixture(scope="module")
def outputs(reference, tmp_path_factory):
    """The labels `distill select` makes of the reference run, and each command's
    uninterrupted output and wall time."""
    root = tmp_path_factory.mktemp("review")
    ref = Ref()
    ref.out, ref.images, ref.labels = reference.out, reference.images, root / "labels.json"
    made = {}
    for command, make in COMMANDS.items():
        out = ref.labels if command == "select" else root / command
        start = time.perf_counter()
        done = run_distill(make(ref, out))
        assert done.returncode == 0, done.stderr
        made[command] = (out, time.perf_counter() - start)
    return ref, made


@pytest.mark.parametrize("command, kills", [
    ("select", 3), ("convert", 3),
    *(pytest.param(command, 20, marks=pytest.mark.faults_long) for command in COMMANDS),
])
def test_killed_outputs_are_whole_or_absent(outputs, tmp_path, command, kills):
    ref, made = outputs
    reference, seconds = made[command]
    kind = f"SIGKILL of distill {command} at a random time"
    rng = random.Random(kills)
    out = tmp_path / ("labels.json" if command == "select" else command)
    for _ in range(kills):
        process = subprocess.Popen(COMMANDS[command](ref, out), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        try:
            process.wait(timeout=rng.uniform(0, seconds))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            row(kind).injected += 1
            if check_output(command, out, reference) and command == "convert":
                out = out.with_name(out.name + "-again")  # killed after its rename: DIR must be new
            continue
        assert process.returncode == 0, process.stderr.read().decode()
        assert check_output(command, out, reference)
        row(kind).completed += 1
        if command != "gallery":  # a gallery is rebuilt in place; the others need a new output
            out = out.with_name(out.name + "-again")
    start = time.perf_counter()
    if command == "convert" and out.exists():
        out = out.with_name(out.name + "-last")
    done = run_distill(COMMANDS[command](ref, out))
    row(kind).recover.append(time.perf_counter() - start)
    assert done.returncode == 0, done.stderr
    assert check_output(command, out, reference)
    row(kind).completed += 1
    assert leftovers(tmp_path) == []


def test_a_gallery_killed_while_it_clears_the_previous_one_says_incomplete(outputs, tmp_path):
    """Rebuilding a gallery clears the old one's files first: killed there, the folder
    must not still claim to be complete, and the next build must accept it."""
    ref, made = outputs
    reference, _ = made["gallery"]
    out = tmp_path / "gallery"
    assert run_distill(COMMANDS["gallery"](ref, out)).returncode == 0
    killed = run_distill(killpoint_command("unlink:*.html", "after", 1, COMMANDS["gallery"](ref, out)))
    assert killed.returncode == -9, killed.stderr
    row("SIGKILL of distill gallery while it clears the old one").injected += 1
    assert not check_output("gallery", out, reference)
    done = run_distill(COMMANDS["gallery"](ref, out))
    assert done.returncode == 0, done.stderr
    assert check_output("gallery", out, reference)
    row("SIGKILL of distill gallery while it clears the old one").completed += 1


def test_a_conversion_killed_before_its_rename_leaves_nothing_behind(outputs, tmp_path):
    """Killed with the whole output in its staging folder, just before the rename: DIR is
    absent, and the next conversion removes the dead one's staging folder."""
    ref, made = outputs
    reference, _ = made["convert"]
    out = tmp_path / "convert"
    killed = run_distill(killpoint_command("rename:convert", "before", 1, COMMANDS["convert"](ref, out)))
    assert killed.returncode == -9, killed.stderr
    kind = "SIGKILL of distill convert before its rename"
    row(kind).injected += 1
    assert not out.exists() and len(leftovers(tmp_path)) == 1
    done = run_distill(COMMANDS["convert"](ref, out))
    assert done.returncode == 0, done.stderr
    assert check_output("convert", out, reference) and leftovers(tmp_path) == []
    row(kind).completed += 1
