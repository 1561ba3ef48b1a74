"""`distill plan-transforms`: measure which test-time passes pay, write the plan that fits a budget.

    distill plan-transforms --detector DET.onnx [--keypoints KP.onnx] --json VAL.json \
        --images VAL_DIR --out PLAN_DIR [--budget 0.5] [--scales 400:1200:100] \
        [--objective keypoints] [--partial-labels]

Runs the full plan once over the labeled validation images, keeps every pass's raw
outputs, then ensembles subsets of them (greedy forward selection, no detector
re-inference) and prints AP against the relative detector cost. Writes PLAN_DIR/plan.json
(for `distill label --plan`), PLAN_DIR/tradeoff.json and PLAN_DIR/front.png. Keypoints
come from where labeling takes them: the top-down model when one is given, else a
one-stage pose detector's own.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from engine.errors import UserError
from engine.options import LabelingOptions, ModelOptions, PlanOptions, RuntimeOptions, positive_int


MODELS = ModelOptions(keypoints_help="top-down keypoint model: adds keypoint AP (a one-stage pose detector "
                                     "gives it without one)")
# No --plan: this command measures a grid and writes the plan.
LABELING = LabelingOptions(PlanOptions(plan_file=False))
RUNTIME = RuntimeOptions(workers=False, fp16=False,
                         threads_help="ONNX Runtime CPU threads per model (default: all cores; the models run "
                                      "one after the other)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plan-transforms", help="choose the test-time passes that pay, by measuring them on labeled images",
        description="Run every pass of the plan once on a labeled validation set, ensemble subsets of "
                    "the cached passes (greedy forward selection), print AP against detector cost with "
                    "the Pareto front, and write the best plan within --budget for distill label --plan.")
    MODELS.add(p)
    p.add_argument("--json", required=True, type=Path, help="COCO ground truth of the validation images")
    p.add_argument("--images", required=True, type=Path, help="folder the JSON's file_name entries are relative to")
    p.add_argument("--out", required=True, type=Path, help="folder for plan.json, tradeoff.json, front.png")
    p.add_argument("--budget", type=float, default=0.5,
                   help="detector cost allowed, as a fraction of the full plan's (default 0.5)")
    p.add_argument("--objective", choices=("box", "keypoints"), default="box",
                   help="what greedy selection maximises (default box AP; keypoints needs --keypoints, "
                        "run for every subset tried, or a one-stage pose detector)")
    p.add_argument("--partial-labels", action="store_true",
                   help="the JSON labels only some objects: use only its images with an annotation, and "
                        "score only predictions whose box overlaps a labeled object of their category "
                        "(IoU >= 0.5); the others may be unlabeled objects and are ignored, not counted false")
    p.add_argument("--stages", type=float, metavar="BUDGET",
                   help="also find a staged plan of at most this mean detector cost (fraction of the full "
                        "plan's): a cheap first stage for every image, a dearer target plan's other passes "
                        "for the images a rule escalates (target, rule and parameters chosen here); "
                        "plan.json gets it when it beats the best fixed plan within BUDGET")
    p.add_argument("--first-budget", type=float, default=0.12,
                   help="with --stages: the first stage's cost at most (default 0.12)")
    p.add_argument("--max-images", type=positive_int,
                   help="use only the first N images of the JSON (sorted by file name)")
    LABELING.add(p)
    RUNTIME.add(p)
    p.set_defaults(func=run)


def _coco_of(dataset: dict, images: list[dict]):
    """A pycocotools COCO of `dataset` restricted to `images` and their annotations."""
    from engine.coco.evaluate import coco_api

    ids = {image["id"] for image in images}
    return coco_api({**dataset, "images": images,
                     "annotations": [a for a in dataset["annotations"] if a["image_id"] in ids]})


def _ground_truth(path: Path, images: Path, max_images: int | None, annotated_only: bool = False):
    """(COCO of the chosen images, [(file name, path)]) from the labeled file;
    annotated_only: only the images with at least one annotation."""
    from engine.coco.read import load_coco

    gt = load_coco(path)
    candidates = list(gt.images.values())
    if annotated_only:
        annotated = {a["image_id"] for a in gt.data["annotations"]}
        candidates = [image for image in candidates if image["id"] in annotated]
    if not candidates:
        raise UserError(f"--json {path} lists no {'annotated ' if annotated_only else ''}images")
    chosen = sorted(candidates, key=lambda image: image["file_name"])[:max_images]
    return _coco_of(gt.data, chosen), [(image["file_name"], images / image["file_name"]) for image in chosen]


def _restrict(gt, names: list[str]):
    """`gt` without the images that could not be decoded (they would count as misses for
    every subset alike, and only blur the differences)."""
    keep = set(names)
    return _coco_of(gt.dataset, [image for image in gt.dataset["images"] if image["file_name"] in keep])


def run(args: argparse.Namespace) -> int:
    from engine.label.decode import DEFAULT_MAX_PIXELS
    from engine.label.run import open_models
    from engine.label.plan_file import PLAN_FILE_NAME, write_plan_file
    from engine.label.views import TransformPlan
    from engine.plan.passes import run_passes
    from engine.plan.report import pass_name, plot_front, summary_line, table, write_json
    from engine.plan.scoring import KeypointStage, SubsetScorer
    from engine.plan.search import choose, greedy_forward, mark_front

    if not 0.0 < args.budget <= 1.0:
        raise UserError(f"--budget is a fraction of the full plan's cost, in (0, 1]; got {args.budget}")
    for flag, value in (("--stages", args.stages), ("--first-budget", args.first_budget)):
        if value is not None and not 0.0 < value <= 1.0:
            raise UserError(f"{flag} is a fraction of the full plan's cost, in (0, 1]; got {value}")
    if not args.images.is_dir():
        raise UserError(f"--images {args.images} is not a folder")
    labeling, runtime = LABELING.parse(args), RUNTIME.parse(args)
    plan, merge, batch = labeling.plan, labeling.merge, runtime.batch_size
    gt, files = _ground_truth(args.json, args.images, args.max_images, args.partial_labels)
    progress = runtime.progress
    started = time.perf_counter()

    # The models run one after the other here: no turns to take.
    with open_models(args.detector, args.keypoints, runtime.backend, runtime.backend_threads or 0,
                     take_turns=False, plan=plan, batch_size=batch) as teachers:
        detector = teachers.detector
        keypoint_stage = None
        if teachers.keypoints is not None:
            keypoint_stage = KeypointStage(teachers.keypoints, teachers.person, labeling.keypoint_flip, batch)
        elif args.objective == "keypoints" and teachers.person is None:
            raise UserError("--objective keypoints needs --keypoints, or a --detector whose card declares "
                            "keypoints (a one-stage pose model)")
        shared = {int(c["id"]) for c in detector.card.categories} & set(gt.getCatIds())
        if not shared:
            raise UserError(f"--json {args.json} shares no category id with the detector's card")
        cache = run_passes(files, detector, plan, batch, merge.score_floor, DEFAULT_MAX_PIXELS, progress)
        inference_seconds = time.perf_counter() - started
        for name, reason in cache.failures:
            print(f"skipped {name}: {reason}", file=sys.stderr)
        if not cache.names:
            raise UserError("none of the JSON's images could be read under --images")
        if cache.failures:
            gt = _restrict(gt, cache.names)
        # Without a keypoint model, teachers.person is a one-stage pose detector's person
        # label (None for a detector without keypoints).
        scorer = SubsetScorer(cache, gt, detector.card, merge, keypoint_stage, workers=os.cpu_count() or 1,
                              one_stage_person=None if keypoint_stage else teachers.person,
                              partial=args.partial_labels)
        with_keypoints = scorer.has_keypoints
        identity = scorer.score_identity(with_keypoints)
        points = greedy_forward(scorer, len(plan.passes), args.objective, progress)
        mark_front(points, args.objective)
        try:
            chosen = choose(points, args.budget, args.objective)
        except UserError as error:
            raise UserError(f"--budget: {error}") from None
        if chosen.keypoint_AP is None and with_keypoints:
            chosen.keypoint_AP = scorer.score(chosen.subset, with_keypoints=True).keypoint_AP
        stages = None
        if args.stages is not None:
            from engine.plan.adaptive import find_stages

            per_image = sum(not a.get("iscrowd", 0) for a in gt.dataset["annotations"]) / len(cache.names)
            stages = find_stages(scorer, points, chosen, args.first_budget, args.stages, args.objective, per_image)

    passes = list(plan.passes)
    full = next(p for p in points if len(p.subset) == len(passes))
    staged = stages.chosen if stages is not None else None
    # A staged plan lists every pass it may run: its target's.
    chosen_plan = TransformPlan(tuple(passes[p] for p in (staged.target if staged else chosen).subset), plan.max_size)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {"detector": str(args.detector), "keypoints": str(args.keypoints) if args.keypoints else None,
                "json": str(args.json), "images": len(cache.names), "skipped": len(cache.failures),
                "plan": plan.to_dict(), "merge": merge.to_dict(), "objective": args.objective,
                "budget": args.budget, "partial_labels": args.partial_labels}
    write_json(args.out / "tradeoff.json", points, passes, identity, scorer.identity_cost, chosen, settings)
    write_plan_file(args.out / PLAN_FILE_NAME, chosen_plan, {
        "budget": args.budget, "objective": args.objective, "cost": round(chosen.cost, 5),
        "box_AP": chosen.box_AP, "keypoint_AP": chosen.keypoint_AP,
        "full_plan": {"passes": len(passes), "box_AP": full.box_AP, "keypoint_AP": full.keypoint_AP},
        "identity": {"box_AP": identity.box_AP, "keypoint_AP": identity.keypoint_AP},
        "validation": str(args.json), "images": len(cache.names),
        **({"stages": {"budget": args.stages, **stages.summary()}} if staged else {})},
        staged.escalation if staged else None)
    plotted = plot_front(args.out / "front.png", points, identity, scorer.identity_cost, chosen,
                         args.objective, args.budget)

    print(f"{len(cache.names)} images, {len(passes)} passes ({', '.join(pass_name(p) for p in passes)}; "
          f"m = mirrored), {len(points)} subsets tried; inference {inference_seconds:.1f} s, "
          f"total {time.perf_counter() - started:.1f} s")
    for line in table(points, passes, identity, scorer.identity_cost, chosen):
        print(line)
    print(summary_line(chosen, full, identity, [pass_name(passes[p]) for p in chosen.subset], args.budget,
                       args.objective))
    if args.stages is not None:
        for line in (stages.lines(args.stages, args.objective) if stages is not None else
                     [f"staged: no subset inside a target costs at most --first-budget {args.first_budget:g}"]):
            print(line)
    print(f"wrote {args.out / 'plan.json'} (distill label --plan), {args.out / 'tradeoff.json'}"
          + (f", {args.out / 'front.png'}" if plotted else " (no front.png: matplotlib is not installed, extra 'plots')"))
    return 0
