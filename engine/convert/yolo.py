"""YOLO (Ultralytics) labels: one txt file per image and a `data.yaml`; and `read_yolo`,
which reads such labels back into pixels.

Layout. Ultralytics finds an image's labels by replacing the last `/images/` of the
image's path with `/labels/` and its suffix with `.txt`, so:

    DIR/data.yaml
    DIR/labels/<file_name without suffix>.txt   one row per label; an empty file: no labels
    DIR/images/<file_name>                      links to the images (--images), or put them there

An image that is no file of its own is written there instead of linked: a tar shard's
member (`00042.tar/key.jpg`) or an object (--images s3://...) as its bytes, a video frame
(`match.mp4#t=12.480`) as a lossless PNG named `match.mp4#t=12.480.png` (its labels:
`match.mp4#t=12.480.txt`), read by the labeler's own readers (engine.label.named).

Rows, coordinates normalized by the image width (x) or height (y) to 0..1:

    detect:  class cx cy w h [score]
    pose:    class cx cy w h x1 y1 v1 ... xK yK vK [score]

`class` is the category's index in the COCO file's category order (0..N-1); v is COCO's
visibility (0 not labeled, 1 labeled but hidden, 2 visible).

Pose is written when one category's labels carry keypoints (people). Ultralytics checks
that every row of a pose dataset has exactly 5 + K*3 columns, so the rows of the other
categories carry K keypoints (0, 0, 0): "not labeled", which masks them out of the
keypoint loss. That is what Ultralytics' maintainers advise for pose plus plain
detection (ultralytics issue 16741) and keeps one label set for one model. A category
that declares keypoint names but whose labels have none visible is written as detection.

The score column (`confidence=True`) is Ultralytics' prediction txt (`save_conf`): the
box score appended last. It is for reading and review, not training: Ultralytics' label
check rejects a row with an extra column. Keypoints keep their visibility (2 where
`distill select` found the keypoint's heatmap peak at or above its threshold), never the
peak, also with the score column: Ultralytics' prediction txt has a [0, 1] keypoint
confidence there, and a peak is none (engine/label/records.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import cv2

from engine.coco.schema import flip_index
from engine.convert.read import LabelSet
from engine.errors import UserError
from engine.label import named
from engine.label.decode import DecodeError
from engine.label.video import split_frame_name

# Decimals of normalized coordinates: 1e-6 of the image side is 0.01 px at 10,000 px.
DECIMALS = 6


@dataclass(frozen=True)
class YoloLabel:
    """One row of a YOLO label file, back in pixels."""

    class_index: int
    bbox: tuple[float, float, float, float]   # x, y (top left), width, height in pixels, as COCO
    keypoints: tuple[float, ...] | None       # (x px, y px, v) * K for a pose dataset, else None
    score: float | None                       # the last column when the file has one


def image_path(file_name: str) -> PurePosixPath:
    """An image's COCO `file_name` as a path relative to the image folder."""
    path = PurePosixPath(file_name.replace("\\", "/"))
    # Label files and links must land inside DIR: an absolute or `..` path would escape it.
    if path.is_absolute() or ".." in path.parts or not path.name:
        raise UserError(f"image file_name {file_name!r} must be a relative path inside the image folder")
    if split_frame_name(file_name) is not None:  # a video frame is written as a PNG file of its own
        return path.with_name(path.name + ".png")
    return path


def label_path(file_name: str) -> PurePosixPath:
    """`labels/`-relative path of the txt file for an image `file_name` (its sub-folders kept)."""
    path = image_path(file_name)
    return path.with_suffix(".txt") if path.suffix else path.with_name(path.name + ".txt")


def write_yolo(labels: LabelSet, out: Path, *, root: Path, confidence: bool = False,
               images: Path | str | None = None) -> dict[str, Any]:
    """Write `labels` as a YOLO dataset into the folder `out` (which must exist).

    `root`: the dataset's final absolute folder, written as `path` in data.yaml (`out`
    may be a staging folder renamed to `root` afterwards). `confidence`: append each
    label's score. `images`: the folder (or object-storage URL) the COCO file_names are
    relative to; each image is linked as `out/images/<file_name>` (written there when it is
    no file of its own: module docstring). Returns counts for the summary line.
    """
    if confidence and not labels.has_scores:
        raise UserError(f"--confidence needs a score on every label; {labels.path} has labels without one "
                        "(ground truth?)")
    class_of = {category["id"]: i for i, category in enumerate(labels.categories)}
    pose = labels.keypoint_category
    num_keypoints = len(labels.keypoint_names)
    seen: dict[PurePosixPath, str] = {}
    empty = 0
    for image in labels.images:
        relative = label_path(image["file_name"])
        if relative in seen:
            raise UserError(f"images {seen[relative]!r} and {image['file_name']!r} would share the label file "
                            f"labels/{relative}")
        seen[relative] = image["file_name"]
        rows = [_row(a, image["width"], image["height"], class_of[a["category_id"]],
                     num_keypoints if pose else 0, confidence) for a in labels.labels[image["id"]]]
        empty += not rows
        target = out / "labels" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(row + "\n" for row in rows), encoding="utf-8")
        if images is not None:
            _place_image(images, image["file_name"], out / "images" / image_path(image["file_name"]))
    (out / "data.yaml").write_text(data_yaml(labels, root), encoding="utf-8")
    return {"task": "pose" if pose else "detect", "images": len(labels.images), "empty": empty,
            "labels": labels.num_labels, "classes": len(labels.categories), "keypoints": num_keypoints}


