"""Command-line option groups: each adds its flags to a parser and parses them into one
typed object, so a flag means the same thing with the same syntax in every tool
(`distill label`, `distill plan-transforms`, `distill export trt`, the benchmarks).

    plan = PlanOptions()            # --scales --max-size --no-flip --plan
    plan.add(parser)
    ...
    args = parser.parse_args()
    transform_plan = plan.parse(args)   # a TransformPlan

Flags a user did not give stay None, and the typed object's own default applies, so each
default is written once (on the dataclass). Values are checked twice over: argparse
types check each flag's syntax and range (the error names the flag), and the typed
objects check themselves (`ValueError` about the value, for library callers); `parse`
turns the latter into a one-line `UserError` naming the flag group.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import NoReturn

from engine.errors import UserError


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (`distill label: error: ...`, exit
    status 2), like every other user mistake, instead of the usage text plus a line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


# ---- argparse types: one syntax per kind of value, the flag named by argparse ------------
def scales(text: str) -> tuple[int, ...]:
    """`FIRST:LAST:STEP` (LAST included) or a comma list -> shorter sides in px."""
    from engine.label.views import parse_scales

    try:
        return parse_scales(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def image_root(text: str) -> Path | str:
    """A folder of images, or an object-storage URL (kept a str: Path would eat its "//")."""
    from engine.label.storage import is_url

    return text if is_url(text) else Path(text)


def positive_float(text: str) -> float:
    value = _float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {value}")
    return value


def unit_interval(text: str) -> float:
    """A fraction in [0, 1]."""
    value = _float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def default_of(cls: type, name: str):
    """The dataclass default of field `name` (for help texts: the default is defined once)."""
    field = next(f for f in fields(cls) if f.name == name)
    return field.default_factory() if callable(field.default_factory) else field.default


def _checked(what: str, make):
    """`make()`, a library ValueError turned into a one-line UserError about `what`."""
    try:
        return make()
    except ValueError as error:
        raise UserError(f"{what}: {error}") from None


def progress_wanted(args: argparse.Namespace) -> bool:
    """A progress bar unless --no-progress, or stderr is not a terminal."""
    return not args.no_progress and sys.stderr.isatty()


# ---- groups -------------------------------------------------------------------------------
class ModelOptions:
    """--detector (required) and --keypoints: the teachers' model files."""

    def __init__(self, keypoints_help: str = "top-down keypoint model: .onnx, .engine or .pt") -> None:
        self.keypoints_help = keypoints_help

    def add(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--detector", required=True, type=Path, help="detector: .onnx, .engine (TensorRT) or .pt")
        parser.add_argument("--keypoints", type=Path, help=self.keypoints_help)


class PlanOptions:
    """The detector passes -> `TransformPlan`: the grid --scales x {original, mirror}
    (--no-flip: originals only) capped by --max-size, or the passes of a --plan file.

    default: the tool's plan when no flag is given (the paper's by default); flip: offer
    --no-flip (a tool that only needs the view shapes does not); plan_file: offer --plan.
    """

    def __init__(self, default=None, flip: bool = True, plan_file: bool = True) -> None:
        from engine.label.views import TransformPlan

        self.default = default or TransformPlan()
        self.flip = flip
        self.plan_file = plan_file

    def add(self, parser: argparse.ArgumentParser) -> None:
        from engine.label.views import format_scales

        replaced = "--scales, --max-size" + (", --no-flip" if self.flip else "")
        group = parser.add_argument_group("transform plan")
        group.add_argument("--scales", type=scales, metavar="FIRST:LAST:STEP|A,B,..",
                           help=f"shorter sides in px, a range like 400:1200:100 or a list like 400,600 "
                                f"(default {format_scales(self.default.scales)})")
        group.add_argument("--max-size", type=positive_int,
                           help=f"cap on the longer side in px (default {self.default.max_size})")
        if self.flip:
            group.add_argument("--no-flip", action="store_true", help="no mirrored detector passes")
        if self.plan_file:
            group.add_argument("--plan", type=Path,
                               help="the passes and max size that distill plan-transforms chose: its output "
                                    f"folder or the plan.json inside it, instead of {replaced}")

    def parse(self, args: argparse.Namespace):
        from engine.label.plan_file import read_plan_file
        from engine.label.views import TransformPlan

        no_flip = getattr(args, "no_flip", False)
        if getattr(args, "plan", None) is not None:
            given = [flag for flag, value in (("--scales", args.scales), ("--max-size", args.max_size),
                                              ("--no-flip", no_flip or None)) if value is not None]
            if given:
                raise UserError(f"--plan fixes the passes and the max size: drop {', '.join(given)}")
            try:
                return read_plan_file(args.plan)
            except ValueError as error:
                raise UserError(f"--plan {error}") from None
        if args.scales is None and args.max_size is None and not no_flip:
            return self.default
        _, default_flip = self.default.is_grid()
        return TransformPlan.grid(args.scales or self.default.scales, default_flip and not no_flip,
                                  args.max_size or self.default.max_size)

    def escalation(self, args: argparse.Namespace):
        """The stages of the --plan file (an `Escalation`), or None: no file, or a fixed plan."""
        from engine.label.plan_file import read_staged_plan

        if getattr(args, "plan", None) is None:
            return None
        try:
            return read_staged_plan(args.plan)[1]
        except ValueError as error:
            raise UserError(f"--plan {error}") from None


class MergeOptions:
    """How one image's candidates become detections -> `MergeSettings`."""

    def add(self, parser: argparse.ArgumentParser) -> None:
        from engine.ensemble import SCORING_METHODS
        from engine.label.merge import MergeSettings

        default = MergeSettings()
        group = parser.add_argument_group("ensembling (NMS + box voting)")
        group.add_argument("--score-floor", type=unit_interval,
                           help=f"drop predictions at or below this score (default {default.score_floor})")
        group.add_argument("--nms-threshold", type=unit_interval, help=f"NMS IoU (default {default.nms_threshold})")
        group.add_argument("--vote-threshold", type=_float,
                           help=f"box voting IoU (default {default.vote_threshold}); a negative value turns voting off")
        group.add_argument("--scoring", choices=SCORING_METHODS,
                           help=f"box voting score method (default {default.scoring}; see docs/ensemble.md)")
        group.add_argument("--max-detections", type=positive_int,
                           help=f"detections kept per image (default {default.max_detections})")

    def parse(self, args: argparse.Namespace):
        from engine.label.merge import MergeSettings

        given = {name: getattr(args, name) for name in ("score_floor", "nms_threshold", "scoring", "max_detections")
                 if getattr(args, name) is not None}
        if args.vote_threshold is not None:
            given["vote_threshold"] = None if args.vote_threshold < 0 else args.vote_threshold
        return _checked("ensembling settings", lambda: MergeSettings(**given))


class LabelingOptions:
    """What decides the records -> `LabelSettings`: the plan, the merge, keypoint flipping."""

    def __init__(self, plan: PlanOptions | None = None) -> None:
        self.plan = plan or PlanOptions()
        self.merge = MergeOptions()

    def add(self, parser: argparse.ArgumentParser) -> None:
        self.plan.add(parser)
        self.merge.add(parser)
        parser.add_argument("--keypoint-flip", action=argparse.BooleanOptionalAction, default=None,
                            help="also run mirrored keypoint crops and average (default: on)")

    def parse(self, args: argparse.Namespace):
        from engine.label.labeler import LabelSettings

        given = {"keypoint_flip": args.keypoint_flip} if args.keypoint_flip is not None else {}
        return LabelSettings(plan=self.plan.parse(args), merge=self.merge.parse(args),
                             escalation=self.plan.escalation(args), **given)


class InputOptions:
    """The images -> `Inputs`: --images DIR|TAR|PATTERN|URL|VIDEO or --list FILE,
    --max-pixels, --dedupe, and the video frame sampling --fps N or --every-frame K."""

    def add(self, parser: argparse.ArgumentParser) -> None:
        from engine.label.request import Inputs

        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--images", metavar="DIR|TAR|PATTERN|URL|VIDEO",
                            help="folder of images (searched recursively; tar shards in it are read in place, "
                                 "and videos too with --fps or --every-frame), a video file, "
                                 "a tar shard (WebDataset: records named 00042.tar/key.jpg), a brace "
                                 "pattern of shards such as 'dump/{00000..00099}.tar', or an object-storage "
                                 "prefix such as s3://bucket/images (pip install 'distill[storage]'; "
                                 "credentials from the environment or the AWS config)")
        source.add_argument("--list", type=Path, help="text file of image paths, relative to its folder or absolute")
        parser.add_argument("--max-pixels", type=positive_int,
                            help=f"refuse images with more pixels than this, read from the header "
                                 f"(default {default_of(Inputs, 'max_pixels')})")
        parser.add_argument("--dedupe", action="store_true",
                            help="an image whose bytes equal an earlier image's is not labeled again: its record "
                                 "points at the first one ({\"file_name\", \"duplicate_of\"}), and distill select "
                                 "skips it")
        frames = parser.add_mutually_exclusive_group()
        frames.add_argument("--fps", type=positive_float, metavar="N",
                            help="read video files (.mp4, .mkv, .mov, ...) too, labeling at most N frames per "
                                 "second of video: the first frame of every 1/N s; a frame's record is named "
                                 "video.mp4#t=12.480 (its presentation time in seconds)")
        frames.add_argument("--every-frame", type=positive_int, metavar="K",
                            help="read video files too, labeling every K-th decoded frame (1: all of them)")

    def parse(self, args: argparse.Namespace):
        from engine.label.request import Inputs

        from engine.label.video import FrameSampling, is_video_name

        given = {"max_pixels": args.max_pixels} if args.max_pixels is not None else {}
        frames = None
        if args.fps is not None or args.every_frame is not None:
            frames = FrameSampling(fps=args.fps, every=args.every_frame)
        elif args.images is not None and is_video_name(str(args.images)):
            raise UserError(f"--images {args.images} is a video: give --fps N or --every-frame K")
        return Inputs(images=args.images, list_file=args.list, dedupe=args.dedupe, frames=frames, **given)


