"""Every pass's pre-merge candidates of a shard, in one `.npz` beside it.

    OUT/candidates/shard-000000.npz      beside OUT/shards/shard-000000.jsonl
      names           (I,) str            the shard's labeled images, in record order (no failures, no pointers)
      counts          (I, P) int32        candidates of image i from pass p of the run's plan, in plan order;
                                          -1 where pass p did not run for image i (a staged plan)
      boxes           (N, 4) float32      xyxy in original-image pixels, image by image, pass by pass
      scores          (N,) float32
      labels          (N,) uint16         class indices of the detector's card
      keypoints       (N, J, 3) float32   a one-stage pose detector's (absent otherwise)
      person_counts   (I,) int32          the top-down keypoint stage's results (absent without one):
      person_boxes    (M, 4) float32        each image's merged person boxes, image by image,
      person_points   (M, J, 2) float32     their keypoints in original-image pixels
      person_peaks    (M, J) float32        and heatmap peaks, as the records were made from them
    OUT/candidates/detector.json          the detector's model card (categories, clipping), so
                                          remerging needs no detector file

The pass index of a candidate is implied by `counts` (image-major, then plan order), so
it costs no byte. A candidate is what the detector returned for one view above the score
floor, mapped back through the view's inverse: exactly the arrays the run's merge
concatenated, so that merging them again gives the run's detections bit for bit.

A shard's file is written (to a hidden temporary, then renamed) before the shard itself
is committed, so a finished shard always has its candidates; a resumed run rewrites the
file of any unfinished shard. The writer holds one shard's arrays in memory (some 10 KB
per image), so memory grows with the shard size, never with the dump.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.atomic import write_atomically
from engine.label.detect import Candidates, concatenate_candidates
from engine.modelcard import ModelCard

FOLDER = "candidates"
CARD_NAME = "detector.json"


def candidates_folder(out: Path) -> Path:
    return Path(out) / FOLDER


def candidates_path(out: Path, shard_file: str) -> Path:
    """The candidates of the shard file `shard_file` (shard-000000.jsonl) of run `out`."""
    return candidates_folder(out) / (Path(shard_file).stem + ".npz")


def write_detector_card(out: Path, card: ModelCard) -> None:
    from engine.atomic import write_text_atomically

    candidates_folder(out).mkdir(parents=True, exist_ok=True)
    write_text_atomically(candidates_folder(out) / CARD_NAME, card.to_json())


def read_detector_card(out: Path) -> ModelCard:
    path = candidates_folder(out) / CARD_NAME
    return ModelCard.from_json(path.read_text(encoding="utf-8"), str(path))


@dataclass
class PersonKeypoints:
    """The top-down keypoint stage's results for one image: `boxes` `(M, 4)` float32 xyxy
    of its merged person boxes, `points` `(M, J, 2)` float32 in original-image pixels,
    `peaks` `(M, J)` float32 heatmap peaks."""

    boxes: np.ndarray
    points: np.ndarray
    peaks: np.ndarray


class CandidateWriter:
    """Collects the candidates of the images handed to `add` (every discovery index, in
    order, as the shard writer gets them) and writes one file per shard of `shard_size`
    indices into OUT/candidates. `add` for the last index of a shard (or `close`) writes
    that shard's file, so the caller calls it before the shard writer commits the shard.

    passes: the run plan's pass count P; box_joints: J of a one-stage pose detector's
    keypoints (None: none); person_joints: J of the top-down keypoint model (None: none).
    """

    def __init__(self, out: Path, shard_size: int, passes: int, box_joints: int | None,
                 person_joints: int | None) -> None:
        self.folder = candidates_folder(out)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.size = shard_size
        self.passes = passes
        self.box_joints = box_joints
        self.person_joints = person_joints
        self._shard: int | None = None
        self._images: list[tuple[str, list[Candidates | None], PersonKeypoints | None]] = []
        self.bytes_written = 0

    def add(self, index: int, name: str, parts: list[Candidates | None] | None,
            persons: PersonKeypoints | None) -> None:
        """Image `index` (`name`): its candidates per pass of the plan (None for a pass that
        did not run), or None for a failure or a pointer record (nothing kept)."""
        shard = index // self.size
        if shard != self._shard:
            self._write()
            self._shard = shard
        if parts is not None:
            self._images.append((name, parts, persons))
        if index % self.size == self.size - 1:
            self._write()

    def close(self) -> None:
        self._write()

    def _write(self) -> None:
        if self._shard is None:
            return
        arrays = self._arrays()
        path = self.folder / f"shard-{self._shard:06d}.npz"
        write_atomically(path, lambda f: np.savez_compressed(f, **arrays))
        self.bytes_written += path.stat().st_size
        self._shard, self._images = None, []

    def _arrays(self) -> dict[str, np.ndarray]:
        images = self._images
        counts = np.array([[-1 if c is None else len(c.scores) for c in parts] for _, parts, _ in images],
                          np.int32).reshape(len(images), self.passes)
        ran = [c for _, parts, _ in images for c in parts if c is not None]
        arrays = {"names": np.array([name for name, _, _ in images], dtype=str), "counts": counts}
        if ran:
            joined = concatenate_candidates(ran)
        else:
            joints = self.box_joints
            joined = Candidates(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                                None if joints is None else np.zeros((0, joints, 3), np.float32))
        if len(joined.labels) and joined.labels.max() > np.iinfo(np.uint16).max:
            raise ValueError("more than 65536 categories")
        arrays.update(boxes=joined.boxes.astype(np.float32), scores=joined.scores.astype(np.float32),
                      labels=joined.labels.astype(np.uint16))
        if self.box_joints is not None:
            arrays["keypoints"] = joined.keypoints.astype(np.float32)
        if self.person_joints is not None:
            joints = self.person_joints
            persons = [p for _, _, p in images]
            arrays["person_counts"] = np.array([len(p.boxes) for p in persons], np.int32)
            arrays["person_boxes"] = np.concatenate([np.zeros((0, 4), np.float32)] + [p.boxes for p in persons])
            arrays["person_points"] = np.concatenate([np.zeros((0, joints, 2), np.float32)]
                                                     + [p.points for p in persons])
            arrays["person_peaks"] = np.concatenate([np.zeros((0, joints), np.float32)] + [p.peaks for p in persons])
        return arrays


class ShardCandidates:
    """One shard's candidates file, read whole (module docstring for the arrays)."""

    def __init__(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as data:
            self.arrays = {key: data[key] for key in data.files}
        self.names: list[str] = self.arrays["names"].tolist()
        counts = self.arrays["counts"]
        self.counts = counts
        # Start of image i's pass p in the candidate arrays.
        flat = np.maximum(counts, 0).reshape(-1)
        self._starts = (np.concatenate([[0], np.cumsum(flat)[:-1]]) if flat.size else flat).reshape(counts.shape)
        if "person_counts" in self.arrays:
            person = self.arrays["person_counts"]
            self._person_starts = np.concatenate([[0], np.cumsum(person)]).astype(np.int64)

    def ran(self, image: int) -> np.ndarray:
        """`(P,)` bool: which passes of the plan ran for image `image`."""
        return self.counts[image] >= 0

    def image(self, image: int, passes: list[int], score_floor: float) -> Candidates:
        """Image `image`'s candidates from `passes` (indices into the run's plan, increasing:
        plan order) above `score_floor`: what labeling with a plan of those passes and that
        floor hands its merge. Every one of `passes` must have run for the image."""
        a = self.arrays
        parts = []
        for p in passes:
            start, count = int(self._starts[image, p]), int(self.counts[image, p])
            if count < 0:
                raise ValueError(f"pass {p} did not run for {self.names[image]}")
            rows = slice(start, start + count)
            keep = a["scores"][rows] > score_floor
            parts.append(Candidates(a["boxes"][rows][keep], a["scores"][rows][keep],
                                    a["labels"][rows][keep].astype(np.int64),
                                    a["keypoints"][rows][keep] if "keypoints" in a else None))
        return concatenate_candidates(parts)

    def persons(self, image: int) -> PersonKeypoints | None:
        """The keypoint stage's results of image `image` (None: the run had no top-down model)."""
        if "person_counts" not in self.arrays:
            return None
        rows = slice(int(self._person_starts[image]), int(self._person_starts[image + 1]))
        a = self.arrays
        return PersonKeypoints(a["person_boxes"][rows], a["person_points"][rows], a["person_peaks"][rows])
