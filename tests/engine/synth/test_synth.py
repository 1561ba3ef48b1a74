"""`distill synth`: COCO validity, keypoint definitions, annotation consistency,
determinism by seed, the shifted distribution, and the CLI's error paths."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from engine.cli import main as distill
from engine.coco.schema import FLIP_PAIRS, KEYPOINT_NAMES, SKELETON, flip_permutation
from engine.errors import UserError
from engine.synth import SynthConfig, generate_dataset

# Written out literally from the COCO keypoint format, so a typo in engine.coco.schema
# cannot hide behind a comparison of the module with itself.
COCO_KEYPOINTS = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
]
COCO_SKELETON = [
    [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
    [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("synth") / "d", 24, seed=7)


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_loads_in_pycocotools_with_images_on_disk(dataset: Path) -> None:
    coco = COCO(str(dataset))
    assert len(coco.getImgIds()) == 24
    assert len(coco.getCatIds()) >= 4  # person + at least three others
    for info in coco.loadImgs(coco.getImgIds()):
        assert (dataset.parent / "images" / info["file_name"]).is_file()
    assert coco.getAnnIds(catIds=[1]), "no person drawn in 24 images"
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert names == {1: "person", 13: "stop sign", 37: "sports ball", 38: "kite", 72: "tv"}
    for info in coco.loadImgs(coco.getImgIds()):
        pixels = cv2.imread(str(dataset.parent / "images" / info["file_name"]))
        assert pixels.shape[:2] == (info["height"], info["width"])


def test_keypoint_definitions_are_cocos(dataset: Path) -> None:
    person = COCO(str(dataset)).loadCats([1])[0]
    assert person["name"] == "person"
    assert person["keypoints"] == COCO_KEYPOINTS == list(KEYPOINT_NAMES)
    assert person["skeleton"] == COCO_SKELETON == [list(p) for p in SKELETON]
    # Flip pairs are exactly the left_X/right_X pairs of the COCO names.
    expected = {(COCO_KEYPOINTS.index(n), COCO_KEYPOINTS.index("right_" + n[5:]))
                for n in COCO_KEYPOINTS if n.startswith("left_")}
    assert set(FLIP_PAIRS) == expected and len(FLIP_PAIRS) == 8
    perm = flip_permutation()
    assert sorted(perm) == list(range(17)) and perm[0] == 0
    assert all(perm[perm[j]] == j for j in range(17))


def test_annotations_are_consistent(dataset: Path) -> None:
    coco = COCO(str(dataset))
    for ann in coco.loadAnns(coco.getAnnIds()):
        image = coco.loadImgs([ann["image_id"]])[0]
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and ann["area"] > 0
        assert x >= 0 and y >= 0 and x + w <= image["width"] + 1e-6 and y + h <= image["height"] + 1e-6
        assert ann["iscrowd"] in (0, 1)
        if ann["category_id"] != 1 or ann["iscrowd"]:
            continue
        kps = np.asarray(ann["keypoints"], dtype=float).reshape(17, 3)
        assert set(np.unique(kps[:, 2])) <= {0, 1, 2}
        assert ann["num_keypoints"] == int((kps[:, 2] > 0).sum())
        # COCO convention: an unlabeled joint is stored as (0, 0, 0).
        assert np.all(kps[kps[:, 2] == 0, :2] == 0)
        labeled = kps[kps[:, 2] > 0]
        assert np.all((labeled[:, 0] >= 0) & (labeled[:, 0] <= image["width"]))
        assert np.all((labeled[:, 1] >= 0) & (labeled[:, 1] <= image["height"]))
        # Joints lie on the drawn figure, hence inside its (amodal) box.
        assert np.all((labeled[:, 0] >= x - 1) & (labeled[:, 0] <= x + w + 1))
        assert np.all((labeled[:, 1] >= y - 1) & (labeled[:, 1] <= y + h + 1))


# pycocotools' decode trips a numpy 2 DeprecationWarning that is not ours to fix.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_area_is_the_visible_segmentation(dataset: Path) -> None:
    coco = COCO(str(dataset))
    for ann in coco.loadAnns(coco.getAnnIds()):
        x, y, w, h = ann["bbox"]
        assert mask_utils.area(ann["segmentation"]) == ann["area"] <= w * h
        assert coco.annToMask(ann).sum() == ann["area"]


def test_visibility_flags_sizes_and_shapes_vary(dataset: Path) -> None:
    data = json.loads(dataset.read_text())
    flags = np.array([v for a in data["annotations"] if a["category_id"] == 1 and not a["iscrowd"]
                      for v in a["keypoints"][2::3]])
    # Visible dominates, but occluded (v=1) and out-of-frame (v=0) joints both occur.
    assert (flags == 2).mean() > 0.6 and (flags == 1).sum() > 0 and (flags == 0).sum() > 0
    images = {i["id"]: i for i in data["images"]}
    sides = [max(a["bbox"][2:]) for a in data["annotations"]]
    rel = [max(a["bbox"][2:]) / min(images[a["image_id"]]["width"], images[a["image_id"]]["height"])
           for a in data["annotations"]]
    assert min(sides) < 20 and max(rel) > 0.4  # small objects and large ones
    longs = [max(i["width"], i["height"]) for i in data["images"]]
    assert 320 <= min(longs) and max(longs) <= 512
    assert any(i["width"] > i["height"] for i in data["images"])
    assert any(i["width"] < i["height"] for i in data["images"])


def test_left_and_right_are_drawn_on_the_expected_sides(tmp_path: Path) -> None:
    # Figures mostly face the camera, so a person's left shoulder is mostly on the image's
    # right. A swapped left/right in the drawing would invert this fraction.
    coco = COCO(str(generate_dataset(tmp_path, 40, seed=5)))
    left_on_right = []
    for ann in coco.loadAnns(coco.getAnnIds(catIds=[1], iscrowd=False)):
        kps = np.asarray(ann["keypoints"], dtype=float).reshape(17, 3)
        if kps[5, 2] > 0 and kps[6, 2] > 0:
            left_on_right.append(kps[5, 0] > kps[6, 0])
    assert len(left_on_right) >= 20
    assert np.mean(left_on_right) > 0.7


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    first = _digest(generate_dataset(tmp_path / "a", 6, seed=3).parent)
    second = _digest(generate_dataset(tmp_path / "b", 6, seed=3).parent)
    other = _digest(generate_dataset(tmp_path / "c", 6, seed=4).parent)
    assert first == second
    # Image i depends only on (seed, shift, i): a shorter run is a prefix of a longer one.
    prefix = _digest(generate_dataset(tmp_path / "p", 2, seed=3).parent)
    assert {k: v for k, v in prefix.items() if k.startswith("images/")} == \
        {k: first[k] for k in prefix if k.startswith("images/")}
    assert first["annotations.json"] != other["annotations.json"]
    assert all(first[k] != other[k] for k in first if k.startswith("images/"))


def test_shift_draws_a_different_distribution(tmp_path: Path) -> None:
    plain = json.loads(generate_dataset(tmp_path / "plain", 12, seed=1).read_text())
    shifted = json.loads(generate_dataset(tmp_path / "shift", 12, seed=1, shift=True).read_text())
    assert shifted["info"]["shift"] is True and plain["info"]["shift"] is False
    plain_backgrounds = {i["background"] for i in plain["images"]}
    shifted_backgrounds = {i["background"] for i in shifted["images"]}
    assert plain_backgrounds.isdisjoint(shifted_backgrounds)

    def saturation(root: Path, data: dict) -> float:
        return float(np.mean([cv2.cvtColor(cv2.imread(str(root / "images" / i["file_name"])),
                                           cv2.COLOR_BGR2HSV)[..., 1].mean() for i in data["images"]]))

    # Sports venues and team kits are more saturated than everyday scenes.
    assert saturation(tmp_path / "shift", shifted) > saturation(tmp_path / "plain", plain) + 10


def test_config_validation_and_round_trip() -> None:
    config = SynthConfig(occlusion_prob=0.5, persons_range=(1, 2))
    assert SynthConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(UserError, match="occlusion_prob"):
        SynthConfig(occlusion_prob=1.5).validate()
    with pytest.raises(UserError, match="persons_range"):
        SynthConfig(persons_range=(3, 1)).validate()
    with pytest.raises(UserError, match="unknown SynthConfig keys: bogus"):
        SynthConfig.from_dict({"bogus": 1})


def test_config_knobs_take_effect(tmp_path: Path) -> None:
    config = SynthConfig(persons_range=(0, 0), no_person_prob=1.0, crowd_prob=0.0)
    data = json.loads(generate_dataset(tmp_path, 5, seed=0, config=config).read_text())
    assert not [a for a in data["annotations"] if a["category_id"] == 1]
    assert data["info"]["config"]["persons_range"] == [0, 0]


def test_cli_writes_a_dataset(tmp_path: Path, capsys) -> None:
    assert distill(["synth", "--out", str(tmp_path / "d"), "--images", "2", "--seed", "1"]) == 0
    assert len(list((tmp_path / "d" / "images").glob("*.jpg"))) == 2


# case: (options replacing the defaults, text of config.json or None, regex the message
# must match). Each case is wrong in one way only, and the message must name that way:
# exit code 2 and the "error:" prefix alone also pass for a refusal with the wrong reason.
CLI_ERRORS = {
    "zero-images": (["--images", "0"], None, "the number of images must be at least 1, got 0"),
    "negative-seed": (["--seed", "-1"], None, "the seed must be a non-negative integer, got -1"),
    "out-is-file": (["--out", "{file}"], None, r"--out .*file\.txt exists and is not a directory"),
    "out-under-file": (["--out", "{file}/d"], None,
                       r"cannot create .*file\.txt/d/images: Not a directory"),
    "missing-config": (["--config", "{tmp}/absent.json"], None,
                       r"config file not found: .*absent\.json"),
    "bad-config-json": (["--config", "{config}"], "{not json",
                        r"config file .*config\.json: not readable JSON \(Expecting property name .* line 1"),
    # Refused by its own check: SynthConfig.from_dict would refuse it too, with a
    # message about something else.
    "config-not-object": (["--config", "{config}"], "[3]", r"config\.json: not a JSON object but a list"),
    "unknown-knob": (["--config", "{config}"], '{"persons_per_image": 3}',
                     "unknown SynthConfig keys: persons_per_image$"),
    "bad-knob-value": (["--config", "{config}"], '{"blur_prob": 2}',
                       "SynthConfig.blur_prob must be a probability, got 2$"),
}


@pytest.mark.parametrize("case", list(CLI_ERRORS))
def test_cli_errors_are_one_line_naming_the_problem(tmp_path: Path, capsys, case: str) -> None:
    extra, config_text, message = CLI_ERRORS[case]
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    config = tmp_path / "config.json"
    if config_text is not None:
        config.write_text(config_text)
    out = tmp_path / "d"
    options = {"--out": str(out), "--images": "2"}
    for flag, value in zip(extra[::2], extra[1::2]):
        options[flag] = value.format(file=a_file, tmp=tmp_path, config=config)
    args = ["synth"] + [item for pair in options.items() for item in pair]
    assert distill(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("distill synth: error:") and "\n" not in err
    assert re.search(message, err), err
    # Refused before writing anything.
    assert not out.exists() and a_file.read_text() == "x"
