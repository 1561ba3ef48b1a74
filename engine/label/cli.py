"""`distill label`: label a folder (or a list) of images with the teachers' ensemble.

    distill label --detector DET.onnx [--keypoints KP.onnx] --images DIR --out OUT

Defaults follow the paper: shorter side 400..1200 px in steps of 100, each also
mirrored (18 passes), NMS + box voting, mirrored keypoint crops.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from engine.errors import UserError

DEFAULT_SHARD_SIZE = 1000


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "label", help="label images with the teachers' multi-transform ensemble",
        description="Run the detector (and the keypoint model) over every image at every scale "
                    "of the plan, each also mirrored; merge the passes (NMS + box voting, averaged "
                    "heatmaps) and write one record per image into OUT/shards, resumable.")
    p.add_argument("--detector", required=True, type=Path, help="detector: .onnx, .engine (TensorRT) or .pt")
    p.add_argument("--keypoints", type=Path, help="top-down keypoint model: .onnx, .engine or .pt")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, help="folder of images (searched recursively)")
    source.add_argument("--list", type=Path, help="text file of image paths, relative to its folder or absolute")
    p.add_argument("--out", required=True, type=Path, help="run folder: shards/, manifest.json, failures.jsonl")
    add_grid_arguments(p)
    p.add_argument("--plan", type=Path,
                   help="transform plan file written by distill plan-transforms: its passes and max size "
                        "instead of --scales, --no-flip and --max-size")
    add_ensemble_arguments(p)
    p.add_argument("--fp16", action="store_true",
                   help="torch backend on CUDA only: run the models under float16 autocast")
    p.add_argument("--workers", type=int, default=None,
                   help="decode threads and merge threads, each (default: the CPU count)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="refuse images with more pixels than this, read from the header (default 178956970)")
    p.add_argument("--backend-threads", type=int, default=None,
                   help="ONNX Runtime CPU threads per model, the two models running at the same time "
                        "(default: every core for a detector alone; with a keypoint model on the CPU, every "
                        "core each, taking turns, for plans of 2 Mpx or more per image, else half each)")
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE,
                   help=f"images per shard (default {DEFAULT_SHARD_SIZE})")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (same settings and models)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_ray_arguments(p)
    p.set_defaults(func=run)


def add_ray_arguments(p: argparse.ArgumentParser) -> None:
    """Scale-out: the same run on a Ray cluster (docs/scale-out.md)."""
    group = p.add_argument_group("scale-out on Ray (pip install 'distill[scale]')")
    group.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="run on a Ray cluster with Ray Data: ADDRESS (host:6379, ray://host:10001), or "
                            "none for RAY_ADDRESS, else the cluster `ray start` made here, else a new local one")
    group.add_argument("--actors", type=int, default=None,
                       help="labeling actors (default: one per GPU; without GPUs, one per CPU but one)")
    group.add_argument("--actor-cpus", type=float, default=None,
                       help="CPUs each actor reserves and uses as threads (default 1; with GPUs, "
                            "an equal share of the CPUs but one)")
    group.add_argument("--actor-gpus", type=float, default=None,
                       help="GPUs each actor reserves (default 1 where the cluster has GPUs, else 0)")


def add_grid_arguments(p: argparse.ArgumentParser) -> None:
    """The grid of passes: --scales x {original, mirror}, --max-size."""
    from engine.label.views import DEFAULT_MAX_SIZE

    p.add_argument("--scales", help="shorter sides in px: 400,500,600 or start:stop:step (default 400:1200:100)")
    p.add_argument("--max-size", type=int, help=f"cap on the longer side in px (default {DEFAULT_MAX_SIZE})")
    p.add_argument("--no-flip", action="store_true", help="no mirrored detector passes")


def add_ensemble_arguments(p: argparse.ArgumentParser) -> None:
    """How passes become labels: backend, batch, merge settings, keypoint flipping."""
    p.add_argument("--keypoint-flip", action=argparse.BooleanOptionalAction, default=True,
                   help="also run mirrored keypoint crops and average (default: on)")
    p.add_argument("--batch-size", type=int, default=8, help="views (or crops) per backend call (default 8)")
    p.add_argument("--backend", default="auto", help="auto | onnxrt | tensorrt | torch (default auto: from the file suffix)")
    p.add_argument("--score-floor", type=float, default=0.05, help="drop predictions at or below this score (default 0.05)")
    p.add_argument("--nms-threshold", type=float, default=0.5, help="NMS IoU (default 0.5)")
    p.add_argument("--vote-threshold", type=float, default=0.8,
                   help="box voting IoU (default 0.8); a negative value turns voting off")
    p.add_argument("--scoring", default="id", help="box voting score method (default id; see docs/ensemble.md)")
    p.add_argument("--max-detections", type=int, default=100, help="detections kept per image (default 100)")


def grid_plan(args: argparse.Namespace):
    """The TransformPlan of --scales, --no-flip and --max-size."""
    from engine.label.views import DEFAULT_MAX_SIZE, TransformPlan, parse_scales

    max_size = positive(args.max_size, "--max-size") if args.max_size is not None else DEFAULT_MAX_SIZE
    return TransformPlan.grid(parse_scales(args.scales or "400:1200:100"), not args.no_flip, max_size)


def merge_settings_of(args: argparse.Namespace):
    """The MergeSettings of the ensemble arguments (checked)."""
    from engine.label.run import merge_settings

    return merge_settings(args.score_floor, args.nms_threshold,
                          None if args.vote_threshold < 0 else args.vote_threshold, args.scoring,
                          positive(args.max_detections, "--max-detections"))


def positive(value: int, flag: str) -> int:
    if value < 1:
        raise UserError(f"{flag} must be >= 1, got {value}")
    return value


def _transform_plan(args: argparse.Namespace):
    """The detector passes: from --plan, or the grid of --scales x {original, mirror}."""
    from engine.label.plan_file import read_plan_file

    if args.plan is not None:
        given = [flag for flag, value in (("--scales", args.scales), ("--max-size", args.max_size),
                                          ("--no-flip", args.no_flip or None)) if value is not None]
        if given:
            raise UserError(f"--plan fixes the passes and the max size: drop {', '.join(given)}")
        return read_plan_file(args.plan)
    return grid_plan(args)


def _ray_options(args: argparse.Namespace) -> dict | None:
    """The scale-out options, or None for a run on this box (refusing them without --ray)."""
    given = [flag for flag, value in (("--actors", args.actors), ("--actor-cpus", args.actor_cpus),
                                      ("--actor-gpus", args.actor_gpus)) if value is not None]
    if args.ray is None:
        if given:
            raise UserError(f"{', '.join(given)} only apply with --ray")
        return None
    if args.workers is not None:
        raise UserError("--workers does not apply with --ray: each actor uses --actor-cpus threads")
    return {"address": args.ray or None, "actors": positive(args.actors, "--actors") if args.actors is not None else None,
            "actor_cpus": args.actor_cpus, "actor_gpus": args.actor_gpus}


def run(args: argparse.Namespace) -> int:
    from engine.label.run import LabelRequest, label

    ray_options = _ray_options(args)
    request = LabelRequest(
        detector=args.detector, keypoints=args.keypoints, images=args.images, list_file=args.list,
        out=args.out, plan=_transform_plan(args), keypoint_flip=args.keypoint_flip,
        batch_size=positive(args.batch_size, "--batch-size"),
        workers=positive(args.workers, "--workers") if args.workers is not None else (os.cpu_count() or 1),
        backend=args.backend, fp16=args.fp16, **merge_settings_of(args).to_dict(),
        max_pixels=positive(args.max_pixels, "--max-pixels") if args.max_pixels is not None else None,
        shard_size=positive(args.shard_size, "--shard-size"), resume=args.resume,
        backend_threads=positive(args.backend_threads, "--backend-threads") if args.backend_threads is not None else None,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    if ray_options is not None:
        from engine.scale.driver import label_on_ray

        summary = label_on_ray(request, **ray_options)
    else:
        summary = label(request)
    for line in summary.lines():
        print(line)
    return 0
