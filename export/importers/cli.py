"""`distill import ultralytics` and `distill import onnx`: teachers from elsewhere.

    distill import ultralytics --onnx yolo11n-pose.onnx --out teacher.onnx
    distill import onnx --onnx ssd.onnx --out teacher.onnx --layout NHWC --resizes \
        --boxes detection_boxes:0 --box-format yxyx --normalized ...

onnx is imported inside the command functions (the `export` extra), so `distill --help`
works on a labeling box without it. Flags: docs/import.md.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

from engine.errors import UserError
from engine.modelcard import HEATMAP_DECODERS
from engine.options import positive_int

DEFAULT_TOPK = 1000


def _number(text: str) -> float:
    """A number, or a fraction such as 1/255."""
    try:
        return float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a number or a fraction like 1/255, got {text!r}") from None


def _triple(text: str) -> tuple[float, float, float]:
    values = [_number(v) for v in text.split(",")]
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected 3 comma-separated values (one per channel), got {text!r}")
    return values[0], values[1], values[2]


def _grey(text: str) -> int:
    value = positive_int(text) if text.strip() != "0" else 0
    if value > 255:
        raise argparse.ArgumentTypeError(f"expected a grey level 0..255, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    from export.importers.formats import BOX_FORMATS, CHANNEL_ORDERS, LAYOUTS

    parser = subparsers.add_parser("import", help="wrap a detector or keypoint model from elsewhere as a teacher",
                                   description="Wrap an ONNX model made elsewhere (Ultralytics, MMDeploy, the TF "
                                               "Object Detection API, MMPose, ...) so that distill label can use it: "
                                               "uint8 input, decoding and top-K in the graph, a model card.")
    kinds = parser.add_subparsers(dest="import_kind", required=True, metavar="SOURCE")

    ultra = kinds.add_parser("ultralytics", help="an Ultralytics detect or pose export (yolo export format=onnx)",
                             description="Read an Ultralytics ONNX export's metadata (names, task, kpt_shape, "
                                         "stride) and wrap it: letterbox padding, decoding, pre-NMS top-K.")
    _common(ultra)
    ultra.set_defaults(func=run_ultralytics)

    onnx = kinds.add_parser("onnx", help="any ONNX detector or top-down keypoint model, described by flags",
                            description="Wrap an ONNX model whose inputs and outputs the flags describe "
                                        "(docs/import.md has the flags of MMDeploy, TF Object Detection API "
                                        "and MMPose exports).")
    _common(onnx)
    onnx.add_argument("--task", choices=("detect", "keypoints"), default="detect",
                      help="detect: boxes, scores, labels; keypoints: a top-down model's heatmaps (default detect)")
    source = onnx.add_argument_group("input (what the network reads)")
    source.add_argument("--input", help="input name (default: the graph's only input)")
    source.add_argument("--layout", choices=LAYOUTS, default="NCHW", help="default NCHW")
    source.add_argument("--channels", choices=CHANNEL_ORDERS, default="RGB", help="channel order (default RGB)")
    source.add_argument("--scale", type=_number, help="float inputs: multiply the 0..255 values first, "
                                                      "e.g. 1/255 (default 1)")
    source.add_argument("--mean", type=_triple, help="float inputs: subtract per channel after --scale, in the "
                                                     "network's channel order, e.g. 123.675,116.28,103.53")
    source.add_argument("--std", type=_triple, help="float inputs: then divide per channel, e.g. 58.395,57.12,57.375")
    views = onnx.add_argument_group("views (how the engine must pad its images)")
    pad = views.add_mutually_exclusive_group()
    pad.add_argument("--pad-multiple", type=positive_int, help="pad views to multiples of this (default 32)")
    pad.add_argument("--resizes", action="store_true", help="the graph resizes its input itself: no padding")
    views.add_argument("--pad-value", type=_grey, help="grey level of the padding (default 0)")
    views.add_argument("--pad-center", action="store_true", help="centre the image in its padding (default: "
                                                                 "top-left corner)")
    det = onnx.add_argument_group("detector outputs (--task detect)")
    det.add_argument("--boxes", help="boxes output (B, N, 4)")
    det.add_argument("--box-format", choices=BOX_FORMATS, help="order of the 4 box values (default xyxy)")
    det.add_argument("--normalized", action="store_true", help="boxes are 0..1 of the input's width and height "
                                                               "(default: input pixels)")
    det.add_argument("--scores", help="scores output (B, N), or (B, N, classes) whose best class is the label")
    det.add_argument("--labels", help="labels output (B, N), integer or float")
    det.add_argument("--dets", help="one output (B, N, 5): x1, y1, x2, y2 in input pixels and score (MMDeploy)")
    det.add_argument("--num-detections", help="output (B,): how many of the N rows are detections (TF)")
    classes = det.add_mutually_exclusive_group()
    classes.add_argument("--label-map", choices=("coco-ids", "coco80", "coco80-1based"),
                         help="what a label is: a COCO category id (TF OD API), a 0-based index of COCO's 80 "
                              "(MMDetection), or a 1-based one (default coco80)")
    classes.add_argument("--names", type=Path, help="text file of class names, one a line, label 0 first")
    det.add_argument("--post-nms", action="store_true", help="the outputs come after the model's own NMS")
    kp = onnx.add_argument_group("keypoint outputs (--task keypoints)")
    kp.add_argument("--heatmaps", help="heatmaps output (B, 17, h, w) of a top-down model")
    kp.add_argument("--crop-padding", type=float, help="how much larger than the person box a crop is (default 1.25)")
    kp.add_argument("--heatmap-decoder", choices=HEATMAP_DECODERS, help="heatmap peak refinement (default quarter)")
    onnx.set_defaults(func=run_onnx)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--onnx", required=True, type=Path, help="the model to import")
    parser.add_argument("--out", required=True, type=Path, help="the teacher to write (.onnx)")
    parser.add_argument("--topk", type=positive_int, default=DEFAULT_TOPK,
                        help=f"detectors: candidates kept per image, best first (default {DEFAULT_TOPK})")


def _checked(what: str, make):
    try:
        return make()
    except ValueError as error:
        raise UserError(f"{what}: {error}") from None


def run_ultralytics(args: argparse.Namespace) -> int:
    from export.importers.ultralytics import describe
    from export.importers.wrap import import_detector, load_model

    fmt, padding, outputs = describe(load_model(args.onnx), args.onnx)
    # Ultralytics clips boxes after its NMS (ultralytics/utils/ops.py, scale_boxes).
    result = import_detector(args.onnx, args.out, fmt, padding, outputs, args.topk, family="ultralytics",
                             clip_after_merge=True)
    _report(result)
    return 0


def run_onnx(args: argparse.Namespace) -> int:
    from export.importers.formats import (DetectorOutputs, HeatmapOutputs, InputFormat, LabelMap, ViewPadding,
                                          read_names)
    from export.importers.wrap import import_detector, import_keypoints

    given = {name: getattr(args, name) for name in ("scale", "mean", "std") if getattr(args, name) is not None}
    fmt = _checked("input description", lambda: InputFormat(args.input, args.layout, args.channels, **given))
    detector_flags = {"--boxes": args.boxes, "--box-format": args.box_format, "--normalized": args.normalized or None,
                      "--scores": args.scores, "--labels": args.labels, "--dets": args.dets,
                      "--num-detections": args.num_detections, "--label-map": args.label_map, "--names": args.names,
                      "--post-nms": args.post_nms or None, "--pad-multiple": args.pad_multiple,
                      "--resizes": args.resizes or None, "--pad-value": args.pad_value,
                      "--pad-center": args.pad_center or None}
    keypoint_flags = {"--heatmaps": args.heatmaps, "--crop-padding": args.crop_padding,
                      "--heatmap-decoder": args.heatmap_decoder}
    if args.task == "keypoints":
        _refuse_flags(detector_flags, "--task keypoints")
        if args.heatmaps is None:
            raise UserError("--task keypoints needs --heatmaps NAME")
        given = {"crop_padding": args.crop_padding, "decoder": args.heatmap_decoder}
        heatmaps = _checked("keypoint outputs", lambda: HeatmapOutputs(
            args.heatmaps, **{k: v for k, v in given.items() if v is not None}))
        result = import_keypoints(args.onnx, args.out, fmt, heatmaps, family="onnx")
    else:
        _refuse_flags(keypoint_flags, "--task detect")
        label_map = (LabelMap("names", read_names(args.names)) if args.names is not None
                     else LabelMap(args.label_map or "coco80"))
        outputs = _checked("detector outputs", lambda: DetectorOutputs(
            boxes=args.boxes, box_format=args.box_format or "xyxy", normalized=args.normalized, scores=args.scores,
            labels=args.labels, dets=args.dets, count=args.num_detections, label_map=label_map,
            post_nms=args.post_nms))
        multiple = 1 if args.resizes else (args.pad_multiple or 32)
        padding = _checked("view padding", lambda: ViewPadding(multiple, args.pad_value or 0, args.pad_center))
        result = import_detector(args.onnx, args.out, fmt, padding, outputs, args.topk, family="onnx")
    _report(result)
    return 0


def _refuse_flags(flags: dict, task: str) -> None:
    given = [flag for flag, value in flags.items() if value is not None]
    if given:
        raise UserError(f"{', '.join(given)} do not apply with {task}")


def _report(result) -> None:
    card = result.card
    if card.task == "detect":
        what = f"detector, {len(card.categories)} categories, top-{card.topk}"
        if card.has_keypoints:
            what += f", {len(card.keypoint_names)} keypoints per candidate"
        where = "centred" if card.pad_position == "center" else "top-left"
        size = (f"fixed input {card.fixed_input[0]}x{card.fixed_input[1]}" if card.fixed_input
                else f"views padded to multiples of {card.view_multiple}")
        what += f"; {size} with grey {card.pad_value}, {where}"
        if card.post_nms:
            what += "; outputs after the model's NMS"
    else:
        what = f"keypoint model, crops {card.input_size[0]}x{card.input_size[1]}, {len(card.keypoint_names)} keypoints"
    print(f"wrote {result.path} ({what}; opset {result.opset}); opened and run once like distill label does")