def data_yaml(labels: LabelSet, root: Path) -> str:
    """The dataset file, YAML written by hand (the project does not depend on PyYAML):
    strings are JSON-quoted, which is valid YAML."""
    lines = [f"# distill convert --to yolo: {len(labels.images)} images, {labels.num_labels} labels "
             f"from {labels.path.name}",
             f"path: {json.dumps(str(root), ensure_ascii=False)}  # dataset root; edit it if you move the folder",
             "train: images  # the images: images/<file_name> (distill convert --images links them)",
             "val: images  # Ultralytics requires val: the same images until you split them",
             "names:"]
    lines += [f"  {i}: {json.dumps(c['name'], ensure_ascii=False)}" for i, c in enumerate(labels.categories)]
    if labels.keypoint_category:
        names = labels.keypoint_names
        lines += [f"# keypoints of {labels.keypoint_category['name']}, in column order: {', '.join(names)}",
                  f"kpt_shape: [{len(names)}, 3]  # x, y, visibility",
                  f"flip_idx: [{', '.join(str(i) for i in flip_index(names))}]"]
    return "\n".join(lines) + "\n"


def _row(annotation: dict[str, Any], width: float, height: float, class_index: int, num_keypoints: int,
         confidence: bool) -> str:
    x, y, w, h = annotation["bbox"]
    values = [(x + w / 2) / width, (y + h / 2) / height, w / width, h / height]
    fields = [str(class_index)] + [f"{v:.{DECIMALS}f}" for v in values]
    if num_keypoints:
        # Labels of other categories (and people without keypoints) get (0, 0, 0): not labeled.
        points = annotation.get("keypoints") or [0.0] * (3 * num_keypoints)
        for i in range(0, len(points), 3):
            kx, ky, v = points[i:i + 3]
            # An unlabeled joint's position means nothing; "0 0 0" keeps the rows of the
            # other categories (17 such joints) at a fifth of their length.
            fields += ([f"{kx / width:.{DECIMALS}f}", f"{ky / height:.{DECIMALS}f}", str(int(v))] if v > 0
                       else ["0", "0", "0"])
    if confidence:
        fields.append(f"{annotation['score']:.{DECIMALS}f}")
    return " ".join(fields)


def _place_image(root: Path | str, file_name: str, target: Path) -> None:
    # One link per file, not one link for the folder: Ultralytics resolves the `train`
    # folder's real path before it swaps /images/ for /labels/, so a linked folder would
    # send it looking for labels beside the original images. Absolute targets keep the
    # links valid wherever DIR is moved.
    source = root / image_path(file_name) if isinstance(root, Path) else None
    if source is not None and source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(source.resolve(), target)
        return
    if not named.exists(root, file_name):
        raise UserError(f"--images: {source if source is not None else f'{root}/{file_name}'} not found")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if split_frame_name(file_name) is not None:
            _, png = cv2.imencode(".png", cv2.cvtColor(named.read_image(root, file_name), cv2.COLOR_RGB2BGR))
            target.write_bytes(png.tobytes())
        else:
            target.write_bytes(named.image_bytes(root, file_name))
    except DecodeError as error:
        raise UserError(f"--images: cannot read {file_name}: {error}") from None


def read_yolo(labels_dir: Path, images: Iterable[Mapping[str, Any]],
              kpt_shape: tuple[int, int] | None = None) -> dict[str, list[YoloLabel]]:
    """Read YOLO label files back into pixels: {file_name: [YoloLabel, ...]}.

    `labels_dir`: the `labels` folder (DIR/labels). `images`: COCO-style image dicts with
    `file_name`, `width` and `height` in pixels (a YOLO file does not record its image's
    size). `kpt_shape`: data.yaml's (K, 2 or 3) for a pose dataset, None for detection.
    A row may carry one extra last column, the score. A missing label file reads as no
    labels, as Ultralytics treats it; a malformed row is a `UserError` naming file and line.
    With 2 dimensions a keypoint is visible (v=2) unless a coordinate is negative, as in
    Ultralytics.
    """
    count, dims = kpt_shape or (0, 0)
    if kpt_shape is not None and (count < 1 or dims not in (2, 3)):
        raise UserError(f"kpt_shape must be [K >= 1, 2 or 3], got {list(kpt_shape)}")
    columns = 5 + count * dims
    result: dict[str, list[YoloLabel]] = {}
    for image in images:
        width, height = float(image["width"]), float(image["height"])
        file = Path(labels_dir) / label_path(image["file_name"])
        rows = []
        lines = file.read_text(encoding="utf-8").splitlines() if file.is_file() else []
        for number, line in enumerate(lines, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) not in (columns, columns + 1):
                raise UserError(f"{file}:{number}: expected {columns} columns ({columns + 1} with a score), "
                                f"got {len(parts)}")
            try:
                values = [float(p) for p in parts]
            except ValueError:
                raise UserError(f"{file}:{number}: not a number in {line.strip()!r}") from None
            if not values[0].is_integer() or values[0] < 0:
                raise UserError(f"{file}:{number}: class {parts[0]!r} is not an index")
            cx, cy, w, h = values[1:5]
            bbox = ((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height)
            keypoints = None
            if count:
                points: list[float] = []
                for j in range(5, columns, dims):
                    x, y = values[j], values[j + 1]
                    v = values[j + 2] if dims == 3 else (0.0 if x < 0 or y < 0 else 2.0)
                    points += [x * width, y * height, v]
                keypoints = tuple(points)
            score = values[columns] if len(values) > columns else None
            rows.append(YoloLabel(int(values[0]), bbox, keypoints, score))
        result[image["file_name"]] = rows
    return result
