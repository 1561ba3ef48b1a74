"""Video files as input (engine.label.video): frame sampling and names, damaged videos as
failure entries, and `distill label` over videos against the same frames as image files,
including a resume after SIGKILL. Every video is written by the test itself with
cv2.VideoWriter (OpenCV's FFmpeg backend, the decoder the engine reads them with)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.cli import main as distill
from engine.errors import UserError
from engine.label.decode import decode_source
from engine.label.discover import open_sources
from engine.label.manifest import RunInput
from engine.label.request import Inputs
from engine.label.run import label
from engine.label.video import FrameSampling, frame_name, read_frame, split_frame_name, video_sources
from tests.conftest import REPO_ROOT, assert_cli_error
from tests.engine.conftest import (assert_same_records, killed_after_two_shards, labeling_command, read_run,
                                  request)

SIZE = (128, 96)  # (width, height): even sides, as the MPEG-4 encoder wants


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0, codec: str = "mp4v") -> Path:
    """A video at `path` of `frames`, (H, W, 3) uint8 RGB, at `fps`: MPEG-4 (mp4v), or
    another FourCC such as MJPG (in an .avi)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, SIZE)
    assert writer.isOpened(), f"OpenCV cannot write {codec} here"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def counting(n: int) -> list[np.ndarray]:
    """`n` frames that differ from each other: a gray level and the frame's number."""
    frames = []
    for i in range(n):
        frame = np.full((SIZE[1], SIZE[0], 3), (i * 8) % 256, np.uint8)
        cv2.putText(frame, str(i), (8, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
        frames.append(frame)
    return frames


def listed(sources) -> list[tuple[str, str | None]]:
    return [(s.name, s.problem) for s in sources]


# ---- names and sampling -------------------------------------------------------------------
def test_frame_names() -> None:
    assert frame_name("a/match.mp4", 12480.0) == "a/match.mp4#t=12.480"
    assert frame_name("m.mkv", 33.3667) == "m.mkv#t=0.033"
    assert split_frame_name("a/match.mp4#t=12.480") == ("a/match.mp4", 12.48)
    assert split_frame_name("a/photo.jpg") is None
    assert split_frame_name("notes.txt#t=1.000") is None  # only a video's name carries a time


def test_sampling_by_rate_and_by_step(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", counting(30), fps=10.0)
    times = lambda sampling: [s.name for s in video_sources(video, "v.mp4", sampling)]  # noqa: E731
    assert times(FrameSampling(fps=2)) == [f"v.mp4#t={t:.3f}" for t in (0, 0.5, 1, 1.5, 2, 2.5)]
    # 3 per second of a 10 fps video: the first frame of each third of a second.
    assert times(FrameSampling(fps=3))[:4] == ["v.mp4#t=0.000", "v.mp4#t=0.400", "v.mp4#t=0.700", "v.mp4#t=1.000"]
    assert times(FrameSampling(every=10)) == ["v.mp4#t=0.000", "v.mp4#t=1.000", "v.mp4#t=2.000"]
    assert len(times(FrameSampling(every=1))) == 30
    assert len(times(FrameSampling(fps=100))) == 30  # never more than the video has
    # A count for the progress bar decodes nothing and comes from the container.
    assert len(list(video_sources(video, "v.mp4", FrameSampling(fps=2), with_bytes=False))) == 6
    assert len(list(video_sources(video, "v.mp4", FrameSampling(every=7), with_bytes=False))) == 5
    for bad in ({}, {"fps": 2, "every": 3}, {"fps": 0}, {"fps": float("nan")}, {"every": 0}):
        with pytest.raises(ValueError):
            FrameSampling(**bad)


def test_frames_are_rgb_and_read_back_by_name(tmp_path: Path) -> None:
    frames = counting(12)
    video = write_video(tmp_path / "v.mp4", frames)
    sources = list(video_sources(video, "v.mp4", FrameSampling(every=4)))
    assert len(sources) == 3
    for source, original in zip(sources, frames[::4]):
        image = decode_source(source)
        assert image.shape == (SIZE[1], SIZE[0], 3) and image.dtype == np.uint8
        assert np.abs(image.astype(int) - original).mean() < 8  # lossy, but these frames, in RGB order
        _, seconds = split_frame_name(source.name)
        np.testing.assert_array_equal(read_frame(video, seconds), image)  # the reviewers' reader
    with pytest.raises(ValueError, match=r"^no frame at t=0\.050 in "):
        read_frame(video, 0.05)


# ---- discovery of videos --------------------------------------------------------------------
def test_damaged_videos_are_failures_and_discovery_goes_on(tmp_path: Path) -> None:
    good = write_video(tmp_path / "src.mp4", counting(30)).read_bytes()
    # An AVI declares its frame count in its header: cut in half, it still opens.
    avi = write_video(tmp_path / "src.avi", counting(30), codec="MJPG").read_bytes()
    concealed = bytearray(good)
    concealed[len(good) // 3:len(good) // 3 + 200] = bytes(200)  # zeros over a frame in the middle
    folder = tmp_path / "dump"
    folder.mkdir()
    for name, data in {"a_junk.mp4": b"not a video\n" * 20, "b_empty.mkv": b"", "c_cut.mp4": good[:len(good) // 2],
                       "d_cut.avi": avi[:len(avi) // 2], "e_concealed.mp4": bytes(concealed),
                       "f_good.mp4": good}.items():
        (folder / name).write_bytes(data)
    (folder / "g.jpg").write_bytes(b"an image comes after the videos")
    got = listed(open_sources(folder, None, frames=FrameSampling(fps=2))[1])
    assert got[:3] == [("a_junk.mp4", "not a readable video (unknown format, truncated or corrupt)"),
                       ("b_empty.mkv", "not a readable video (unknown format, truncated or corrupt)"),
                       ("c_cut.mp4", "not a readable video (unknown format, truncated or corrupt)")]
    # The frames before the cut are kept; where decoding stopped is one failure entry.
    cut = [entry for entry in got if entry[0].startswith("d_cut.avi")]
    assert cut[:2] == [("d_cut.avi#t=0.000", None), ("d_cut.avi#t=0.500", None)]
    assert cut[-1][0] == "d_cut.avi" and len(cut) < 7
    assert re.fullmatch(r"corrupt or truncated video: decoding stopped after \d+ of 30 frames \(last at t=\d+\.\d{3}\)",
                        cut[-1][1])
    # Damage FFmpeg conceals (it decodes the frame with artifacts) goes unnoticed, as in a player.
    good_times = [(f"{{}}#t={t:.3f}", None) for t in (0, 0.5, 1, 1.5, 2, 2.5)]
    for video in ("e_concealed.mp4", "f_good.mp4"):
        assert [entry for entry in got if entry[0].startswith(video)] == \
               [(name.format(video), problem) for name, problem in good_times]
    assert got[-1] == ("g.jpg", None)


def test_videos_only_with_a_sampling(tmp_path: Path) -> None:
    write_video(tmp_path / "dump" / "v.mp4", counting(10))
    (tmp_path / "dump" / "p.jpg").write_bytes(b"x")
    # Without a sampling a folder's videos are skipped, as before video was read at all.
    assert listed(open_sources(tmp_path / "dump", None)[1]) == [("p.jpg", None)]
    with pytest.raises(UserError, match=r"^a video needs a frame sampling .*: .*v\.mp4$"):
        open_sources(tmp_path / "dump" / "v.mp4", None)
    root, sources = open_sources(tmp_path / "dump" / "v.mp4", None, frames=FrameSampling(every=5))
    assert root == tmp_path / "dump" and listed(sources) == [("v.mp4#t=0.000", None), ("v.mp4#t=0.500", None)]
    (tmp_path / "list.txt").write_text("dump/v.mp4\ndump/p.jpg\ndump/gone.mp4\n")
    assert listed(open_sources(None, tmp_path / "list.txt", frames=FrameSampling(every=5))[1]) == [
        ("dump/v.mp4#t=0.000", None), ("dump/v.mp4#t=0.500", None), ("dump/p.jpg", None),
        ("dump/gone.mp4", "file not found")]


def test_the_sampling_is_part_of_the_run_input() -> None:
    for frames in (FrameSampling(fps=2.5), FrameSampling(every=3), None):
        run_input = RunInput(images=Path("/d"), frames=frames)
        assert RunInput.from_dict(run_input.to_dict()) == run_input
    assert RunInput(images=Path("/d")).to_dict() == {"images": "/d"}  # runs without video: as before


def test_cli_asks_for_a_sampling(tmp_path: Path, capsys) -> None:
    video = write_video(tmp_path / "v.mp4", counting(4))
    args = ["label", "--detector", str(tmp_path / "none.onnx"), "--out", str(tmp_path / "out")]
    assert_cli_error(capsys, distill([*args, "--images", str(video)]), "label",
                     "is a video: give --fps N or --every-frame K")
    for extra, fragment in ((["--fps", "0"], "argument --fps: must be a finite number > 0"),
                            (["--fps", "2", "--every-frame", "3"], "not allowed with argument")):
        with pytest.raises(SystemExit) as exit_:  # argparse's own refusals exit from the parser
            distill([*args, "--images", str(video), *extra])
        assert_cli_error(capsys, exit_.value.code, "label", fragment)


def test_ray_refuses_videos(tmp_path: Path) -> None:
    from engine.label.shards import FinishedShards
    from engine.scale.split import split_into_shards

    write_video(tmp_path / "v.mp4", counting(4))
    with pytest.raises(UserError, match=r"on one box only, not on Ray: v\.mp4#t=0\.000$"):
        list(split_into_shards(open_sources(tmp_path, None, frames=FrameSampling(every=2))[1], 4,
                               FinishedShards({}, 4)))


# ---- distill label over videos ----------------------------------------------------------------
def _dump_videos(dump: Path, folder: Path) -> list[np.ndarray]:
    """The dump's sub-folders a/ and b/ as two videos a.mp4 and b.mp4 of their images
    resized to SIZE, at 5 frames per second; returns the frames as decoded back, in order."""
    for sub in sorted(p for p in dump.iterdir() if p.is_dir()):
        frames = [cv2.resize(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), SIZE)
                  for p in sorted(sub.glob("*.jpg"))]
        write_video(folder / f"{sub.name}.mp4", frames, fps=5.0)
    return [decode_source(s) for s in open_sources(folder, None, frames=FrameSampling(every=1))[1]]


def test_video_run_matches_the_frames_as_files(exported, dump, tmp_path):
    """A run over videos writes, per frame, the record a run over the same decoded frames
    as lossless PNG files writes; a corrupt video is a failure entry and the run goes on."""
    decoded = _dump_videos(dump, tmp_path / "videos")
    (tmp_path / "videos" / "c.mp4").write_bytes(b"broken" * 50)
    loose = tmp_path / "frames"
    loose.mkdir()
    for i, frame in enumerate(decoded):
        cv2.imwrite(str(loose / f"{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    label(request(exported, loose, tmp_path / "png"))
    summary = label(request(exported, tmp_path / "videos", tmp_path / "video",
                            inputs=Inputs(images=tmp_path / "videos", frames=FrameSampling(fps=5))))
    records, failures = read_run(tmp_path / "video")
    names = [r["file_name"] for r in records]
    assert names == [f"{v}.mp4#t={t / 5:.3f}" for v in "ab" for t in range(5)]
    png, _ = read_run(tmp_path / "png")
    assert_same_records([{**r, "file_name": name} for r, name in zip(png, names)], records)
    assert failures == [{"file_name": "c.mp4", "reason": "not a readable video (unknown format, truncated or corrupt)",
                         "shard": 2}]
    assert summary.images == 10 and summary.failed == 1


def test_video_run_resumes_after_sigkill(exported, dump, tmp_path):
    """Shards cut across videos as they cut across folders (a frame is one discovery
    index); the resumed run labels no frame of a finished shard again."""
    _dump_videos(dump, tmp_path / "videos")
    out = tmp_path / "run"
    command = labeling_command(exported, tmp_path / "videos", out, "--fps", "5")
    done = killed_after_two_shards(command, out)
    assert not done.complete and 2 <= len(done.shards) < 5
    before = {entry.file: (out / "shards" / entry.file).stat().st_mtime_ns for entry in done.shards}
    finished = subprocess.run([*command, "--resume"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    records, failures = read_run(out)
    assert len({r["file_name"] for r in records}) == len(records) == 10 and not failures
    assert {f: (out / "shards" / f).stat().st_mtime_ns for f in before} == before
    # Another sampling is another input: resuming with it is refused.
    refused = subprocess.run([*command[:-2], "--fps", "2", "--resume"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert refused.returncode == 2 and "settings differ" in refused.stderr
    label(request(exported, tmp_path / "videos", tmp_path / "whole",
                  inputs=Inputs(images=tmp_path / "videos", frames=FrameSampling(fps=5))))
    assert_same_records(records, read_run(tmp_path / "whole")[0])
