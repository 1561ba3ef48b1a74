"""Label Studio: the labels as `predictions` of one task per image, and the labeling
config that matches them, so an import works as is.

    DIR/tasks.json          [{"data": {"image": URL}, "predictions": [{model_version, score, result}]}, ...]
    DIR/label_config.xml    <View>: Image, RectangleLabels (the categories), KeyPointLabels (the joints)

Results use Label Studio's image region format: positions and sizes in PERCENT of the
original image (0..100), a box by its top-left corner, `original_width` and
`original_height` in pixels. A box is a `rectanglelabels` result; a person's keypoints
are `keypointlabels` results, one per labeled joint (COCO v 1 or 2: Label Studio has no
visibility flag, so both become a point; v 0 is left out), each naming its box in
`parentID`. That link, and a `model_index` on every joint label of the config (the
keypoint order), are what Label Studio's own COCO and YOLO keypoint export reads to
group joints into a person. Scores: each box result carries its label's score, each
prediction the mean score of its labels, which Label Studio's Data Manager sorts tasks
by; ground truth without scores is written without them. Keypoint results carry no
score: a label's `keypoint_scores` are heatmap peak values, not probabilities (they may
exceed 1, engine/label/records.py), and Label Studio would show one as a region's
confidence.

Images. A task's `data.image` is `image_root` + the URL-quoted file_name. Label Studio
serves local files at `/data/local-files/?d=PATH`, PATH relative to its
LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, and only from inside a Local Files storage
whose folder is below that root, never the root itself (it refuses such a storage:
"cannot be the same as LOCAL_FILES_DOCUMENT_ROOT"). So the images folder cannot be the
document root: `local_files` makes its parent the root and the folder the storage.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from engine.convert.read import LabelSet
from engine.coco.schema import keypoint_side
from engine.label.manifest import RunSettings

# Label Studio serves files of a local storage at this URL, `d` relative to its
# LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT.
LOCAL_FILES_URL = "/data/local-files/?d="

# Tag names of label_config.xml, repeated in every result's from_name / to_name.
IMAGE_TAG, BOX_TAG, KEYPOINT_TAG = "image", "label", "keypoint"

# Drawn point size, percent of the image width (label-studio-converter's default of 1).
KEYPOINT_WIDTH = 1.0

_BOX_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
                "#fabed4", "#469990", "#9a6324", "#800000")
# Left and right joints in two colours that stay apart for colour-blind eyes, the middle in a third.
_SIDE_COLOURS = {"left": "#0072b2", "right": "#e69f00", None: "#009e73"}


def image_url(file_name: str, image_root: str) -> str:
    """`image_root` + the URL-quoted `file_name` (sub-folders kept), the task's `data.image`."""
    return image_root + urllib.parse.quote(file_name.replace("\\", "/"), safe="/")


@dataclass(frozen=True)
class LocalFiles:
    """How Label Studio serves the images folder `storage` as local files: the server's
    LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT is `document_root` (the folder's parent), a
    Local Files storage of the project has the absolute path `storage`, and the tasks'
    URLs start with `image_root`."""

    document_root: Path
    storage: Path
    image_root: str


def local_files(images: Path) -> LocalFiles:
    """The local-files setup for the folder `images` that the file_names are relative to
    (see the module docstring: its parent is the document root)."""
    storage = images.resolve()
    if storage.parent == storage:
        raise ValueError(f"{storage} has no parent folder to be Label Studio's document root")
    return LocalFiles(storage.parent, storage, LOCAL_FILES_URL + urllib.parse.quote(storage.name, safe="") + "/")


def first_missing_image(labels: LabelSet, images: Path) -> Path | None:
    """The first image of `labels` that is not a file under the folder `images`, or None."""
    return next((images / image["file_name"] for image in labels.images
                 if not (images / image["file_name"]).is_file()), None)


def model_version(labels: LabelSet) -> str:
    """What made the labels, for the prediction's `model_version`: the teachers' model names
    and checkpoint hashes recorded by `distill select`, else the file's description."""
    settings = RunSettings.from_info(labels.info, labels.path)
    models = (("detector", settings.detector), ("keypoints", settings.keypoints)) if settings is not None else ()
    parts = [f"{role} {model.model_name or '?'} {model.checkpoint_sha256[:12]}".strip()
             for role, model in models if model is not None]
    return ", ".join(parts) or str(labels.info.get("description") or labels.path.name)