class RuntimeOptions:
    """How the models run -> `Runtime`: --backend, --batch-size, --backend-threads,
    --no-progress, and where the tool has them, --workers and --fp16."""

    def __init__(self, workers: bool = True, fp16: bool = True,
                 threads_help: str = "ONNX Runtime CPU threads per model, the two models running at the same time "
                                     "(default: every core for a detector alone; with a keypoint model on the CPU, "
                                     "every core each, taking turns, for plans of 2 Mpx or more per image, else half "
                                     "each)") -> None:
        self.workers = workers
        self.fp16 = fp16
        self.threads_help = threads_help

    def add(self, parser: argparse.ArgumentParser) -> None:
        from engine.label.models import BACKENDS
        from engine.label.request import Runtime

        group = parser.add_argument_group("runtime (never changes a record)")
        group.add_argument("--backend", choices=BACKENDS,
                           help="model runtime (default auto: from the file suffix, .onnx ONNX Runtime, "
                                ".engine TensorRT, .pt torch)")
        group.add_argument("--batch-size", type=positive_int,
                           help=f"views (or crops) per backend call (default {default_of(Runtime, 'batch_size')})")
        group.add_argument("--backend-threads", type=positive_int, help=self.threads_help)
        if self.workers:
            group.add_argument("--workers", type=positive_int,
                               help="decode threads and merge threads, each (default: the CPU count)")
        if self.fp16:
            group.add_argument("--fp16", action="store_true",
                               help="torch backend on CUDA only: run the models under float16 autocast")
        group.add_argument("--no-progress", action="store_true", help="no progress bar")

    def parse(self, args: argparse.Namespace):
        from engine.label.request import Runtime

        given = {name: getattr(args, name, None) for name in ("backend", "batch_size", "backend_threads", "workers")}
        given = {name: value for name, value in given.items() if value is not None}
        return Runtime(fp16=getattr(args, "fp16", False), progress=progress_wanted(args), **given)


