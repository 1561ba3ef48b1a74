"""`distill remerge`: ensemble a labeling run's kept candidates again, without the detector.

    distill remerge --predictions OUT --out OUT2 [--plan PLAN] [--nms-threshold ..] [--keypoints KP.onnx] [--resume]

OUT must have been labeled with `--keep-candidates`. Merge flags not given keep the
run's values; `--plan` picks a subset of the run's passes (a plan file, as
`distill plan-transforms` writes them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.options import MergeOptions, positive_int

MERGE = MergeOptions()


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "remerge", help="ensemble a run's kept candidates again (other merge settings, fewer passes), no detector",
        description="Re-ensemble the pre-merge candidates that distill label --keep-candidates kept, with other "
                    "merge settings or a subset of the passes, into a new run folder whose records equal a "
                    "fresh distill label with those settings. The detector does not run; the keypoint model "
                    "runs only on person boxes that changed.")
    p.add_argument("--predictions", required=True, type=Path, help="the run folder labeled with --keep-candidates")
    p.add_argument("--out", required=True, type=Path, help="the new run folder")
    p.add_argument("--plan", type=Path, help="a subset of the run's passes: a plan.json or the folder holding it "
                                             "(default: every pass of the run); a staged plan's rule is decided "
                                             "again on the kept first-stage candidates")
    p.add_argument("--keypoints", type=Path, help="the run's top-down keypoint model (needed when person boxes change)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted remerge into --out (same settings): finished shards are kept")
    MERGE.add(p)
    group = p.add_argument_group("runtime (never changes a record)")
    group.add_argument("--backend", default="auto", help="keypoint model runtime (default auto)")
    group.add_argument("--batch-size", type=positive_int, default=8, help="crops per keypoint model call (default 8)")
    group.add_argument("--workers", type=positive_int, default=1, help="merge threads (default 1)")
    p.set_defaults(func=run)


def merge_of(args: argparse.Namespace, old):
    """The run's MergeSettings `old` with the merge flags that were given."""
    from dataclasses import replace

    from engine.errors import UserError

    given = {name: getattr(args, name) for name in ("score_floor", "nms_threshold", "scoring", "max_detections")
             if getattr(args, name) is not None}
    if args.vote_threshold is not None:
        given["vote_threshold"] = None if args.vote_threshold < 0 else args.vote_threshold
    try:
        return replace(old, **given)
    except ValueError as error:
        raise UserError(f"ensembling settings: {error}") from None


def run(args: argparse.Namespace) -> int:
    from engine.errors import UserError
    from engine.label.manifest import RunManifest
    from engine.label.plan_file import read_staged_plan
    from engine.label.shards import RunExists
    from engine.remerge.remerge import RemergeRequest, remerge

    manifest = RunManifest.load(args.predictions)
    plan = escalation = None
    if args.plan is not None:
        try:
            plan, escalation = read_staged_plan(args.plan)
        except ValueError as error:
            raise UserError(f"--plan {error}") from None
    request = RemergeRequest(args.predictions, args.out, plan, merge_of(args, manifest.settings.labeling.merge),
                             args.keypoints, escalation, args.backend, args.batch_size, args.workers, args.resume)
    try:
        summary = remerge(request)
    except RunExists as error:
        raise UserError(f"{error}: choose another --out, or --resume an interrupted remerge") from None
    for line in summary.lines():
        print(line)
    return 0
