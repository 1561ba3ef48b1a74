"""Fixed and staged plans side by side, re-decided from one kept-candidates run of the full
plan: detector cost, images escalated, person box and keypoint AP, labeling images/s.

    .venv/bin/python -m benchmarks.staged_plans --full RUN --gt GT.json --detector DET.onnx \
        [--keypoints KP.onnx] --out DIR --row NAME=PATH [--row ...] [--label]

RUN: `distill label --keep-candidates` of the images with the full plan (its own row,
"full"). Each `--row NAME=PATH`:

    PATH a plan (plan.json or its folder, fixed or staged) whose passes the full run
         ran: `distill remerge` of RUN into DIR/NAME.remerged (no detector), scored;
         with --label also `distill label --plan PATH` into DIR/NAME, timed, and its
         records checked equal to the remerge's
    PATH a finished run folder (e.g. one native pass, which the full plan does not
         hold): scored as it is, its time from its manifest

`--fixed-from TRADEOFF --budgets B [B ...]` adds, for each budget, the best fixed plan
`distill plan-transforms` tried within it (its tradeoff.json, by its objective) as a row
"fixed-B", its plan file written under DIR. Folders already complete under DIR are reused, unfinished ones resumed. Cost: padded
pixels the detector processes for the row's passes (a staged plan: its first stage for
every image, the other passes for the escalated ones), relative to the full plan's, over
the same images. AP: COCOeval of every person the records hold against GT (the model
README's protocol of benchmarks.real_teacher: box AP over all people, keypoint AP with
the box score). Prints the table and writes DIR/results.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.real_teacher import labeled_people, padded_pixels, score, teacher_padding
from engine.label.labeler import LabelSettings
from engine.label.manifest import RunManifest
from engine.label.plan_file import read_staged_plan
from engine.label.request import Inputs, LabelRequest, Runtime
from engine.label.run import label
from engine.label.views import Padding, TransformPlan
from engine.remerge.remerge import RemergeRequest, remerge
from engine.select.predictions import iter_records


def records_of(run: Path) -> list[dict]:
    """The run's records, in shard order."""
    return list(iter_records(run))


def detector_pixels(run: Path, padding: Padding) -> int:
    """Padded pixels the detector processed in `run`: each record's passes (a staged
    plan: the first stage's, all of them where the record says escalated)."""
    labeling = RunManifest.load(run).settings.labeling
    plan, escalation = labeling.plan, labeling.escalation
    every, first = [], []  # (height, width) of the images that ran every pass, only the first stage's
    for record in iter_records(run):
        whole = escalation is None or record.get("escalated")
        (every if whole else first).append((record["height"], record["width"]))
    total = padded_pixels(plan, padding, every)
    if escalation is not None:
        total += padded_pixels(TransformPlan(escalation.first, plan.max_size), padding, first)
    return total


def fixed_plans(tradeoff: Path, budgets: list[float], out: Path) -> list[tuple[str, Path]]:
    """("fixed-B", plan file) of the best fixed plan within each budget B among the
    subsets in `tradeoff` (tradeoff.json of `distill plan-transforms`), by its objective."""
    from engine.label.plan_file import write_plan_file
    from engine.plan.search import Point, choose

    data = json.loads(tradeoff.read_text())
    objective, max_size = data["settings"]["objective"], data["settings"]["plan"]["max_size"]
    names = {}
    points = []
    for item in data["points"]:
        subset = tuple(sorted(item["passes"]))
        names[subset] = item["passes"]
        points.append(Point(subset, item["cost"], item["box_AP"], item["keypoint_AP"], item["step"]))
    rows = []
    for budget in budgets:
        chosen = choose(points, budget, objective)
        passes = tuple((int(name.rstrip("m")), name.endswith("m")) for name in names[chosen.subset])
        path = out / f"fixed-{budget:g}.json"
        write_plan_file(path, TransformPlan(passes, max_size), {"budget": budget, "objective": objective,
                                                                "cost": chosen.cost, "box_AP": chosen.box_AP,
                                                                "keypoint_AP": chosen.keypoint_AP})
        rows.append((f"fixed-{budget:g}", path))
    return rows


def finished(run: Path) -> bool:
    return (run / "manifest.json").is_file() and RunManifest.load(run).complete


def remerged(full: Path, plan_path: Path, out: Path, keypoints: Path | None) -> Path:
    if not finished(out):
        plan, escalation = read_staged_plan(plan_path)
        remerge(RemergeRequest(full, out, plan, keypoints=keypoints, escalation=escalation,
                               resume=(out / "manifest.json").is_file()))
    return out


