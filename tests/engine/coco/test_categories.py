"""COCO's 80 categories: the table every imported teacher's labels go through."""

from __future__ import annotations

import json

from engine.coco.categories import COCO_CATEGORIES, categories_for_names, coco80_categories


def test_table_is_the_coco_files_categories(coco_mini):
    data = json.loads((coco_mini / "annotations" / "instances_80cls.json").read_text())
    assert [(c["id"], c["name"]) for c in data["categories"]] == list(COCO_CATEGORIES)


def test_names_get_coco_ids_only_when_all_are_cocos():
    assert len(coco80_categories()) == 80 and coco80_categories()[-1] == {"id": 90, "name": "toothbrush"}
    assert categories_for_names(["person", "car", "toothbrush"]) == [
        {"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 90, "name": "toothbrush"}]
    # A data set of its own keeps its own order: 1, 2, ... (a COCO id for some names only
    # would collide with the others').
    assert categories_for_names(["helmet", "person"]) == [{"id": 1, "name": "helmet"}, {"id": 2, "name": "person"}]
