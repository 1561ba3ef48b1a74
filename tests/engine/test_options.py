"""The command-line option groups (engine/options.py): one syntax per flag in every tool,
defaults from the typed objects, one-line errors naming the flag."""

from __future__ import annotations

import argparse

import pytest

from engine.cli import build_parser, main
from engine.errors import UserError
from engine.label.labeler import LabelSettings
from engine.label.merge import MergeSettings
from engine.label.plan_file import write_plan_file
from engine.label.request import Inputs, LabelRequest, Runtime
from engine.label.views import DEFAULT_MAX_SIZE, TransformPlan, format_scales, parse_scales
from engine.options import LabelingOptions, OneLineParser, PlanOptions, RayOptions, RuntimeOptions
from export.cli import TRT_PLAN
from tests.conftest import assert_cli_error

LABEL = ["label", "--detector", "d.onnx", "--images", "imgs", "--out", "out"]


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_no_flags_give_the_typed_defaults():
    from engine.label.cli import request_of

    request = request_of(parse(*LABEL))
    assert request.labeling == LabelSettings()
    assert request.runtime == Runtime(progress=request.runtime.progress)
    assert request.inputs == Inputs(images=request.inputs.images)
    assert request.shard_size == LabelRequest(detector=request.detector, out=request.out,
                                              inputs=request.inputs).shard_size


def test_flags_reach_the_typed_request():
    from engine.label.cli import request_of

    request = request_of(parse(*LABEL, "--scales", "96:160:32", "--no-flip", "--max-size", "300",
                               "--score-floor", "0.01", "--vote-threshold", "-1", "--scoring", "avg",
                               "--max-detections", "7", "--no-keypoint-flip", "--batch-size", "3",
                               "--backend", "onnxrt", "--workers", "1", "--backend-threads", "2",
                               "--max-pixels", "1000", "--shard-size", "5"))
    assert request.labeling == LabelSettings(
        plan=TransformPlan.grid((96, 128, 160), flip=False, max_size=300),
        merge=MergeSettings(score_floor=0.01, vote_threshold=None, scoring="avg", max_detections=7),
        keypoint_flip=False)
    runtime = request.runtime
    assert (runtime.backend, runtime.batch_size, runtime.workers, runtime.backend_threads) == ("onnxrt", 3, 1, 2)
    assert (request.inputs.max_pixels, request.shard_size) == (1000, 5)


@pytest.mark.parametrize("text", ["400:1200:100", "400,600,800", "96"])
def test_one_scales_syntax_in_every_tool(text):
    expected = parse_scales(text)
    label = LabelingOptions().plan.parse(parse(*LABEL, "--scales", text))
    plan = parse("plan-transforms", "--detector", "d", "--json", "j", "--images", "i", "--out", "o",
                 "--scales", text)
    trt = parse("export", "trt", "--onnx", "m.onnx", "--out", "m.engine", "--scales", text)
    assert label.scales == expected == TRT_PLAN.parse(trt).scales
    assert LabelingOptions(PlanOptions(plan_file=False)).plan.parse(plan).scales == expected


def test_format_scales_reads_back():
    for scales in [(400, 500, 600), (96,), (96, 128), (100, 300, 400), tuple(range(400, 1201, 100))]:
        assert parse_scales(format_scales(scales)) == scales
    assert format_scales(tuple(range(400, 1201, 100))) == "400:1200:100"


def test_plan_accepts_the_folder_or_the_file(tmp_path):
    chosen = TransformPlan(((400, False), (800, True)), 1500)
    write_plan_file(tmp_path / "plan.json", chosen, {})
    for given in (tmp_path, tmp_path / "plan.json"):
        assert PlanOptions().parse(parse(*LABEL, "--plan", str(given))) == chosen
        # export trt builds its profiles from exactly the passes label --plan runs
        assert TRT_PLAN.parse(parse("export", "trt", "--onnx", "m", "--out", "e", "--plan", str(given))) == chosen


