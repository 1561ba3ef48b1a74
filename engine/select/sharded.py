"""Labels at dump scale: `distill select --shards` writes one COCO file per labeling shard
and an index, and `ShardedLabels` reads them back an entry at a time.

    LABELS/index.json              format, info (thresholds), categories, counts, shard list
    LABELS/shards/shard-000000.json   a COCO file: pycocotools loads it as it is
    LABELS/images.bin              one IMAGE_ROW per image, in order
    LABELS/annotations.bin         one ANNOTATION_ROW per annotation, in order

Image and annotation ids run over all shards (1, 2, ... in record order), so the shards'
lists, concatenated, are the single file's lists. Inside a shard file every image and
every annotation is a line of its own, an image's annotations on consecutive lines; the
tables hold the byte offset of each line, so that a reader seeks to the one entry it
needs and parses that line alone. The tables are read with `os.pread`, a row range at a
time, never mapped: a reader's memory does not grow with the number of images, and a
forked data-loading worker shares nothing that could go stale.

The folder is written under a hidden temporary name and renamed into place when
complete: a half-written output is never visible under its name.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.coco.read import CocoSet, checked_coco, load_coco
from engine.errors import UserError

FORMAT = "distill.sharded-labels/1"
INDEX = "index.json"
TABLES = {"images": "images.bin", "annotations": "annotations.bin"}  # the offset tables, in the folder

# 40 bytes an image: its id, shard (position in the index's list), the byte offsets of its
# line and of its first annotation's line in the shard file, its first annotation's row
# in annotations.bin and its number of annotations.
IMAGE_ROW = np.dtype([("id", "<i8"), ("shard", "<i4"), ("offset", "<i8"), ("annotations_offset", "<i8"),
                      ("first", "<i8"), ("count", "<i4")])
# 47 bytes an annotation: the COCO fields a training set filters on, its image's row in
# images.bin and the byte offset of its line.
ANNOTATION_ROW = np.dtype([("id", "<i8"), ("image", "<i8"), ("offset", "<i8"), ("category_id", "<i4"),
                           ("iscrowd", "u1"), ("num_keypoints", "<i2"), ("width", "<f8"), ("height", "<f8")])


def is_sharded(path: Path) -> bool:
    """Whether `path` names sharded labels: their folder, or their index file (a JSON
    object whose first key is "format": FORMAT; only its first bytes are read)."""
    path = Path(path)
    if path.is_dir():
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return b"".join(head.split()).startswith(b'{"format":"' + FORMAT.encode())


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class ShardedLabelsWriter:
    """Writes sharded labels into `folder` (see the module docstring), a shard at a time:
    `add_shard` once per labeling shard, then `finish`. Memory: one shard's entries."""

    def __init__(self, folder: Path, categories: list[dict[str, Any]]) -> None:
        self.folder, self.categories = Path(folder), categories
        if self.folder.exists() and not self.folder.is_dir():
            raise UserError(f"{self.folder} is a file: sharded labels are a folder")
        if self.folder.exists() and not (self.folder / INDEX).is_file() and any(self.folder.iterdir()):
            raise UserError(f"{self.folder} is a folder that holds no sharded labels: not replaced")
        self.tmp = self.folder.with_name(f".{self.folder.name}.tmp")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)  # the remains of an interrupted select
        (self.tmp / "shards").mkdir(parents=True)
        self.image_table = open(self.tmp / TABLES["images"], "wb")
        self.annotation_table = open(self.tmp / TABLES["annotations"], "wb")
        self.shards: list[dict[str, Any]] = []
        self.images = self.annotations = 0

    def add_shard(self, name: str, labeled: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> None:
        """Write shard `name` (a file name ending in .json) of `labeled`: (COCO image
        entry, its annotations) per image, ids continuing the earlier shards'."""
        shard = len(self.shards)
        image_rows = np.zeros(len(labeled), IMAGE_ROW)
        annotation_rows = np.zeros(sum(len(labels) for _, labels in labeled), ANNOTATION_ROW)
        head = (b'{"info":' + _dumps({"description": "one shard of generated labels (distill select --shards)",
                                      "index": f"../{INDEX}", "shard": shard})
                + b',"categories":' + _dumps(self.categories) + b',\n"images":[\n')
        parts, offset = [head], len(head)
        for row, (image, _) in enumerate(labeled):
            line = _dumps(image) + (b",\n" if row < len(labeled) - 1 else b"\n")
            image_rows[row] = (image["id"], shard, offset, 0, 0, 0)
            parts.append(line)
            offset += len(line)
        middle = b'],\n"annotations":[\n'
        parts.append(middle)
        offset += len(middle)
        number = 0
        for row, (_, labels) in enumerate(labeled):
            image_rows["annotations_offset"][row] = offset
            image_rows["first"][row] = self.annotations + number
            image_rows["count"][row] = len(labels)
            for annotation in labels:
                last = number == len(annotation_rows) - 1
                line = _dumps(annotation) + (b"\n" if last else b",\n")
                _, _, width, height = annotation["bbox"]
                annotation_rows[number] = (annotation["id"], self.images + row, offset, annotation["category_id"],
                                           annotation.get("iscrowd", 0), annotation.get("num_keypoints", -1),
                                           width, height)
                parts.append(line)
                offset += len(line)
                number += 1
        parts.append(b"]}\n")
        with open(self.tmp / "shards" / name, "wb") as f:
            f.write(b"".join(parts))
        self.image_table.write(image_rows.tobytes())
        self.annotation_table.write(annotation_rows.tobytes())
        self.shards.append({"file": f"shards/{name}", "images": len(labeled), "annotations": len(annotation_rows)})
        self.images += len(labeled)
        self.annotations += len(annotation_rows)

    def discard(self) -> None:
        """Remove what was written; the folder stays as it was."""
        self.image_table.close()
        self.annotation_table.close()
        shutil.rmtree(self.tmp)

    def finish(self, info: dict[str, Any]) -> None:
        """Write the index with `info` (the single file's `info`) and move the folder into place."""
        self.image_table.close()
        self.annotation_table.close()
        index = {"format": FORMAT, "info": info, "categories": self.categories, "images": self.images,
                 "annotations": self.annotations, "shards": self.shards,
                 "tables": TABLES}
        (self.tmp / INDEX).write_text(json.dumps(index, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        old = self.folder.with_name(f".{self.folder.name}.old")
        if self.folder.exists():
            os.replace(self.folder, old)
        os.replace(self.tmp, self.folder)
        if old.exists():
            shutil.rmtree(old)


@dataclass
class ShardedLabels:
    """Sharded labels opened for reading (see the module docstring).

    folder: the labels' folder; info, categories: the index's (the single file's);
    images, annotations: their numbers; shards: [{"file", "images", "annotations"}].
    """

    folder: Path
    info: dict[str, Any]
    categories: list[dict[str, Any]]
    images: int
    annotations: int
    shards: list[dict[str, Any]]

    @classmethod
    def open(cls, path: Path) -> ShardedLabels:
        """The sharded labels of `path` (their folder or index file, or a link to it), their index and
        tables checked; a one-line UserError when they are not whole."""
        path = Path(path)
        # an index file may be reached through a link (the loop's generated.json): its
        # shards lie beside the file linked to
        folder = path if path.is_dir() else path.resolve().parent
        index_path = folder / INDEX
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{folder} holds no {INDEX}: not sharded labels of distill select --shards") from None
        except (OSError, ValueError) as error:
            raise UserError(f"cannot read {index_path}: {error}") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise UserError(f"{index_path} is not an index of sharded labels ({FORMAT})")
        labels = cls(folder, index["info"], index["categories"], int(index["images"]), int(index["annotations"]),
                     index["shards"])
        for name, dtype, rows in (("images", IMAGE_ROW, labels.images), ("annotations", ANNOTATION_ROW,
                                                                         labels.annotations)):
            table = folder / TABLES[name]
            size = table.stat().st_size if table.is_file() else None
            if size != rows * dtype.itemsize:
                raise UserError(f"{table} does not hold the {rows} {name} of {index_path} "
                                f"({'missing' if size is None else f'{size} bytes'})")
        for shard in labels.shards:
            if not (folder / shard["file"]).is_file():
                raise UserError(f"{folder / shard['file']} is listed in {index_path} but missing")
        return labels

    # ---- the tables -------------------------------------------------------------------------
    def _rows(self, name: str, dtype: np.dtype, start: int, stop: int) -> np.ndarray:
        fd = os.open(self.folder / TABLES[name], os.O_RDONLY)
        try:
            data = os.pread(fd, (stop - start) * dtype.itemsize, start * dtype.itemsize)
        finally:
            os.close(fd)
        return np.frombuffer(data, dtype)

    def image_rows(self, start: int, stop: int) -> np.ndarray:
        """`(stop - start,)` IMAGE_ROW rows start..stop-1 of images.bin."""
        return self._rows("images", IMAGE_ROW, start, min(stop, self.images))

    def annotation_rows(self, start: int, stop: int) -> np.ndarray:
        """`(stop - start,)` ANNOTATION_ROW rows start..stop-1 of annotations.bin."""
        return self._rows("annotations", ANNOTATION_ROW, start, min(stop, self.annotations))

    def iter_annotation_rows(self, chunk: int = 1 << 18) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, ANNOTATION_ROW rows) of all annotations, `chunk` rows at a time
        (12 MB at the default), for filters whose memory must not grow with the labels."""
        for start in range(0, self.annotations, chunk):
            yield start, self.annotation_rows(start, start + chunk)

    # ---- the entries ------------------------------------------------------------------------
    def _lines(self, shard: int, offset: int, count: int) -> list[dict[str, Any]]:
        with open(self.folder / self.shards[shard]["file"], "rb") as f:
            f.seek(offset)
            return [json.loads(f.readline().rstrip(b",\n")) for _ in range(count)]

    def image(self, row: int) -> dict[str, Any]:
        """The COCO image entry of image row `row` (0-based, in order)."""
        entry = self.image_rows(row, row + 1)[0]
        return self._lines(int(entry["shard"]), int(entry["offset"]), 1)[0]

    def image_annotations(self, row: int) -> list[dict[str, Any]]:
        """The annotations of image row `row`, in file order."""
        entry = self.image_rows(row, row + 1)[0]
        return self._lines(int(entry["shard"]), int(entry["annotations_offset"]), int(entry["count"]))

    def annotation(self, row: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the annotation of annotation row `row`, its image entry)."""
        entry = self.annotation_rows(row, row + 1)[0]
        image = self.image_rows(int(entry["image"]), int(entry["image"]) + 1)[0]
        shard = int(image["shard"])
        return self._lines(shard, int(entry["offset"]), 1)[0], self._lines(shard, int(image["offset"]), 1)[0]

    # ---- whole shards -----------------------------------------------------------------------
    def iter_coco(self) -> Iterator[dict[str, Any]]:
        """Each shard's COCO dict, in order (one shard in memory at a time)."""
        for shard in self.shards:
            path = self.folder / shard["file"]
            try:
                yield json.loads(path.read_bytes())
            except ValueError as error:
                raise UserError(f"cannot read {path}: {error}") from None

    def to_coco(self) -> dict[str, Any]:
        """The single COCO dict the shards make together, `info` the index's. Memory
        grows with the labels: for tools that need them all at once."""
        images, annotations = [], []
        for data in self.iter_coco():
            images += data["images"]
            annotations += data["annotations"]
        return {"info": self.info, "images": images, "annotations": annotations, "categories": self.categories}


def load_label_set(path: Path) -> CocoSet:
    """The labels at `path`, every entry checked (`engine.coco.read.load_coco`): a COCO
    file, or sharded labels (their folder or index file) as the one COCO dict they make
    together, `path` their folder. For tools that need all labels at once (the gallery,
    format conversion): memory grows with the labels, as for a single file."""
    path = Path(path)
    if not is_sharded(path):
        return load_coco(path)
    labels = ShardedLabels.open(path)
    return checked_coco(labels.folder, labels.to_coco())