def labeled(full: Path, plan_path: Path, out: Path, detector: Path, keypoints: Path | None) -> Path:
    """A fresh `distill label --plan` of the full run's input, with its merge settings."""
    if not finished(out):
        manifest = RunManifest.load(full)
        plan, escalation = read_staged_plan(plan_path)
        settings = LabelSettings(plan, manifest.settings.labeling.merge, manifest.settings.labeling.keypoint_flip,
                                 escalation)
        label(LabelRequest(detector=detector, out=out, keypoints=keypoints,
                           inputs=Inputs(images=manifest.settings.input.images), labeling=settings,
                           runtime=Runtime(progress=False), shard_size=manifest.shard_size,
                           resume=(out / "manifest.json").is_file()))
    return out


def row(name: str, run: Path, gt: dict, padding: Padding, full_pixels: int, timed: Path | None,
        same: bool | None) -> dict:
    """One row: `run` scored; `timed` the run whose manifest gives images/s."""
    manifest = RunManifest.load(run)
    records = records_of(run)
    escalated = [r["escalated"] for r in records if "escalated" in r]
    metrics = score(gt, labeled_people(run))
    summary = RunManifest.load(timed).summary if timed is not None else None
    return {"name": name, "passes": len(manifest.settings.labeling.plan.passes),
            "cost": detector_pixels(run, padding) / full_pixels,
            "escalated": float(np.mean(escalated)) if escalated else None,
            "box_AP": metrics["box_AP"], "keypoint_AP": metrics.get("keypoint_AP"),
            "images_per_second": summary.images / summary.wall_seconds if summary and summary.wall_seconds else None,
            "remerge_equals_label": same, "metrics": metrics}


def table(rows: list[dict]) -> list[str]:
    lines = [f"{'row':<14} {'passes':>6} {'cost':>6} {'escal.':>6} {'box AP':>7} {'kp AP':>7} {'img/s':>6} "
             f"{'remerge=label':>13}"]
    for r in rows:
        escal = "-" if r["escalated"] is None else f"{r['escalated']:.2f}"
        speed = "-" if r["images_per_second"] is None else f"{r['images_per_second']:.2f}"
        kp = "-" if r["keypoint_AP"] is None else f"{r['keypoint_AP']:.3f}"
        same = {None: "-", True: "yes", False: "NO"}[r["remerge_equals_label"]]
        lines.append(f"{r['name']:<14} {r['passes']:>6} {r['cost']:>6.3f} {escal:>6} {r['box_AP']:>7.3f} {kp:>7} "
                     f"{speed:>6} {same:>13}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", required=True, type=Path, help="distill label --keep-candidates of the full plan")
    parser.add_argument("--gt", required=True, type=Path, help="COCO ground truth of the run's images")
    parser.add_argument("--detector", required=True, type=Path)
    parser.add_argument("--keypoints", type=Path, help="the run's top-down keypoint model, if it had one")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--row", action="append", default=[], metavar="NAME=PATH",
                        help="a plan (remerged, and labeled with --label) or a finished run folder")
    parser.add_argument("--label", action="store_true", help="also label each plan fresh: images/s, and the check")
    parser.add_argument("--fixed-from", type=Path, metavar="TRADEOFF",
                        help="tradeoff.json of distill plan-transforms: rows of its best fixed plans at --budgets")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.25, 0.5])
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    gt = json.loads(args.gt.read_text())
    padding = teacher_padding(args.detector)
    full_pixels = detector_pixels(args.full, padding)
    rows = [row("full", args.full, gt, padding, full_pixels, args.full, None)]
    specs = [(name, Path(path)) for name, _, path in (spec.partition("=") for spec in args.row)]
    if args.fixed_from is not None:
        specs += fixed_plans(args.fixed_from, args.budgets, args.out)
    for name, path in specs:
        if (path / "manifest.json").is_file():
            rows.append(row(name, path, gt, padding, full_pixels, path, None))
            continue
        run = remerged(args.full, path, args.out / f"{name}.remerged", args.keypoints)
        timed = same = None
        if args.label:
            timed = labeled(args.full, path, args.out / name, args.detector, args.keypoints)
            same = records_of(timed) == records_of(run)
        rows.append(row(name, run, gt, padding, full_pixels, timed, same))
        print(table(rows)[-1], flush=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(table(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
