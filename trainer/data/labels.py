"""Where the training datasets read their labels from: a COCO file loaded whole
(pycocotools), or sharded generated labels (`distill select --shards`) read an entry at a
time through their offset tables, so that a student's memory does not grow with the
number of generated images.

Both give the datasets the same entries in the same order (images by id, people by
image id then annotation id), so that a student sees the same minibatches from either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO

from engine.errors import UserError
from engine.select.sharded import ShardedLabels


class CocoLabels:
    """Labels of pycocotools' COCO: every entry in memory."""

    def __init__(self, coco: COCO) -> None:
        self.coco = coco

    @property
    def categories(self) -> list[dict[str, Any]]:
        return self.coco.dataset["categories"]

    def image_ids(self) -> Sequence[int]:
        """The image ids, ascending."""
        return sorted(self.coco.getImgIds())

    def file_name(self, image_id: int) -> str:
        return self.coco.imgs[image_id]["file_name"]

    def image_annotations(self, image_id: int) -> list[dict[str, Any]]:
        return self.coco.loadAnns(self.coco.getAnnIds(imgIds=[image_id]))

    def people(self, person: int) -> list[dict[str, Any]]:
        """The trainable people of category `person` (non-crowd, a labelled keypoint, a box
        wider and taller than 1 px) by image id, then annotation id."""
        people = [ann for ann in self.coco.loadAnns(self.coco.getAnnIds(catIds=[person])) if trainable_person(ann)]
        people.sort(key=lambda a: (a["image_id"], a.get("id", 0)))
        return people

    def person(self, item: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """(annotation, its image's file_name) of an item of `people`."""
        return item, self.file_name(item["image_id"])


def trainable_person(ann: dict[str, Any]) -> bool:
    return (not ann.get("iscrowd", 0) and ann.get("num_keypoints", 0) > 0
            and ann["bbox"][2] > 1 and ann["bbox"][3] > 1)


CHUNK = 1 << 16  # table rows read at once when scanning


class ShardedTrainingLabels:
    """Sharded labels (engine.select.sharded), read an entry at a time. Memory: 8 bytes a
    trainable person (the `people` rows) and nothing per image; the tables are read in
    chunks of CHUNK rows (3 MB) when this is built, and a row at a time after."""

    def __init__(self, labels: ShardedLabels) -> None:
        self.labels = labels
        for start in range(0, labels.images, CHUNK):
            ids = labels.image_rows(start, start + CHUNK)["id"]
            # select numbers images 1, 2, ... in order: image id i is row i - 1
            if not np.array_equal(ids, np.arange(start + 1, start + 1 + len(ids))):
                raise UserError(f"{labels.folder}: image ids are not 1, 2, ... in order "
                                "(not written by distill select)")

    @property
    def categories(self) -> list[dict[str, Any]]:
        return self.labels.categories

    def image_ids(self) -> Sequence[int]:
        return range(1, self.labels.images + 1)

    def file_name(self, image_id: int) -> str:
        return self.labels.image(image_id - 1)["file_name"]

    def image_annotations(self, image_id: int) -> list[dict[str, Any]]:
        return self.labels.image_annotations(image_id - 1)

    def people(self, person: int) -> np.ndarray:
        """`(P,)` int64 annotation rows of the trainable people (as `CocoLabels.people`);
        the rows are in image id, then annotation id order already."""
        chosen = []
        for start, rows in self.labels.iter_annotation_rows(CHUNK):
            keep = ((rows["category_id"] == person) & (rows["iscrowd"] == 0) & (rows["num_keypoints"] > 0)
                    & (rows["width"] > 1) & (rows["height"] > 1))
            chosen.append(start + np.flatnonzero(keep))
        return np.concatenate(chosen) if chosen else np.zeros(0, np.int64)

    def person(self, item: int) -> tuple[dict[str, Any], str]:
        annotation, image = self.labels.annotation(int(item))
        return annotation, image["file_name"]


def training_labels(source: COCO | ShardedTrainingLabels) -> CocoLabels | ShardedTrainingLabels:
    """The labels a dataset reads: `source` itself, or a COCO wrapped."""
    return CocoLabels(source) if isinstance(source, COCO) else source
