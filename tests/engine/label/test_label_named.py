"""A run's images read back by record name (engine.label.named) for the review tools:
loose files, tar shards' members and video frames give the pixels the labeler decoded,
and `distill gallery` and `distill convert --to yolo` work on such names."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.cli import main
from engine.label.decode import DecodeError, decode_source
from engine.label.discover import open_sources
from engine.label.named import exists, image_bytes, read_image
from engine.label.video import FrameSampling
from tests.engine.label.test_label_video import counting, write_video


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """A run's input folder: a loose JPEG, a tar shard of two PNGs in a sub-folder, a video."""
    root = tmp_path / "dump"
    frames = counting(6)
    (root / "shards").mkdir(parents=True)
    cv2.imwrite(str(root / "loose.jpg"), frames[0])
    with tarfile.open(root / "shards" / "00000.tar", "w") as archive:
        for i in (1, 2):
            path = tmp_path / f"k{i}.png"
            cv2.imwrite(str(path), frames[i])
            archive.add(path, arcname=f"part/k{i}.png")
    write_video(root / "clip.mp4", frames, fps=5.0)
    return root


def test_every_name_reads_the_pixels_the_labeler_decoded(mixed: Path) -> None:
    sources = list(open_sources(mixed, None, frames=FrameSampling(every=2))[1])
    names = [s.name for s in sources]
    assert names == ["clip.mp4#t=0.000", "clip.mp4#t=0.400", "clip.mp4#t=0.800", "loose.jpg",
                     "shards/00000.tar/part/k1.png", "shards/00000.tar/part/k2.png"]
    for source in sources:
        assert exists(mixed, source.name)
        np.testing.assert_array_equal(read_image(mixed, source.name), decode_source(source))
    assert image_bytes(mixed, "shards/00000.tar/part/k1.png") == (mixed.parent / "k1.png").read_bytes()
    assert not exists(mixed, "shards/00000.tar/part/k9.png") and not exists(mixed, "clip2.mp4#t=0.000")
    with pytest.raises(DecodeError, match=r"^no member part/k9\.png in 00000\.tar$"):
        read_image(mixed, "shards/00000.tar/part/k9.png")
    with pytest.raises(DecodeError, match=r"^no frame at t=0\.100 in "):
        read_image(mixed, "clip.mp4#t=0.100")
    with pytest.raises(DecodeError, match=r"^file not found$"):
        read_image(mixed, "gone.jpg")


def _labels(path: Path, names: list[str]) -> Path:
    """COCO labels with one box on each image of `names` (96 x 128 x 128 px)."""
    images = [{"id": i + 1, "file_name": name, "width": 128, "height": 96} for i, name in enumerate(names)]
    annotations = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [10, 10, 40, 30], "area": 1200,
                    "iscrowd": 0, "score": 0.9} for i in range(len(names))]
    path.write_text(json.dumps({
        "info": {"thresholds": {"rule": "fixed", "score": 0.5}}, "images": images, "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}]}))
    return path


NAMES = ["clip.mp4#t=0.400", "loose.jpg", "shards/00000.tar/part/k2.png"]


def test_gallery_draws_tar_members_and_video_frames(mixed: Path, tmp_path: Path, capsys) -> None:
    labels = _labels(tmp_path / "labels.json", NAMES)
    assert main(["gallery", "--labels", str(labels), "--images", str(mixed), "--out", str(tmp_path / "g"),
                 "--workers", "1"]) == 0
    gallery = json.loads((tmp_path / "g" / "gallery.json").read_text())
    assert gallery["thumbnails"] == 3 and gallery["unreadable"] == {}
    thumbs = sorted((tmp_path / "g" / "thumbs").iterdir())
    assert len(thumbs) == 3 and all(cv2.imread(str(p)) is not None for p in thumbs)
    # A name nothing under --images answers to is unreadable, named in unreadable.txt.
    labels = _labels(tmp_path / "labels.json", [*NAMES, "shards/00000.tar/part/k9.png"])
    assert main(["gallery", "--labels", str(labels), "--images", str(mixed), "--out", str(tmp_path / "g"),
                 "--workers", "1"]) == 0
    assert json.loads((tmp_path / "g" / "gallery.json").read_text())["unreadable"] == {
        str(mixed / "shards/00000.tar/part/k9.png"): "no member part/k9.png in 00000.tar"}


def test_yolo_writes_what_it_cannot_link(mixed: Path, tmp_path: Path) -> None:
    labels = _labels(tmp_path / "labels.json", NAMES)
    out = tmp_path / "yolo"
    assert main(["convert", "--labels", str(labels), "--to", "yolo", "--out", str(out), "--images", str(mixed)]) == 0
    assert (out / "images" / "loose.jpg").is_symlink()
    member = out / "images" / "shards/00000.tar/part/k2.png"
    assert not member.is_symlink() and member.read_bytes() == (mixed.parent / "k2.png").read_bytes()
    frame = out / "images" / "clip.mp4#t=0.400.png"  # lossless: the decoded frame itself
    np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(frame)), cv2.COLOR_BGR2RGB),
                                  read_image(mixed, "clip.mp4#t=0.400"))
    assert sorted(os.path.relpath(p, out / "labels") for p in (out / "labels").rglob("*.txt")) == [
        "clip.mp4#t=0.400.txt", "loose.txt", "shards/00000.tar/part/k2.txt"]


def test_objects_are_read_under_their_prefix(mixed: Path) -> None:
    fsspec = pytest.importorskip("fsspec", reason="fsspec (the storage extra) is not installed")
    memory = fsspec.filesystem("memory")
    memory.pipe("/named-test/a/loose.jpg", (mixed / "loose.jpg").read_bytes())
    try:
        source = next(open_sources("memory://named-test", None)[1])
        assert source.name == "a/loose.jpg" and exists("memory://named-test", source.name)
        assert image_bytes("memory://named-test", "a/loose.jpg") == (mixed / "loose.jpg").read_bytes()
        np.testing.assert_array_equal(read_image("memory://named-test", "a/loose.jpg"), decode_source(source))
        with pytest.raises(DecodeError, match=r"^object not found$"):
            read_image("memory://named-test", "a/gone.jpg")
    finally:
        memory.rm("/named-test", recursive=True)
