"""`distill label --dedupe`: exact duplicates become pointer records to their first
occurrence, `distill select` skips them, and a resumed run decides as an uninterrupted one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.label.decode import content_digest
from engine.label.manifest import RunManifest
from engine.label.request import Inputs
from engine.label.run import label
from engine.options import InputOptions, OneLineParser
from engine.select.predictions import iter_records
from tests.engine.conftest import assert_same_records, read_run
from tests.engine.conftest import request


def _with_copies(dump: Path, folder: Path) -> dict[str, str]:
    """The dump plus exact copies and a non-image twice; returns {copy: first occurrence}."""
    shutil.copytree(dump, folder)
    originals = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))
    copies = {"b/zz_copy.jpg": originals[0], "c/copy_of_copy.jpg": originals[0], "c/second.jpg": originals[6]}
    for copy, first in copies.items():
        (folder / copy).parent.mkdir(exist_ok=True)
        shutil.copyfile(folder / first, folder / copy)
    (folder / "a" / "0_notes.jpg").write_text("notes, not an image")
    (folder / "c" / "notes_again.jpg").write_text("notes, not an image")
    copies["c/notes_again.jpg"] = "a/0_notes.jpg"
    return copies


def test_digest_tells_bytes_apart() -> None:
    assert content_digest(b"abc") == content_digest(bytes(b"abc")) and len(content_digest(b"abc")) == 16
    assert content_digest(b"abc") != content_digest(b"abd")


def test_duplicates_are_pointers_and_select_skips_them(exported, dump, tmp_path):
    folder = tmp_path / "images"
    copies = _with_copies(dump, folder)
    out = tmp_path / "dedupe"
    summary = label(request(exported, folder, out, inputs=Inputs(images=folder, dedupe=True)))
    label(request(exported, dump, tmp_path / "plain"))
    records, failures = read_run(out)
    pointers = {r["file_name"]: r for r in records if "duplicate_of" in r}
    assert pointers == {name: {"file_name": name, "duplicate_of": first} for name, first in copies.items()}
    labeled = [r for r in records if "duplicate_of" not in r]
    assert_same_records(labeled, read_run(tmp_path / "plain")[0])  # the originals, labeled as without --dedupe
    assert [f["file_name"] for f in failures] == ["a/0_notes.jpg"]  # its copy points at it
    assert summary.duplicates == 4 and summary.images == 10 and summary.failed == 1
    # In discovery order, each pointer comes after its first occurrence.
    names = [r["file_name"] for r in records]
    assert all(names.index(name) > names.index(first) for name, first in copies.items() if first in names)
    assert [r["file_name"] for r in iter_records(out)] == [r["file_name"] for r in labeled]
    manifest = RunManifest.load(out)
    assert manifest.settings.input.dedupe and manifest.summary.duplicates == 4
    with pytest.raises(UserError, match=r"the settings differ: input\.dedupe was true, now null"):
        label(request(exported, folder, out, resume=True))


def test_resume_hashes_the_finished_shards_again(exported, dump, tmp_path):
    folder = tmp_path / "images"
    _with_copies(dump, folder)
    inputs = Inputs(images=folder, dedupe=True)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    label(request(exported, folder, whole, inputs=inputs))
    # As if killed after the first shard: the later shards' first occurrences live in it.
    shutil.copytree(whole, cut)
    manifest = RunManifest.load(cut)
    for entry in manifest.shards[1:]:
        (cut / "shards" / entry.file).unlink()
    manifest.shards[1:] = []
    manifest.complete = False
    manifest.save(cut)
    summary = label(request(exported, folder, cut, inputs=inputs, resume=True))
    assert summary.skipped == 4
    assert read_run(cut) == read_run(whole)


def test_ray_refuses_dedupe(tmp_path) -> None:
    from engine.label.request import LabelRequest, RayPool
    from engine.scale.driver import label_on_ray

    request = LabelRequest(detector=tmp_path / "d.onnx", out=tmp_path / "out", inputs=Inputs(images=tmp_path, dedupe=True))
    with pytest.raises(UserError, match="^skipping duplicates runs on one box only, not on Ray$"):
        label_on_ray(request, RayPool())
    assert not (tmp_path / "out").exists()


def test_dedupe_option() -> None:
    parser = OneLineParser()
    InputOptions().add(parser)
    assert InputOptions().parse(parser.parse_args(["--images", "d", "--dedupe"])) == Inputs(images=Path("d"), dedupe=True)
    assert not InputOptions().parse(parser.parse_args(["--images", "d"])).dedupe
