"""`distill convert`: a COCO labels file into the formats review tools import.

    distill convert --labels LABELS.json --to yolo --out DIR [--confidence] [--images IMAGES]
    distill convert --labels LABELS.json --to labelstudio --out DIR (--images IMAGES | --image-root PREFIX)

LABELS.json is what `distill select` writes, or any COCO ground truth. DIR must be new
or empty: a YOLO folder is read as "every txt under labels/", so files left from an
earlier conversion would silently join this one. The output is built in a hidden folder
beside DIR and renamed to DIR at the end, so a failed or killed conversion leaves no
half-written DIR.

Label Studio needs to know where the images are served: `--images` (the folder the
file_names are relative to, served by Label Studio as local files, whose setup is
printed) or `--image-root` (any URL prefix). There is no default: the URL prefix of
local files depends on the server's document root, which the labels do not know, and a
guess gives a 404 for every image.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
from pathlib import Path
from typing import Any

from engine.convert.labelstudio import LocalFiles, first_missing_image, local_files, write_labelstudio
from engine.convert.read import LabelSet, load_labels
from engine.convert.yolo import write_yolo
from engine.errors import UserError
from engine.options import image_root

FORMATS = ("yolo", "labelstudio")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert", help="convert a COCO labels file to YOLO txt or Label Studio tasks for review",
        description="Write the labels of a COCO file (distill select's, or ground truth) as a YOLO dataset "
                    "(Ultralytics txt per image + data.yaml; pose rows for people with keypoints) or as "
                    "Label Studio tasks whose predictions are the labels, with their scores, plus the "
                    "matching labeling config. Crowd regions are left out; boxes are clipped to the image.")
    p.add_argument("--labels", required=True, type=Path, metavar="LABELS.json",
                   help="COCO dataset JSON, or the folder of distill select --shards")
    p.add_argument("--to", required=True, choices=FORMATS, help="output format")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder, new or empty")
    p.add_argument("--confidence", action="store_true",
                   help="yolo: append each label's score as the last column (Ultralytics' prediction txt; "
                        "strip it to train)")
    p.add_argument("--images", type=image_root, default=None, metavar="IMAGES",
                   help="the folder the file_names are relative to. yolo: each image is linked as "
                        "DIR/images/<file_name>, so data.yaml trains as is (a tar shard's member, a video "
                        "frame, written there as a PNG, or an object under an s3:// IMAGES is written "
                        "there instead); labelstudio: the tasks point "
                        "at Label Studio's local files, served with IMAGES' parent as "
                        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT and a Local Files storage at IMAGES "
                        "(the setup is printed)")
    p.add_argument("--image-root", default=None, metavar="PREFIX",
                   help="labelstudio, instead of --images: URL prefix of the images, followed by the "
                        "URL-quoted file_name (e.g. https://host/images/)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    _check_flags(args)
    out = args.out.resolve()
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise UserError(f"--out {args.out} exists and is not an empty folder; choose a new one")
    if isinstance(args.images, Path) and not args.images.is_dir():
        raise UserError(f"--images {args.images} is not a folder")
    labels = load_labels(args.labels)
    served = _local_files(args, labels) if args.to == "labelstudio" and args.images is not None else None
    out.parent.mkdir(parents=True, exist_ok=True)
    # Named by our process id: a folder of that name can only be left by a dead process,
    # as is one named by the id of a process that no longer runs (a killed conversion's).
    _remove_dead_staging(out)
    staging = out.parent / f".{out.name}.{os.getpid()}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        if args.to == "yolo":
            counts = write_yolo(labels, staging, root=out, confidence=args.confidence, images=args.images)
        else:
            counts = write_labelstudio(labels, staging, image_root=served.image_root if served else args.image_root)
        if out.exists():
            out.rmdir()  # empty, checked above
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(_summary(args, labels, counts, served))
    return 0


def _remove_dead_staging(out: Path) -> None:
    """Remove the staging folders of `out` left by conversions that were killed."""
    for staging in out.parent.glob(f".{glob.escape(out.name)}.*.partial"):
        pid = staging.name[len(out.name) + 2:-len(".partial")]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal sent: only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def _check_flags(args: argparse.Namespace) -> None:
    """A flag of the other format is a mistake, not something to ignore silently."""
    if args.to != "yolo" and args.confidence:
        raise UserError("--confidence applies to --to yolo only")
    if args.to != "labelstudio" and args.image_root is not None:
        raise UserError("--image-root applies to --to labelstudio only")
    if args.to == "labelstudio" and isinstance(args.images, str):
        raise UserError("--to labelstudio serves local files: for images in object storage give --image-root PREFIX")
    if args.to == "labelstudio" and (args.images is None) == (args.image_root is None):
        raise UserError("--to labelstudio needs one of --images IMAGES (the folder the file_names are relative "
                        "to, served as Label Studio local files) or --image-root PREFIX (a URL prefix)")


def _local_files(args: argparse.Namespace, labels: LabelSet) -> LocalFiles:
    """Label Studio's local-files setup for `--images`, whose images must all be there:
    a wrong folder would give a 404 per task only once imported."""
    try:
        served = local_files(args.images)
    except ValueError as error:
        raise UserError(f"--images {args.images}: {error}") from None
    missing = first_missing_image(labels, args.images)
    if missing is not None:
        raise UserError(f"--images: {missing} not found")
    return served


def _summary(args: argparse.Namespace, labels: LabelSet, counts: dict[str, Any], served: LocalFiles | None) -> str:
    if args.to == "yolo":
        kind = (f"YOLO pose ({counts['keypoints']} keypoints of {labels.keypoint_category['name']})"
                if counts["task"] == "pose" else "YOLO detection")
        line = (f"wrote {args.out}: {kind}, {counts['classes']} classes, {counts['images']} label files "
                f"({counts['empty']} empty), {counts['labels']} labels"
                + (", score column" if args.confidence else "") + (", images linked" if args.images else ""))
    else:
        line = (f"wrote {args.out}: Label Studio, {counts['images']} tasks ({counts['empty']} without labels), "
                f"{counts['labels']} boxes, {counts['keypoints']} keypoints, model_version "
                f"{counts['model_version']!r}; tasks.json, label_config.xml")
        if served is not None:
            line += (f"\nserve the images: start Label Studio with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true "
                     f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={served.document_root}, add a Local Files source "
                     f"storage with absolute local path {served.storage}, then import tasks.json")
    notes = labels.counts
    changed = [f"{notes[key]} {text}" for key, text in
               (("crowd", "crowd regions left out"), ("clipped", "boxes clipped to their image"),
                ("empty", "boxes outside their image left out"),
                ("keypoints_outside", "keypoints outside their image unlabeled")) if notes[key]]
    return line + (f"\nnote: {'; '.join(changed)}" if changed else "")
