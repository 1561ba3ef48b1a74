"""Video in: the frames of a video file as sources, decoded in one streaming pass.

Decoding is OpenCV's FFmpeg backend (`cv2.VideoCapture(path, cv2.CAP_FFMPEG)`), which the
engine already depends on (opencv's wheels bundle FFmpeg's libavcodec/libavformat), so
video needs no new package: PyAV would bind the same FFmpeg libraries. Frames come out
one after the other as the file is read; nothing but the current frame is held, and a
frame that is not sampled is only grabbed (demuxed and decoded), never converted to RGB.

Naming: a frame's record is named `<video name>#t=<seconds>`, e.g. `match.mp4#t=12.480`:
the frame's presentation time in seconds from the start of the video stream (FFmpeg's
timestamp of the frame, the stream's start time subtracted), with exactly three decimals
(milliseconds); the `#t=` form is the W3C Media Fragments one, which video players
understand. `<video name>` is named as an image at that place would be (relative to the
input root, or the list file's line).

Sampling (`FrameSampling`): `fps=N` keeps the first frame of every 1/N-second interval of
presentation time ([k/N, (k+1)/N)), so a 30 fps video at fps=2 yields the frames at 0.000,
0.500, 1.000, ...; `every=K` keeps every K-th decoded frame (the 1st, the K+1-th, ...).

What cannot be read is a failure entry, and the run goes on: a file FFmpeg cannot open
(not a video, truncated before its index, corrupt header) is one entry named after the
video; a video whose decoding stops before the number of frames its container declares
(corrupt data, a file cut short) keeps the frames decoded so far and adds one entry named
after the video saying where it stopped. (OpenCV's reader does not tell the end of a
stream from a decoding error, so the container's frame count is what tells them apart.)
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.label.discover import Source

VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".wmv", ".flv"}
)
FRAGMENT = "#t="


def is_video_name(name: str) -> bool:
    """Whether a file name has one of `VIDEO_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class FrameSampling:
    """Which frames of a video are labeled (module docstring): `fps`, at most this many
    per second of presentation time, or `every`, every k-th decoded frame; exactly one."""

    fps: float | None = None
    every: int | None = None

    def __post_init__(self) -> None:
        if (self.fps is None) == (self.every is None):
            raise ValueError("give exactly one frame sampling: frames per second or every k-th frame")
        if self.fps is not None and not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"frames per second must be > 0, got {self.fps}")
        if self.every is not None and self.every < 1:
            raise ValueError(f"every k-th frame needs k >= 1, got {self.every}")

    def to_dict(self) -> dict[str, float | int]:
        return {"fps": self.fps} if self.fps is not None else {"every": self.every}

    @classmethod
    def from_dict(cls, data: dict) -> FrameSampling:
        if set(data) not in ({"fps"}, {"every"}):
            raise ValueError(f"frames is {{\"fps\": N}} or {{\"every\": K}}, got {data!r}")
        return cls(fps=float(data["fps"])) if "fps" in data else cls(every=int(data["every"]))

    def interval(self, index: int, msec: float) -> int:
        """The sampling interval a frame falls in (frame `index` from 0, at `msec`
        milliseconds of presentation time); a frame is kept when its interval differs from
        the previous kept frame's. For `every`, frames index // k share an interval but only
        the first of each (index % k == 0) is kept, which is the same rule."""
        if self.every is not None:
            return index // self.every
        # The small epsilon keeps an exact boundary (500.0 ms at 2 fps) in its own interval
        # despite the float product rounding just below it.
        return math.floor(msec * self.fps / 1000.0 + 1e-9)

    def estimate(self, frames: int, rate: float) -> int:
        """Frames kept out of a video of `frames` frames at `rate` frames per second (for a
        progress total; the container's figures can be approximate)."""
        if self.every is not None:
            return -(-frames // self.every)
        if rate <= 0:
            return frames
        return min(frames, math.ceil(frames / rate * self.fps))


def frame_name(video: str, msec: float) -> str:
    """`video#t=S.SSS` for a frame `msec` milliseconds into the video (module docstring)."""
    return f"{video}{FRAGMENT}{msec / 1000.0:.3f}"


def split_frame_name(name: str) -> tuple[str, float] | None:
    """(video name, seconds) of a frame's name such as `a/match.mp4#t=12.480`, or None for
    a name that is not a video frame's."""
    video, sep, seconds = name.rpartition(FRAGMENT)
    if not sep or not is_video_name(video):
        return None
    try:
        return video, float(seconds)
    except ValueError:
        return None


def _open(path: Path) -> cv2.VideoCapture | None:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if capture.isOpened():
        return capture
    capture.release()
    return None


def video_sources(path: Path, name: str, sampling: FrameSampling, with_bytes: bool = True) -> Iterator[Source]:
    """The sampled frames of the video at `path` (named `name` in the run), in
    presentation order, each a Source named `frame_name(name, ...)` whose `read` returns
    the decoded frame, (H, W, 3) uint8 RGB. with_bytes=False: nothing is decoded; as many
    Sources as the container's frame count suggests are yielded (for a progress total).
    Never raises for a bad video: see the module docstring."""
    if not path.is_file():
        yield Source(path, name, "file not found" if not path.exists() else "not a regular file")
        return
    capture = _open(path)
    if capture is None:
        yield Source(path, name, "not a readable video (unknown format, truncated or corrupt)")
        return
    try:
        declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))  # <= 0 where the container does not say
        if not with_bytes:
            for _ in range(sampling.estimate(max(declared, 0), capture.get(cv2.CAP_PROP_FPS))):
                yield Source(path, name)
            return
        decoded, kept, msec = 0, None, 0.0
        while capture.grab():
            msec = capture.get(cv2.CAP_PROP_POS_MSEC)
            interval = sampling.interval(decoded, msec)
            decoded += 1
            if interval == kept:
                continue
            kept = interval
            ok, bgr = capture.retrieve()
            if not ok or bgr is None or bgr.size == 0:
                yield Source(path, frame_name(name, msec), "broken frame: decoded but not convertible")
                continue
            yield Source(path, frame_name(name, msec), read=_Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
        if decoded < declared:
            yield Source(path, name, f"corrupt or truncated video: decoding stopped after {decoded} of "
                                     f"{declared} frames (last at t={msec / 1000.0:.3f})")
    finally:
        capture.release()


def read_frame(path: Path, seconds: float) -> np.ndarray:
    """The frame of the video at `path` named `#t=seconds` (to the millisecond), (H, W, 3)
    uint8 RGB, decoded from the start (seeking is not frame-exact in every container);
    ValueError when the video has no frame at that time or cannot be read."""
    capture = _open(path)
    if capture is None:
        raise ValueError(f"not a readable video: {path}")
    target = f"{seconds:.3f}"
    try:
        while capture.grab():
            msec = capture.get(cv2.CAP_PROP_POS_MSEC)
            if f"{msec / 1000.0:.3f}" == target:
                ok, bgr = capture.retrieve()
                if ok and bgr is not None:
                    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                break
            if msec / 1000.0 > seconds + 0.001:
                break
    finally:
        capture.release()
    raise ValueError(f"no frame at t={target} in {path}")


class _Frame:
    """`Source.read` for a frame decoded as the video went by."""

    __slots__ = ("image",)

    def __init__(self, image: np.ndarray) -> None:
        self.image = image

    def __call__(self) -> np.ndarray:
        return self.image
