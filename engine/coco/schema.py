"""The COCO person-keypoint definitions (names, flip pairs, skeleton, OKS sigmas, sides),
in one place for every package.

Keypoint indices are 0-based in `KEYPOINT_NAMES` and `FLIP_PAIRS`; the COCO file format's
`skeleton` is 1-based, as pycocotools and the COCO API expect.
"""

import re

PERSON_CATEGORY_ID = 1

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye", "right_eye",
    "left_ear", "right_ear",
    "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
    "left_hip", "right_hip",
    "left_knee", "right_knee",
    "left_ankle", "right_ankle",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)

# (left, right) 0-based index pairs swapped by a horizontal flip.
FLIP_PAIRS: tuple[tuple[int, int], ...] = tuple(
    (i, i + 1) for i in range(1, NUM_KEYPOINTS, 2)
)

# COCO's person skeleton, 1-based joint indices as stored in annotation files.
SKELETON: tuple[tuple[int, int], ...] = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7),
    (6, 8), (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5),
    (4, 6), (5, 7),
)

# COCO's per-keypoint OKS sigmas (pycocotools' defaults), same order as KEYPOINT_NAMES.
OKS_SIGMAS: tuple[float, ...] = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)


def flip_permutation() -> list[int]:
    """Index permutation `p` such that flipped[j] = original[p[j]] for all 17 joints."""
    perm = list(range(NUM_KEYPOINTS))
    for left, right in FLIP_PAIRS:
        perm[left], perm[right] = right, left
    return perm


# A keypoint name's side is a whole word "left" or "right" in it ("left_eye", "Left Hand",
# "tail_right", not "leftover"). One pattern for the flip (YOLO's flip_idx) and for the colours
# of the gallery and of Label Studio, so a joint drawn as left is one the flip mirrors.
_SIDE_WORD = re.compile(r"(?<![A-Za-z])(left|right|Left|Right|LEFT|RIGHT)(?![a-z])")
_MIRROR = {"left": "right", "right": "left", "Left": "Right", "Right": "Left", "LEFT": "RIGHT", "RIGHT": "LEFT"}


def keypoint_side(name: str) -> str | None:
    """"left" or "right" when the keypoint name has that word, None otherwise (the middle)."""
    match = _SIDE_WORD.search(name)
    return match.group(1).lower() if match else None


def flip_index(names: list[str]) -> list[int]:
    """Ultralytics' `flip_idx`: for each keypoint, the index of its mirror image under a
    horizontal flip (names with a `left`/`right` word swapped; itself otherwise)."""
    index = {name: i for i, name in enumerate(names)}
    return [index.get(_SIDE_WORD.sub(lambda m: _MIRROR[m.group(1)], name), i) for i, name in enumerate(names)]
