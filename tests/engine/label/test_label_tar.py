"""Tar shards as input (engine.label.tar): discovery of members, damaged archives, brace
patterns, the decoder's guards on members, and `distill label` over shards against the
same images as loose files, including a resume after SIGKILL."""

from __future__ import annotations

import gzip
import io
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from engine.errors import UserError
from engine.label.decode import DecodeError, decode_file, decode_source
from engine.label.discover import open_sources
from engine.label.run import label
from engine.label.tar import expand_braces, tar_sources
from tests.conftest import REPO_ROOT
from tests.engine.conftest import (assert_same_records, killed_after_two_shards, labeling_command,
                                  read_run, request)
from tests.engine.label.gauntlet import EXIF_NAME, build_gauntlet


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """A plain tar at `path` holding `members` (name, bytes) in this order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def listed(sources) -> list[tuple[str, str | None]]:
    return [(s.name, s.problem) for s in sources]


# ---- discovery ----------------------------------------------------------------------------
def test_members_in_archive_order_named_after_the_shard(tmp_path: Path) -> None:
    shard = write_tar(tmp_path / "00042.tar", [
        ("b.jpg", b"B"), ("b.json", b"{}"), ("a.jpg", b"A"), ("._a.jpg", b"mac"), ("./sub/c.PNG", b"C"),
        (".hidden/d.jpg", b"D")])
    with tarfile.open(shard, "a") as archive:  # a symlink member named like an image
        link = tarfile.TarInfo("link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "a.jpg"
        archive.addfile(link)
    sources = list(tar_sources(shard, "00042.tar"))
    assert listed(sources) == [("00042.tar/b.jpg", None), ("00042.tar/a.jpg", None), ("00042.tar/sub/c.PNG", None),
                               ("00042.tar/link.jpg", "not a regular file (a link or device in the tar)")]
    assert [s.read() for s in sources[:3]] == [b"B", b"A", b"C"]
    # Listing for a count reads no member but names the same sources.
    assert listed(tar_sources(shard, "00042.tar", with_bytes=False)) == listed(sources)
    assert all(s.read is None for s in tar_sources(shard, "00042.tar", with_bytes=False))


def _damaged(tmp_path: Path) -> dict[str, bytes]:
    rng = np.random.default_rng(0)  # incompressible, so that a cut gzip stream is cut mid-archive
    members = [("k1.jpg", rng.bytes(3000)), ("k2.jpg", rng.bytes(3000))]
    whole = write_tar(tmp_path / "whole.tar", members).read_bytes()
    second_header = 512 + 3072
    garbage_header = whole[:second_header] + b"\x01" * 512 + whole[second_header + 512:]
    return {
        "cut_between_members.tar": whole[:second_header],
        "cut_in_member.tar": whole[:second_header + 512 + 100],
        "cut_in_header.tar": whole[:second_header + 100],
        "garbage_header.tar": garbage_header,
        "not_a_tar.tar": b"these are notes, not an archive\n" * 40,
        "empty.tar": b"",
        "cut.tar.gz": gzip.compress(whole)[:5000],
    }


def test_damaged_archives_are_failures_and_discovery_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "dump"
    for name, data in _damaged(tmp_path).items():
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(data)
    write_tar(folder / "zz_good.tar", [("k.jpg", b"K")])
    root, sources = open_sources(folder, None)
    assert root == folder
    got = listed(sources)
    assert got[-1] == ("zz_good.tar/k.jpg", None)  # the damaged ones before it did not stop discovery
    problems = dict(got)
    assert problems["cut_between_members.tar/k1.jpg"] is None
    assert problems["cut_between_members.tar"].startswith("truncated tar: ends without the end-of-archive block")
    assert problems["cut_in_member.tar/k2.jpg"] == "truncated tar member: unexpected end of data"
    assert problems["cut_in_header.tar"].startswith("truncated tar: ")
    assert problems["garbage_header.tar"].startswith("corrupt tar: invalid header at byte 3584")
    assert problems["not_a_tar.tar"].startswith("not a readable tar archive: ")
    assert problems["empty.tar"] == "not a readable tar archive: empty file"
    assert problems["cut.tar.gz/k1.jpg"] is None
    assert problems["cut.tar.gz/k2.jpg"] == "truncated tar member: unexpected end of data"
    assert all("\n" not in (problem or "") for problem in problems.values())


def test_brace_expansion() -> None:
    assert expand_braces("d/{00008..00011}.tar") == [f"d/{n:05d}.tar" for n in range(8, 12)]
    assert expand_braces("s{0..1}-{a,b}.tar") == ["s0-a.tar", "s0-b.tar", "s1-a.tar", "s1-b.tar"]
    assert expand_braces("plain.tar") == ["plain.tar"]
    with pytest.raises(ValueError, match="runs backwards"):
        expand_braces("{3..1}.tar")


def test_brace_pattern_root_names_and_missing_shards(tmp_path: Path) -> None:
    for n in (0, 2):
        write_tar(tmp_path / "dump" / f"{n:05d}.tar", [(f"k{n}.jpg", b"x")])
    root, sources = open_sources(str(tmp_path / "dump" / "{00000..00002}.tar"), None)
    assert root == tmp_path / "dump"
    assert listed(sources) == [("00000.tar/k0.jpg", None), ("00001.tar", "file not found"), ("00002.tar/k2.jpg", None)]
    root, sources = open_sources(tmp_path / "dump" / "00002.tar", None)  # one shard: named as in the folder
    assert root == tmp_path / "dump" and listed(sources) == [("00002.tar/k2.jpg", None)]
    with pytest.raises(UserError, match=r"^brace range \{2\.\.0\} runs backwards: "):
        open_sources(str(tmp_path / "dump" / "{2..0}.tar"), None)
    with pytest.raises(UserError, match=r"^a brace pattern names tar shards"):
        open_sources(str(tmp_path / "dump" / "{a,b}.jpg"), None)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match=r"^not a folder, a tar archive or a video: "):
        open_sources(tmp_path / "notes.txt", None)


def test_ray_refuses_shards(tmp_path: Path) -> None:
    from engine.label.shards import FinishedShards
    from engine.scale.split import split_into_shards

    write_tar(tmp_path / "00000.tar", [("k.jpg", b"x")])
    with pytest.raises(UserError, match=r"^tar shards, object storage and videos are read on one box only, not on Ray: "
                                        r"00000\.tar/k\.jpg$"):
        list(split_into_shards(open_sources(tmp_path, None)[1], 4, FinishedShards({}, 4)))


def test_list_file_entries_may_be_shards(tmp_path: Path) -> None:
    write_tar(tmp_path / "shards" / "00000.tar", [("k.jpg", b"x")])
    (tmp_path / "loose.jpg").write_bytes(b"y")
    (tmp_path / "list.txt").write_text("shards/00000.tar\nloose.jpg\n")
    _, sources = open_sources(None, tmp_path / "list.txt")
    assert listed(sources) == [("shards/00000.tar/k.jpg", None), ("loose.jpg", None)]


# ---- the decoder's guards on members ------------------------------------------------------
def test_members_decode_exactly_as_their_files(tmp_path: Path) -> None:
    """Every regular file of the gauntlet (bomb, EXIF rotation, CMYK, 16-bit, damaged
    JPEGs, ...) decodes from a tar member to the same pixels, or the same reason, as from
    its own file."""
    root = tmp_path / "gauntlet"
    build_gauntlet(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and not p.name.startswith("."))
    readable = [p for p in files if _readable(p)]
    shard = tmp_path / "gauntlet.tar"
    with tarfile.open(shard, "w") as archive:
        for path in readable:
            archive.add(path, arcname=path.relative_to(root).as_posix(), recursive=False)
    members = {s.name.removeprefix("gauntlet.tar/"): s for s in tar_sources(shard, "gauntlet.tar")}
    assert EXIF_NAME in members and "bomb.png" in members
    for path in readable:
        name = path.relative_to(root).as_posix()
        if name not in members:  # not an image name: neither discovery kind offers it
            continue
        assert _outcome(lambda: decode_file(path)) == _outcome(lambda: decode_source(members[name])), name


def _readable(path: Path) -> bool:
    try:
        path.read_bytes()
        return True
    except OSError:
        return False


def _outcome(decode) -> tuple:
    try:
        image = decode()
    except DecodeError as error:
        return ("failed", str(error))
    return ("decoded", image.shape, int(np.asarray(image, np.int64).sum()))


# ---- distill label over shards ------------------------------------------------------------
def _shards_of(dump: Path, folder: Path) -> list[str]:
    """The dump's sub-folders a/ and b/ as shards 00000.tar and 00001.tar (members named
    without the folder); returns the loose names in shard order."""
    names = []
    for n, sub in enumerate(sorted(p for p in dump.iterdir() if p.is_dir())):
        files = sorted(sub.glob("*.jpg"))
        write_tar(folder / f"{n:05d}.tar", [(p.name, p.read_bytes()) for p in files])
        names += [f"{sub.name}/{p.name}" for p in files]
    return names


def test_tar_run_matches_loose_files_and_records_bad_members(exported, dump, tmp_path):
    loose_names = _shards_of(dump, tmp_path / "shards")
    with tarfile.open(tmp_path / "shards" / "00000.tar", "a") as archive:  # a member that is not an image
        info = tarfile.TarInfo("notes.jpg")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"notes"))
    label(request(exported, dump, tmp_path / "loose"))
    pattern = str(tmp_path / "shards" / "{00000..00001}.tar")
    summary = label(request(exported, pattern, tmp_path / "tar"))
    loose, _ = read_run(tmp_path / "loose")
    packed, failures = read_run(tmp_path / "tar")
    tar_names = [r["file_name"] for r in packed]
    assert [n.split("/")[1] for n in tar_names] == [n.split("/")[1] for n in loose_names]
    assert tar_names[0].startswith("00000.tar/") and tar_names[-1].startswith("00001.tar/")
    renamed = [{**r, "file_name": name} for r, name in zip(packed, loose_names)]
    assert_same_records(renamed, loose)
    assert [{k: v for k, v in a.items() if k != "file_name"} for a in renamed] == \
           [{k: v for k, v in b.items() if k != "file_name"} for b in loose]
    assert failures == [{"file_name": "00000.tar/notes.jpg", "reason": "not an image (unrecognized format)",
                         "shard": 1}]
    assert summary.images == 10 and summary.failed == 1


def test_tar_run_resumes_after_sigkill(exported, dump, tmp_path):
    _shards_of(dump, tmp_path / "shards")
    out = tmp_path / "run"
    done = killed_after_two_shards(labeling_command(exported, tmp_path / "shards", out), out)
    assert not done.complete and 2 <= len(done.shards) < 5
    before = {entry.file: (out / "shards" / entry.file).stat().st_mtime_ns for entry in done.shards}

    finished = subprocess.run(labeling_command(exported, tmp_path / "shards", out, "--resume"),
                              cwd=REPO_ROOT, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    records, failures = read_run(out)
    assert len({r["file_name"] for r in records}) == len(records) == 10 and not failures
    assert sorted(p.name for p in (out / "shards").iterdir()) == [f"shard-{i:06d}.jsonl" for i in range(5)]
    # The shards written before the kill were not written again.
    assert {f: (out / "shards" / f).stat().st_mtime_ns for f in before} == before
    label(request(exported, tmp_path / "shards", tmp_path / "whole"))
    assert_same_records(records, read_run(tmp_path / "whole")[0])