def write_labelstudio(labels: LabelSet, out: Path, *, image_root: str) -> dict[str, Any]:
    """Write `out/tasks.json` and `out/label_config.xml` for `labels`, image URLs under
    `image_root` (`local_files(...).image_root`, or a URL prefix); returns counts."""
    version = model_version(labels)
    names = {category["id"]: category["name"] for category in labels.categories}
    joints = labels.keypoint_names
    points = 0
    # One task a line, written as it is made: memory stays flat for 100,000 images.
    with open(out / "tasks.json", "w", encoding="utf-8") as f:
        f.write("[")
        for i, image in enumerate(labels.images):
            result = _results(labels.labels[image["id"]], image["width"], image["height"], names, joints)
            points += sum(r["type"] == "keypointlabels" for r in result)
            prediction: dict[str, Any] = {"model_version": version}
            scores = [a["score"] for a in labels.labels[image["id"]] if "score" in a]
            if scores:
                prediction["score"] = round(sum(scores) / len(scores), 6)
            prediction["result"] = result
            task = {"data": {IMAGE_TAG: image_url(image["file_name"], image_root)}, "predictions": [prediction]}
            f.write(("\n" if i == 0 else ",\n") + json.dumps(task, ensure_ascii=False, separators=(",", ":")))
        f.write("\n]\n")
    (out / "label_config.xml").write_text(label_config(labels), encoding="utf-8")
    return {"images": len(labels.images), "labels": labels.num_labels, "keypoints": points,
            "empty": sum(not labels.labels[image["id"]] for image in labels.images), "model_version": version}


def _results(annotations: list[dict[str, Any]], width: float, height: float, names: dict[int, str],
             joints: list[str]) -> list[dict[str, Any]]:
    """Label Studio results of one image's labels; COCO pixels -> percent of the image."""
    frame = {"to_name": IMAGE_TAG, "original_width": width, "original_height": height, "image_rotation": 0}
    results = []
    for k, annotation in enumerate(annotations):
        x, y, w, h = annotation["bbox"]
        box_id = f"b{k}"
        box = {"id": box_id, "type": "rectanglelabels", "from_name": BOX_TAG, **frame,
               "value": {"x": 100 * x / width, "y": 100 * y / height, "width": 100 * w / width,
                         "height": 100 * h / height, "rotation": 0,
                         "rectanglelabels": [names[annotation["category_id"]]]}}
        if "score" in annotation:
            box["score"] = annotation["score"]
        results.append(box)
        values = annotation.get("keypoints") or []
        for j in range(len(values) // 3):
            kx, ky, v = values[3 * j:3 * j + 3]
            if v <= 0:
                continue
            results.append({"id": f"{box_id}k{j}", "type": "keypointlabels", "from_name": KEYPOINT_TAG, **frame,
                            "parentID": box_id,
                            "value": {"x": 100 * kx / width, "y": 100 * ky / height, "width": KEYPOINT_WIDTH,
                                      "keypointlabels": [joints[j]]}})
    return results


def label_config(labels: LabelSet) -> str:
    """The labeling config XML: one RectangleLabels label per category (file order) and,
    with keypoints, one KeyPointLabels label per joint with its `model_index`."""
    lines = ["<View>",
             f'  <Image name="{IMAGE_TAG}" value="${IMAGE_TAG}" zoom="true" zoomControl="true"/>',
             f'  <RectangleLabels name="{BOX_TAG}" toName="{IMAGE_TAG}">']
    lines += [f"    <Label value={quoteattr(c['name'])} background=\"{_BOX_COLOURS[i % len(_BOX_COLOURS)]}\"/>"
              for i, c in enumerate(labels.categories)]
    lines.append("  </RectangleLabels>")
    if labels.keypoint_names:
        lines.append(f'  <KeyPointLabels name="{KEYPOINT_TAG}" toName="{IMAGE_TAG}">')
        lines += [f"    <Label value={quoteattr(name)} model_index=\"{j}\" "
                  f"background=\"{_SIDE_COLOURS[keypoint_side(name)]}\"/>"
                  for j, name in enumerate(labels.keypoint_names)]
        lines.append("  </KeyPointLabels>")
    lines.append("</View>")
    return "\n".join(lines) + "\n"