def test_plan_errors_name_the_flag(tmp_path):
    with pytest.raises(UserError, match=r"^--plan .*: file not found"):
        PlanOptions().parse(parse(*LABEL, "--plan", str(tmp_path)))
    (tmp_path / "plan.json").write_text("{}")
    with pytest.raises(UserError, match=r"^--plan .*not a transform plan"):
        PlanOptions().parse(parse(*LABEL, "--plan", str(tmp_path)))
    with pytest.raises(UserError, match="--plan fixes the passes and the max size: drop --scales, --no-flip"):
        PlanOptions().parse(parse(*LABEL, "--plan", str(tmp_path), "--scales", "96", "--no-flip"))


def test_ray_flags_only_with_ray():
    with pytest.raises(UserError, match="--actors, --actor-gpus only apply with --ray"):
        RayOptions().parse(parse(*LABEL, "--actors", "2", "--actor-gpus", "1"))
    with pytest.raises(UserError, match="--workers does not apply with --ray"):
        RayOptions().parse(parse(*LABEL, "--ray", "--workers", "2"))
    pool = RayOptions().parse(parse(*LABEL, "--ray", "--actors", "2", "--actor-cpus", "0.5"))
    assert (pool.address, pool.actors, pool.actor_cpus, pool.actor_gpus) == (None, 2, 0.5, None)
    assert RayOptions().parse(parse(*LABEL)) is None


@pytest.mark.parametrize("flags, fragments", [
    (["--scoring", "best"], ["argument --scoring", "invalid choice: 'best'"]),
    (["--backend", "tflite"], ["argument --backend", "invalid choice: 'tflite'"]),
    (["--nms-threshold", "1.5"], ["argument --nms-threshold", "must be in [0, 1], got 1.5"]),
    (["--batch-size", "0"], ["argument --batch-size", "must be >= 1, got 0"]),
    (["--workers", "two"], ["argument --workers", "expected a whole number, got 'two'"]),
    (["--scales", "0,96"], ["argument --scales", "positive"]),
    (["--actor-cpus", "-1", "--ray"], ["argument --actor-cpus", "must be >= 0"]),
])
def test_bad_values_are_one_line_errors_naming_the_flag(flags, fragments, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*LABEL, *flags])
    assert_cli_error(capsys, exit_.value.code, "label", *fragments)


def test_score_floor_of_one_is_refused_by_the_settings():
    """The flag's type admits [0, 1]; the merge settings refuse a floor of 1, which would
    drop everything: the library error becomes a one-line error about the group."""
    with pytest.raises(UserError, match=r"ensembling settings: score_floor must be in \[0, 1\), got 1.0"):
        LabelingOptions().parse(parse(*LABEL, "--score-floor", "1"))


def test_library_values_are_checked_without_flag_names():
    with pytest.raises(ValueError, match="unknown scoring 'best'"):
        MergeSettings(scoring="best")
    with pytest.raises(ValueError, match="unknown backend 'tflite'"):
        Runtime(backend="tflite")
    with pytest.raises(ValueError, match="exactly one input"):
        Inputs()
    with pytest.raises(ValueError, match=r"^'a,b': expected a list"):
        parse_scales("a,b")


def test_one_line_parser_errors(capsys):
    parser = OneLineParser(prog="distill demo")
    parser.add_argument("--n", type=int, required=True)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args([])
    assert_cli_error(capsys, exit_.value.code, "demo", "the following arguments are required: --n")


def test_runtime_options_a_tool_does_not_offer_are_absent():
    parser = OneLineParser(prog="x")
    RuntimeOptions(workers=False, fp16=False).add(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--workers", "2"])
    assert RuntimeOptions().parse(parser.parse_args(["--backend-threads", "3"])).backend_threads == 3


def test_default_plan_is_the_papers():
    plan = PlanOptions().parse(parse(*LABEL))
    assert plan == TransformPlan() and plan.max_size == DEFAULT_MAX_SIZE and len(plan.passes) == 18
    assert PlanOptions().parse(parse(*LABEL, "--no-flip")).passes == tuple((s, False) for s in range(400, 1201, 100))
