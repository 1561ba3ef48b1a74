"""A TensorRT engine's optimization profiles checked against a run before it starts
(engine.label.profiles), from sidecars written by the real export code (export.trt_plan):
no TensorRT needed."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest

from engine.backends.tensorrt_backend import TensorRTBackend, choose_profile
from engine.errors import UserError
from engine.label.profiles import check_profiles, pass_shapes, unserved_passes
from engine.label.views import Padding, TransformPlan, make_views
from engine.modelcard import ModelCard, ModelCardError, read_sidecar, sidecar_path
from engine.scaling import round_up, scaled_size
from export import trt_plan
from export.trt_plan import Profile
from tests.conftest import detector_card, keypoint_card

PAPER_PLAN = TransformPlan()  # 400..1200 x mirror, longer side up to 2000


def _engine(folder: Path, name: str, card: ModelCard, profiles: list[Profile]) -> Path:
    """`folder/name` with the sidecar `distill export trt` writes beside it."""
    path = folder / name
    path.write_bytes(b"not a real engine: the check reads only the sidecar")
    document = trt_plan.sidecar_document(card, "10.7.0", "NVIDIA H100", "fp16", profiles, "a" * 64, "b" * 64)
    trt_plan.write_sidecar(path, document)
    return path


def _check(engine: Path, plan: TransformPlan, batch_size: int) -> None:
    """The check as `open_models` runs it, with the card and profiles the TensorRT backend
    reads from the sidecar (before activation: no TensorRT here)."""
    backend = TensorRTBackend(engine)
    check_profiles(engine, read_sidecar(engine)["model_card"], backend.input_profiles, plan, batch_size)


def _every_input(plan: TransformPlan, stride: int, batch_size: int):
    for (scale, _), batch in itertools.product(plan.passes, range(1, batch_size + 1)):
        for h, w in pass_shapes(scale, plan.max_size, stride):
            yield batch, 3, h, w


@pytest.mark.parametrize("scale, max_size", [(96, 200), (200, 200), (250, 200), (33, 200)])
def test_pass_shapes_are_exactly_the_padded_views_of_all_image_sizes(scale, max_size):
    stride = 32
    produced = set()
    for height, width in itertools.product(range(1, 420, 1), range(1, 420, 3)):
        h, w = scaled_size(height, width, scale, max_size)
        produced.add((round_up(h, stride), round_up(w, stride)))
    shapes = pass_shapes(scale, max_size, stride)
    assert len(shapes) == len(set(shapes)) and set(shapes) == produced


def test_pass_shapes_match_make_views_of_an_elongated_image():
    image = np.zeros((37, 410, 3), np.uint8)  # capped by max_size at every scale below
    plan = TransformPlan.grid((96, 160), max_size=200)
    for view in make_views(image, plan, Padding(32)):
        assert view.padded_shape in pass_shapes(view.scale, plan.max_size, 32)


def test_an_engine_built_for_the_plan_serves_it_as_the_backend_picks_profiles(tmp_path):
    card = detector_card()
    engine = _engine(tmp_path, "detector.engine", card, trt_plan.plan_profiles(card, PAPER_PLAN.scales, 2000, 8))
    _check(engine, PAPER_PLAN, 8)
    _check(engine, TransformPlan.grid((400, 800), max_size=1333), 3)  # a smaller plan fits too
    profiles = TensorRTBackend(engine).input_profiles
    for shape in _every_input(PAPER_PLAN, card.max_stride, 8):
        choose_profile(shape, profiles)  # raises where no profile takes the input

    keypoints = keypoint_card()
    crops = _engine(tmp_path, "keypoints.engine", keypoints, trt_plan.plan_profiles(keypoints, max_batch=8))
    _check(crops, PAPER_PLAN, 8)


def test_a_model_without_profiles_takes_any_input():
    check_profiles(Path("detector.onnx"), detector_card(), None, PAPER_PLAN, 64)


def _refusal(engine: Path, plan: TransformPlan, batch_size: int) -> str:
    with pytest.raises(UserError) as error:
        _check(engine, plan, batch_size)
    message = str(error.value)
    assert "\n" not in message and "--" not in message  # one line, about values, no flags
    shape = [int(v) for v in re.search(r"takes the input \[([\d, ]+)\]", message).group(1).split(", ")]
    with pytest.raises(ValueError, match="fits no optimization profile"):
        choose_profile(tuple(shape), TensorRTBackend(engine).input_profiles)  # the backend would fail on it
    return message


def test_passes_the_profiles_cannot_serve_are_named(tmp_path):
    # Landscape and portrait profiles whose shorter side stops at 1024: passes of shorter
    # side above it cannot be served, the others can.
    profiles = [Profile("images", (1, 3, 128, 128), (8, 3, 768, 1024), (8, 3, 1024, 2048), "landscape"),
                Profile("images", (1, 3, 128, 128), (8, 3, 1024, 768), (8, 3, 2048, 1024), "portrait")]
    engine = _engine(tmp_path, "detector.engine", detector_card(), profiles)
    assert _refusal(engine, PAPER_PLAN, 8) == (
        "detector.engine cannot serve passes 1100, 1100 mirrored, 1200, 1200 mirrored in batches of up to 8 "
        "(no optimization profile takes the input [1, 3, 1152, 1152]): its optimization profiles take "
        "batches of 1 to 8 and sides of 128 to 2048 px, the shorter one up to 1024 px")
    _check(engine, TransformPlan.grid((400, 1000)), 8)
    assert list(unserved_passes(TensorRTBackend(engine).input_profiles, TransformPlan(((1000, True), (1200, False))),
                                8, 128)) == [(1200, False)]


def test_batches_larger_than_the_profiles_are_refused(tmp_path):
    card = detector_card()
    engine = _engine(tmp_path, "detector.engine", card, trt_plan.plan_profiles(card, PAPER_PLAN.scales, 2000, 8))
    assert _refusal(engine, PAPER_PLAN, 16) == (
        "detector.engine cannot serve any pass of the plan in batches of up to 16 (no optimization profile "
        "takes the input [9, 3, 512, 512]): its optimization profiles take batches of 1 to 8 and sides of "
        "128 to 2048 px")
    keypoints = keypoint_card()
    crops = _engine(tmp_path, "keypoints.engine", keypoints, trt_plan.plan_profiles(keypoints, max_batch=8))
    assert _refusal(crops, PAPER_PLAN, 9).startswith(
        "keypoints.engine cannot serve the keypoint crops in batches of up to 9 (no optimization profile "
        "takes the input [9, 3, 256, 192])")


def test_a_longer_side_beyond_the_profiles_is_refused(tmp_path):
    card = detector_card()
    engine = _engine(tmp_path, "detector.engine", card, trt_plan.plan_profiles(card, (400, 600, 800), 1333, 8))
    _check(engine, TransformPlan.grid((400, 600, 800), max_size=1333), 8)
    assert "cannot serve any pass of the plan" in _refusal(engine, TransformPlan.grid((400, 600, 800)), 8)


def test_elongated_images_need_a_profile_below_the_smallest_scale(tmp_path):
    # Profiles whose smallest side is the smallest scale (as export built them before):
    # an image elongated enough that max_size caps its shorter side below 400 px fits none.
    card = detector_card()
    profiles = [Profile(p.input_name, (1, 3, p.opt[2], p.opt[2]), p.opt, p.max, p.label)
                for p in trt_plan.plan_profiles(card, PAPER_PLAN.scales, 2000, 8)]
    engine = _engine(tmp_path, "detector.engine", card, profiles)
    message = _refusal(engine, PAPER_PLAN, 8)
    assert "any pass of the plan" in message and "the input [1, 3, 128, 2048]" in message


def test_a_sidecar_without_usable_profiles_is_refused(tmp_path):
    card = detector_card()
    engine = _engine(tmp_path, "detector.engine", card, [])
    assert _refusal(engine, PAPER_PLAN, 8).endswith("(no optimization profile takes the input [1, 3, 512, 512]): "
                                                   "it has no optimization profile")
    sidecar = json.loads(sidecar_path(engine).read_text())
    sidecar["profiles"] = [{"input": "images", "min": [1, 3, 128, 128]}]  # no max
    sidecar_path(engine).write_text(json.dumps(sidecar))
    with pytest.raises(ModelCardError, match=r"detector\.json: malformed optimization profiles .*'max'.*; "
                                             r"rebuild the engine with `distill export trt`$"):
        TensorRTBackend(engine).input_profiles


def test_a_fixed_size_detector_takes_only_plans_whose_views_fit():
    card = dataclasses.replace(detector_card(), fixed_input=[640, 480], fixed_batch=1)
    check_profiles(Path("yolo.onnx"), card, None, TransformPlan.grid((400, 480), max_size=480), 8)
    with pytest.raises(UserError) as error:
        check_profiles(Path("yolo.onnx"), card, None, TransformPlan.grid((400,), max_size=640), 8)
    message = str(error.value)
    assert "yolo.onnx takes only 640x480 inputs" in message and "reach 640 px" in message
    assert "at 480 px or less" in message and "\n" not in message and "--" not in message
