"""TensorRT planning in plain Python: profiles, cache keys, sidecar, engine cache,
calibration batches, profile choice. None of this needs tensorrt."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from engine.backends.tensorrt_backend import choose_profile
from engine.errors import UserError
from engine.modelcard import ModelCardError, read_sidecar
from export import trt_build, trt_plan
from export.trt_plan import EngineCache, Profile
from tests.conftest import detector_card, keypoint_card


def test_detector_profiles_one_per_scale_bucket():
    profiles = trt_plan.plan_profiles(detector_card(), max_size=1333, max_batch=4)
    assert [p.label for p in profiles] == [f"scale{s}" for s in range(400, 1201, 100)]
    for scale, p in zip(range(400, 1201, 100), profiles):
        assert all(d % 128 == 0 for shape in (p.min, p.opt, p.max) for d in shape[2:])
        assert all(lo <= opt <= hi for lo, opt, hi in zip(p.min, p.opt, p.max))
        assert p.min == (1, 3, p.min[2], p.min[2]) and scale <= p.opt[2] < scale + 128
        # The smallest scale's profile also takes shorter sides max_size caps below it.
        assert p.min[2] == (128 if scale == 400 else p.opt[2])
        assert p.max[0] == p.opt[0] == 4 and p.max[2] == p.max[3] == 1408  # 1333 rounded up to 128
        assert p.opt[3] >= p.opt[2]  # landscape opt shape


def test_profiles_take_unsorted_duplicate_scales():
    profiles = trt_plan.plan_profiles(detector_card(), scales=[800, 400, 800], max_size=1000, max_batch=1)
    assert [p.label for p in profiles] == ["scale400", "scale800"]


# Each case is wrong in one way only; the message must name that way.
@pytest.mark.parametrize("card, scales, max_batch, message", [
    pytest.param(detector_card, [], 1, "needs at least one shorter-side size", id="no-scales"),
    pytest.param(detector_card, [400, 1200], 1, "scale 1200 exceeds the longer-side cap 1000", id="above-max-size"),
    pytest.param(detector_card, [-5, 400], 1, "scale -5 must be positive", id="negative-scale"),
    pytest.param(detector_card, [0], 1, "scale 0 must be positive", id="zero-scale"),
    pytest.param(detector_card, [400], 0, "the largest batch must be >= 1, got 0", id="detector-batch-0"),
    pytest.param(keypoint_card, [400], 0, "the largest batch must be >= 1, got 0", id="keypoint-batch-0"),
])
def test_profiles_refuse_bad_plans_naming_the_problem(card, scales, max_batch, message):
    with pytest.raises(UserError, match=message):
        trt_plan.plan_profiles(card(), scales=scales, max_size=1000, max_batch=max_batch)


def test_keypoint_profile_is_batch_only():
    (profile,) = trt_plan.plan_profiles(keypoint_card(), max_batch=64)
    assert profile.min == (1, 3, 256, 192) and profile.opt == profile.max == (64, 3, 256, 192)


def test_cache_key_changes_with_every_input():
    profiles = trt_plan.plan_profiles(keypoint_card(), max_batch=8)
    base = dict(onnx_sha256="a" * 64, trt_version="10.7.0", gpu_name="NVIDIA H100", precision="fp16",
                profiles=profiles)
    key = trt_plan.engine_cache_key(**base)
    assert key == trt_plan.engine_cache_key(**base) and len(key) == 64
    variants = [dict(onnx_sha256="b" * 64), dict(trt_version="10.8.0"), dict(gpu_name="NVIDIA L4"),
                dict(precision="fp32"), dict(profiles=trt_plan.plan_profiles(keypoint_card(), max_batch=16))]
    keys = {trt_plan.engine_cache_key(**{**base, **v}) for v in variants}
    assert len(keys) == len(variants) and key not in keys
    with pytest.raises(UserError, match="unknown precision 'int4'"):
        trt_plan.engine_cache_key(**{**base, "precision": "int4"})
    # The calibration set only matters for INT8.
    assert trt_plan.engine_cache_key(**base, calib_sha256="x") == key
    int8 = {**base, "precision": "int8"}
    assert trt_plan.engine_cache_key(**int8, calib_sha256="x") != trt_plan.engine_cache_key(**int8, calib_sha256="y")


def test_sidecar_round_trip_and_engine_cache(tmp_path):
    card = keypoint_card()
    profiles = trt_plan.plan_profiles(card, max_batch=2)
    doc = trt_plan.sidecar_document(card, "10.7.0", "NVIDIA H100", "fp16", profiles, "c" * 64, "k" * 64)
    cache = EngineCache(tmp_path / "cache")
    assert cache.lookup("k" * 64) is None
    stored = cache.store("k" * 64, b"engine-bytes", doc)
    assert cache.lookup("k" * 64) == stored
    out = cache.copy_out("k" * 64, tmp_path / "out" / "kp.engine")
    assert out.read_bytes() == b"engine-bytes"
    side = read_sidecar(out)
    assert side["model_card"] == card and side["tensorrt_version"] == "10.7.0"
    assert [Profile.from_dict(p) for p in side["profiles"]] == profiles
    assert json.loads((tmp_path / "out" / "kp.json").read_text())["precision"] == "fp16"


@pytest.mark.parametrize("sidecar, message", [
    pytest.param(None, r"m\.engine: no sidecar m\.json beside the engine", id="missing"),
    pytest.param("{broken", r"m\.json: cannot read sidecar: not readable JSON \(Expecting property name", id="not-json"),
    pytest.param(json.dumps({"precision": "fp16"}), r"m\.json: sidecar has no 'model_card'", id="no-card"),
    # A list holding the key would pass `"model_card" in data`: the type check refuses it.
    pytest.param(json.dumps(["model_card"]), r"m\.json: cannot read sidecar: not a JSON object but a list", id="list"),
    pytest.param(json.dumps({"model_card": {"format": "other"}}), r"m\.json: model card format 'other'",
                 id="bad-card"),
])
def test_sidecar_errors_name_the_problem(tmp_path, sidecar, message):
    if sidecar is not None:
        (tmp_path / "m.json").write_text(sidecar)
    with pytest.raises(ModelCardError, match=message):
        read_sidecar(tmp_path / "m.engine")


def test_choose_profile_picks_the_tightest_fitting_range():
    profiles = trt_plan.plan_profiles(detector_card(), scales=[400, 800], max_size=1333, max_batch=4)
    ranges = [(p.min, p.max) for p in profiles]
    assert choose_profile((2, 3, 512, 768), ranges) == 0
    assert choose_profile((2, 3, 896, 1280), ranges) == 1
    with pytest.raises(ValueError, match=r"input shape \[8, 3, 512, 512\] fits no optimization profile"):
        choose_profile((8, 3, 512, 512), ranges)


def test_calibration_batches_are_full_letterboxed_uint8(tmp_path):
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(60, 80), (90, 40), (50, 50), (70, 70), (30, 90)]):
        cv2.imwrite(str(tmp_path / f"{i}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    paths = trt_build.calibration_images(tmp_path, limit=10)
    batches = list(trt_build.calibration_batches(paths, (2, 3, 64, 96)))
    assert len(batches) == 2  # 5 images, batch 2: the short last batch is dropped
    assert all(b.shape == (2, 3, 64, 96) and b.dtype == np.uint8 for b in batches)
    # 90x40 (h x w) letterboxed into 64x96: scaled by 64/90, padded on the right.
    tall = trt_build.letterbox(np.full((90, 40, 3), 200, np.uint8), 64, 96)
    assert tall[:, :, :28].min() == 200 and tall[:, :, 30:].max() == 0
    with pytest.raises(UserError, match="calibration image folder not found: .*missing"):
        trt_build.calibration_images(tmp_path / "missing", 1)
    (tmp_path / "no-images").mkdir()
    (tmp_path / "no-images" / "notes.txt").write_text("not an image")
    with pytest.raises(UserError, match=r"no images \(.*\) under .*no-images"):
        trt_build.calibration_images(tmp_path / "no-images", 1)
