"""COCO's 80 detection categories with their ids (1..90, with gaps), in the order of the
COCO files and of every detector trained on them with contiguous class indices.

Imported teachers (export/importers) map their labels through this table: a contiguous
COCO-80 index, a COCO id, or a class name. `tests/engine/coco/test_categories.py` checks
it against `instances_80cls.json` of ../shared/data where present.
"""

from __future__ import annotations

COCO_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"),
    (7, "train"), (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"),
    (13, "stop sign"), (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"),
    (19, "horse"), (20, "sheep"), (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"),
    (25, "giraffe"), (27, "backpack"), (28, "umbrella"), (31, "handbag"), (32, "tie"),
    (33, "suitcase"), (34, "frisbee"), (35, "skis"), (36, "snowboard"), (37, "sports ball"),
    (38, "kite"), (39, "baseball bat"), (40, "baseball glove"), (41, "skateboard"),
    (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"),
    (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"),
    (54, "sandwich"), (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"),
    (59, "pizza"), (60, "donut"), (61, "cake"), (62, "chair"), (63, "couch"),
    (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"), (72, "tv"),
    (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"), (77, "cell phone"),
    (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"), (82, "refrigerator"),
    (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"),
    (89, "hair drier"), (90, "toothbrush"),
)
COCO_IDS_BY_NAME: dict[str, int] = {name: category_id for category_id, name in COCO_CATEGORIES}
MAX_COCO_ID = 90


def categories_for_names(names: list[str]) -> list[dict]:
    """Model-card categories for class names in label order: COCO's ids when every name is
    one of COCO's, else 1, 2, ... in the given order (a custom data set's own numbering)."""
    if all(name in COCO_IDS_BY_NAME for name in names):
        return [{"id": COCO_IDS_BY_NAME[name], "name": name} for name in names]
    return [{"id": index + 1, "name": name} for index, name in enumerate(names)]


def coco80_categories() -> list[dict]:
    """The 80 categories as model-card categories, in contiguous-index order."""
    return [{"id": category_id, "name": name} for category_id, name in COCO_CATEGORIES]