class RayOptions:
    """Scale-out on a Ray cluster -> `RayPool`, or None for a run on this box
    (docs/scale-out.md)."""

    def add(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("scale-out on Ray (pip install 'distill[scale]')")
        group.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                           help="run on a Ray cluster with Ray Data: ADDRESS (host:6379, ray://host:10001), or "
                                "none for RAY_ADDRESS, else the cluster `ray start` made here, else a new local one")
        group.add_argument("--actors", type=positive_int,
                           help="labeling actors (default: one per GPU; without GPUs, one per CPU but one)")
        group.add_argument("--actor-cpus", type=non_negative_float,
                           help="CPUs each actor reserves and uses as threads (default 1; with GPUs, "
                                "an equal share of the CPUs but one)")
        group.add_argument("--actor-gpus", type=non_negative_float,
                           help="GPUs each actor reserves (default 1 where the cluster has GPUs, else 0)")

    def parse(self, args: argparse.Namespace):
        from engine.label.request import RayPool

        given = [flag for flag, value in (("--actors", args.actors), ("--actor-cpus", args.actor_cpus),
                                          ("--actor-gpus", args.actor_gpus)) if value is not None]
        if args.ray is None:
            if given:
                raise UserError(f"{', '.join(given)} only apply with --ray")
            return None
        if getattr(args, "workers", None) is not None:
            raise UserError("--workers does not apply with --ray: each actor uses --actor-cpus threads")
        return RayPool(address=args.ray or None, actors=args.actors, actor_cpus=args.actor_cpus,
                       actor_gpus=args.actor_gpus)
