"""A finished run folder damaged by hand, then `distill label --resume`.

What a resume does, and why:
- a shard deleted, truncated, extended, or with failure lines missing from
  failures.jsonl: that shard, and only it, is written again. A shard's content is a
  function of the input and the settings alone, and its manifest entry says how many
  lines it must hold and how many failures it had, so the damage is visible and redoing
  the shard repairs it. (A line edited in place, same count, is not detected: that would
  take a checksum per shard.)
- the manifest cut short or not JSON, its settings edited, or a finished shard's first
  file renamed: the resume refuses in one line. The manifest is the only record of how
  the shards were made; without it, or against it, nothing on disk can be trusted.
- the manifest deleted: the folder is a new run; every shard is written again.
"""

from __future__ import annotations

import json
import shutil

from engine.label.manifest import manifest_path
from tests.faults.conftest import check_finished, row, run_distill

REDONE = "shard deleted, truncated, extended, or its failures cut (by hand)"
REFUSED = "manifest cut short or edited by hand"
GONE = "manifest deleted"


def copy_of(reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference.out, out)
    return out


def shard(out, index: int):
    return out / "shards" / f"shard-{index:06d}.jsonl"


def test_damaged_shards_and_only_they_are_written_again(exported, reference, tmp_path):
    out = copy_of(reference, tmp_path)
    shard(out, 0).unlink()
    text = shard(out, 1).read_text()
    shard(out, 1).write_text(text[:len(text) // 2])  # cut inside a record
    lines = shard(out, 4).read_text().splitlines(keepends=True)
    shard(out, 4).write_text(lines[0])  # cut at a line's end
    shard(out, 5).write_text(shard(out, 5).read_text() + lines[0])  # one record too many
    failures = (out / "failures.jsonl").read_text().splitlines(keepends=True)
    assert [json.loads(line)["shard"] for line in failures] == [2, 3]
    (out / "failures.jsonl").write_text(failures[1])  # shard 2's failure gone
    untouched = shard(out, 3).stat().st_mtime_ns
    row(REDONE).injected += 5

    done = run_distill(reference.command(exported, out, "--resume"))
    assert done.returncode == 0, done.stderr
    assert "resumed: 2 images were already done" in done.stdout  # shard 3: one image, one failure
    assert shard(out, 3).stat().st_mtime_ns == untouched
    check_finished(out, reference, REDONE)


def test_a_cut_or_edited_manifest_is_refused_in_one_line(exported, reference, tmp_path):
    out = copy_of(reference, tmp_path)
    text = manifest_path(out).read_text()
    edits = {
        "not readable JSON": text[:len(text) // 2],
        "the settings differ: labeling.merge.score_floor": text.replace('"score_floor": 0.001', '"score_floor": 0.5'),
        "cannot resume: the input changed": text.replace('"first": "a/synth_000002.jpg"', '"first": "a/other.jpg"'),
    }
    for fragment, edited in edits.items():
        assert edited != text, fragment
        manifest_path(out).write_text(edited)
        refused = run_distill(reference.command(exported, out, "--resume"))
        row(REFUSED).injected += 1
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == 2 and len(lines) == 1, refused.stderr
        assert lines[0].startswith("distill label: error: ") and fragment in lines[0], lines[0]
    # refused, and nothing written: the shards are the reference's still
    manifest_path(out).write_text(text)
    check_finished(out, reference, REFUSED)


def test_a_deleted_manifest_starts_the_run_again(exported, reference, tmp_path):
    out = copy_of(reference, tmp_path)
    manifest_path(out).unlink()
    row(GONE).injected += 1
    done = run_distill(reference.command(exported, out, "--resume"))
    assert done.returncode == 0, done.stderr
    assert "already done" not in done.stdout
    check_finished(out, reference, GONE)
