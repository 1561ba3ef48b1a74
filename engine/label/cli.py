"""`distill label`: label a folder (or a list) of images with the teachers' ensemble.

    distill label --detector DET.onnx [--keypoints KP.onnx] --images DIR --out OUT

Defaults follow the paper: shorter side 400..1200 px in steps of 100, each also
mirrored (18 passes), NMS + box voting, mirrored keypoint crops. The flags come from the
option groups of engine/options.py, shared with plan-transforms, export and the benchmarks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.options import (InputOptions, LabelingOptions, ModelOptions, RayOptions, RuntimeOptions,
                            default_of, positive_int)

MODELS, INPUTS, LABELING, RUNTIME, RAY = (ModelOptions(), InputOptions(), LabelingOptions(), RuntimeOptions(),
                                          RayOptions())


def register(subparsers: argparse._SubParsersAction) -> None:
    from engine.label.request import LabelRequest

    p = subparsers.add_parser(
        "label", help="label images with the teachers' multi-transform ensemble",
        description="Run the detector (and the keypoint model) over every image at every scale "
                    "of the plan, each also mirrored; merge the passes (NMS + box voting, averaged "
                    "heatmaps) and write one record per image into OUT/shards, resumable.")
    MODELS.add(p)
    INPUTS.add(p)
    p.add_argument("--out", required=True, type=Path, help="run folder: shards/, manifest.json, failures.jsonl")
    p.add_argument("--shard-size", type=positive_int,
                   help=f"images per shard (default {default_of(LabelRequest, 'shard_size')})")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (same settings and models)")
    p.add_argument("--keep-candidates", action="store_true",
                   help="keep every pass's pre-merge candidates beside each shard (OUT/candidates), so that "
                        "distill remerge can ensemble them again without the detector")
    LABELING.add(p)
    RUNTIME.add(p)
    RAY.add(p)
    p.set_defaults(func=run)


def request_of(args: argparse.Namespace):
    """The `LabelRequest` of parsed `distill label` arguments."""
    from engine.label.request import LabelRequest

    given = {"shard_size": args.shard_size} if args.shard_size is not None else {}
    return LabelRequest(detector=args.detector, keypoints=args.keypoints, out=args.out, inputs=INPUTS.parse(args),
                        labeling=LABELING.parse(args), runtime=RUNTIME.parse(args), resume=args.resume,
                        keep_candidates=args.keep_candidates, **given)


def run(args: argparse.Namespace) -> int:
    from engine.label.run import label
    from engine.label.shards import RunExists
    from engine.errors import UserError

    pool = RAY.parse(args)
    if pool is not None and args.keep_candidates:
        raise UserError("--keep-candidates does not apply with --ray (the actors return records only)")
    request = request_of(args)
    try:
        if pool is not None:
            from engine.scale.driver import label_on_ray

            summary = label_on_ray(request, pool)
        else:
            summary = label(request)
    except RunExists as error:
        raise UserError(f"{error}: pass --resume to continue it, or choose another --out") from None
    for line in summary.lines():
        print(line)
    return 0
