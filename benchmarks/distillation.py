"""The paper's Table 1 in miniature: does a student trained on generated labels beat
the same training on the labeled set alone? On synthetic data, CPU-sized, in the
data-limited regime (a small labeled set, a schedule long enough for it; docs/experiment.md).

    .venv/bin/python -m benchmarks.distillation --out runs/experiment [--seeds 0 1 2]
    .venv/bin/python -m benchmarks.distillation --out runs/experiment --curve 0.25 0.5 1 2 --seeds 0
    .venv/bin/python -m benchmarks.distillation --report docs/experiment/results.json

Data (generated once; every size is an option, `--labeled 50 --det-iters 1500 ...`):
labeled 50, unlabeled 1,000 (their ground truth hidden from the engine), validation 200,
and a shifted unlabeled set of 1,000 (`distill synth --shift`). Per seed, every
training with the same schedule (`--schedule-scale` of the base iterations) and seed:

    (a) supervised   labeled only; also the teacher (the paper's teacher is the
                     converged supervised model), exported to ONNX
    (b) distilled    labeled + ensemble labels of the similar unlabeled set, 6:4
    (c) shifted      labeled + ensemble labels of the shifted unlabeled set, 6:4
    (d) single-pass  labeled + single-transform labels of the similar set, 6:4
    (e) upper bound  labeled + the similar set's true labels, 6:4

The generated labels: `distill label` with the teachers, thresholds calibrated on the
labeled set (`distill select --labeled`). `--curve X ...` trains only (a) and (e) at
each schedule X instead (the convergence curve: has (a) stopped improving, and how far
above it is (e)?); a run folder is named by its schedule, so the table reuses the
curve's runs at its own schedule.

Every step is the project's own command, run as a subprocess with its log in
OUT/logs/ (`--jobs` at a time, each training on `--threads` threads); a step whose
output exists is skipped, an interrupted training resumes from its checkpoint and an
interrupted labeling run with --resume, so the script can be killed and re-run
unattended. Prints mean and spread (max - min over seeds) of box AP and keypoint AP
(ground-truth boxes) on the validation set; saves OUT/results.json and OUT/results.png
(OUT/curve.json and OUT/curve.png with --curve). `--report FILE` prints a results
file's table as Markdown (the README's table).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from engine.coco.evaluate import get_metric, score_label_file
from engine.coco.read import read_coco
from engine.label.manifest import manifest_path
from engine.review.match import match_labels

STUDENTS = {
    "a": "supervised, labeled only (= teacher)",
    "b": "distilled, similar unlabeled",
    "c": "distilled, shifted unlabeled",
    "d": "distilled, single-pass labels",
    "e": "labeled + true labels (bound)",
}
AP_KEYS = {"detect": "box_AP", "keypoints": "keypoint_AP"}
MODEL_NAMES = {"detect": "detector", "keypoints": "keypoints"}


@dataclass
class Sizes:
    """What the experiment trains and labels (each field is an option of the script:
    `--det-iters 2000`). Iterations are the base schedule, which --schedule-scale
    multiplies for every training alike. The defaults are the regime of
    docs/experiment.md."""

    labeled: int = 50
    unlabeled: int = 1000
    val: int = 200
    image_px: int = 192  # synthetic images are image_px square
    det_iters: int = 1500
    det_batch: int = 4
    kp_iters: int = 1200
    kp_batch: int = 8
    kp_lr: float = 0.08
    schedule_scale: float = 1.0
    ratio: float = 0.6
    scales: str = "160:224:32"  # the ensemble's shorter sides, each mirrored
    single_scale: int = 192
    max_detections: int = 20
    det_sizes: list[int] = field(default_factory=lambda: [160, 176, 192, 208])

    @classmethod
    def quick(cls) -> "Sizes":
        """A smoke run of the whole script: small sets, short runs (the detector needs ~150
        steps before it finds people at all: fewer leave the keypoint students nothing)."""
        return cls(labeled=60, unlabeled=40, val=20, det_iters=150, kp_iters=40)


# Fields that only name which runs to train: run folders carry their schedule, so an
# output folder made with another value is still consistent.
SCHEDULE_FIELDS = {"schedule_scale"}


def add_size_options(parser: argparse.ArgumentParser) -> None:
    """One option per Sizes field (`det_iters` -> `--det-iters`), defaulting to None
    (unset: the default or --quick's value)."""
    group = parser.add_argument_group("sizes (defaults: the Sizes dataclass)")
    for item in dataclasses.fields(Sizes):
        flag = "--" + item.name.replace("_", "-")
        if item.name == "det_sizes":
            group.add_argument(flag, type=int, nargs="+", metavar="PX")
        else:
            group.add_argument(flag, type=type(getattr(Sizes(), item.name)), metavar=item.name.upper())


def sizes_from(args: argparse.Namespace) -> Sizes:
    """Sizes.quick() or Sizes(), with every size option given on the command line."""
    base = Sizes.quick() if args.quick else Sizes()
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Sizes) if getattr(args, f.name) is not None}
    return dataclasses.replace(base, **given)


class Step(NamedTuple):
    name: str
    done: Path  # the step's output: it is skipped when this exists
    command: list[str]
    mark: bool = False  # the command does not write `done`: touched when it succeeds


class Steps:
    """Runs the project's commands, skipping those whose outputs exist, `jobs` at a time;
    logs in OUT/logs."""

    def __init__(self, out: Path, jobs: int = 1):
        self.out = out
        self.jobs = jobs
        (out / "logs").mkdir(parents=True, exist_ok=True)

    def run(self, name: str, done: Path, command: list[str]) -> None:
        self.run_all([Step(name, done, command)])

    def run_all(self, steps: list[Step]) -> None:
        """Runs the steps (independent of each other) side by side; exits when one failed,
        after the others have finished."""
        todo = [step for step in steps if not step.done.exists()]
        with ThreadPoolExecutor(max_workers=max(1, self.jobs)) as pool:
            failures = [f for f in pool.map(self._run_one, todo) if f]
        if failures:
            sys.exit("\n".join(failures))

    def _run_one(self, step: Step) -> str | None:
        started = time.perf_counter()
        print(f"[experiment] {step.name} ...", flush=True)
        log = self.out / "logs" / f"{step.name}.log"
        with open(log, "a") as handle:
            handle.write(f"$ {' '.join(step.command)}\n")
            handle.flush()
            finished = subprocess.run(step.command, stdout=handle, stderr=subprocess.STDOUT)
        if finished.returncode:
            return f"[experiment] {step.name} failed (exit {finished.returncode}); see {log}"
        if step.mark:
            step.done.touch()
        print(f"[experiment] {step.name} took {time.perf_counter() - started:.0f} s", flush=True)
        return None


def distill(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine.cli", *args]


def make_data(steps: Steps, sizes: Sizes) -> dict[str, Path]:
    root = steps.out / "data"
    knobs = steps.out / "synth.json"
    knobs.write_text(json.dumps({
        "long_side_range": [sizes.image_px] * 2, "aspect_range": [1.0, 1.0],
        "min_person_px": 0.19 * sizes.image_px, "min_object_px": 0.095 * sizes.image_px,
        "persons_range": [1, 3], "distractors_range": [0, 2], "occlusion_prob": 0.1, "max_yaw_deg": 60.0,
    }, indent=2) + "\n")
    sets = {"labeled": (sizes.labeled, 101, []), "unlabeled": (sizes.unlabeled, 102, []),
            "val": (sizes.val, 103, []), "shifted": (sizes.unlabeled, 104, ["--shift"])}
    steps.run_all([
        Step(f"synth-{name}", root / name / "annotations.json",
             distill("synth", "--out", str(root / name), "--images", str(count), "--seed", str(seed),
                     "--config", str(knobs), *extra))
        for name, (count, seed, extra) in sets.items()])
    return {name: root / name for name in sets}


def run_dir(out: Path, seed: int, task: str, key: str, scale: float) -> Path:
    """The run folder of arm `key` for `task` at schedule `scale` (e.g. seed0/detect-a-x1)."""
    return out / f"seed{seed}" / f"{task}-{key}-x{scale:g}"


def training(sizes: Sizes, data: dict[str, Path], run: Path, task: str, seed: int, scale: float,
             threads: int, pseudo: tuple[Path, Path] | None = None) -> Step:
    """One training (teacher or student), evaluated on the validation set."""
    iters, batch = (sizes.det_iters, sizes.det_batch) if task == "detect" else (sizes.kp_iters, sizes.kp_batch)
    command = distill(
        "train", "--task", task, "--model", "tiny", "--iters", str(iters), "--batch-size", str(batch),
        "--schedule-scale", str(scale), "--seed", str(seed), "--out", str(run), "--threads", str(threads),
        "--checkpoint-every", "200", "--train-json", str(data["labeled"] / "annotations.json"),
        "--train-images", str(data["labeled"] / "images"), "--val-json", str(data["val"] / "annotations.json"),
        "--val-images", str(data["val"] / "images"))
    if task == "detect":
        test = sizes.image_px
        command += ["--set", f"train_min_sizes={json.dumps(sizes.det_sizes)}", "--set", f"test_min_size={test}",
                    "--set", f"train_max_size={2 * test}", "--set", f"test_max_size={2 * test}"]
    else:
        command += ["--lr", str(sizes.kp_lr)]
    if pseudo is not None:
        command += ["--pseudo-json", str(pseudo[0]), "--pseudo-images", str(pseudo[1]), "--ratio", str(sizes.ratio)]
    if (run / "last.pt").exists() and not (run / "metrics.json").exists():
        command.append("--resume")
    return Step(f"train-{run.parent.name}-{run.name}", run / "metrics.json", command)


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def labeling(sizes: Sizes, seed_dir: Path, name: str, images: Path, single: bool) -> Step:
    """Label `images` with the seed's exported teachers (done: the run's `done` file)."""
    run = seed_dir / "labels" / name
    plan = ["--scales", str(sizes.single_scale), "--no-flip", "--no-keypoint-flip"] if single else ["--scales", sizes.scales]
    command = distill("label", "--detector", str(seed_dir / "detector.onnx"), "--keypoints",
                      str(seed_dir / "keypoints.onnx"), "--images", str(images), "--out", str(run),
                      "--max-detections", str(sizes.max_detections), "--no-progress", *plan)
    if manifest_path(run).exists():
        command.append("--resume")
    # `distill label` writes no single last file: the run is marked finished when it is.
    return Step(f"label-{seed_dir.name}-{name}", run / "done", command, mark=True)


def label_counts(labels: Path, truth: Path) -> dict[str, dict]:
    """Per category of `truth`: the generated labels' count, precision and recall at IoU
    0.5 against the hidden ground truth (images matched by file name)."""
    gt, mine = read_coco(truth), read_coco(labels)
    ids = {image["file_name"]: image["id"] for image in gt["images"]}
    names = {image["id"]: image["file_name"] for image in mine["images"]}
    by_image: dict[int, list[dict]] = {image["id"]: [] for image in gt["images"]}
    gt_by_image: dict[int, list[dict]] = {image["id"]: [] for image in gt["images"]}
    for ann in gt["annotations"]:
        gt_by_image[ann["image_id"]].append(ann)
    for ann in mine["annotations"]:
        if names[ann["image_id"]] in ids:
            by_image[ids[names[ann["image_id"]]]].append(ann)
    counts, _ = match_labels(by_image, gt_by_image, [c["id"] for c in gt["categories"]])
    category_names = {c["id"]: c["name"] for c in gt["categories"]}
    return {category_names[cid]: {"labels": c.true + c.false, "gt": c.gt, "precision": c.precision,
                                  "recall": c.recall}
            for cid, c in counts.items() if cid in category_names}


def run_seed(steps: Steps, sizes: Sizes, data: dict[str, Path], seed: int, threads: int) -> dict:
    seed_dir = steps.out / f"seed{seed}"
    scale = sizes.schedule_scale
    result: dict = {"labels": {}, "students": {}}
    teachers = {task: run_dir(steps.out, seed, task, "a", scale) for task in AP_KEYS}
    steps.run_all([training(sizes, data, teachers[task], task, seed, scale, threads) for task in AP_KEYS])
    steps.run_all([
        Step(f"export-{seed_dir.name}-{MODEL_NAMES[task]}", seed_dir / f"{MODEL_NAMES[task]}.onnx",
             distill("export", "onnx", "--checkpoint", str(teachers[task] / "model.pt"),
                     "--out", str(seed_dir / f"{MODEL_NAMES[task]}.onnx")))
        for task in AP_KEYS])
    sets = {"b": ("similar", "unlabeled", False), "c": ("shifted", "shifted", False), "d": ("single", "unlabeled", True)}
    steps.run_all([labeling(sizes, seed_dir, name, data[source] / "images", single)
                   for name, source, single in sets.values()])
    generated = {"e": (data["unlabeled"] / "annotations.json", data["unlabeled"])}
    for key, (name, source, _) in sets.items():
        labels = seed_dir / "labels" / f"{name}.json"
        steps.run(f"select-{seed_dir.name}-{name}", labels,
                  distill("select", "--predictions", str(seed_dir / "labels" / name),
                          "--labeled", str(data["labeled"] / "annotations.json"), "--out", str(labels)))
        generated[key] = (labels, data[source])
        result["labels"][key] = {**score_label_file(labels, data[source] / "annotations.json"),
                                 "per_category": label_counts(labels, data[source] / "annotations.json")}
    # (b) first: a killed run has the row that matters most.
    runs = {(task, key): run_dir(steps.out, seed, task, key, scale) for key in STUDENTS for task in AP_KEYS}
    steps.run_all([
        training(sizes, data, run, task, seed, scale, threads,
                 None if key == "a" else (generated[key][0], generated[key][1] / "images"))
        for (task, key), run in runs.items()])
    for (task, key), run in runs.items():
        result["students"].setdefault(task, {})[key] = metrics(run)
    return result


def run_curve(steps: Steps, sizes: Sizes, data: dict[str, Path], seeds: list[int], scales: list[float],
              bound_scales: list[float], threads: int) -> dict:
    """(a) at each of `scales`, (e) at each of `bound_scales`: {task: {key: {scale: [AP per seed]}}}."""
    truth = (data["unlabeled"] / "annotations.json", data["unlabeled"] / "images")
    plan = [(seed, task, key, scale) for seed in seeds for task in AP_KEYS
            for key, at in (("a", scales), ("e", bound_scales)) for scale in at]
    # The longest trainings first, so that the last job slot is not left with a long one.
    plan.sort(key=lambda p: -p[3] * (sizes.det_iters if p[1] == "detect" else sizes.kp_iters))
    steps.run_all([training(sizes, data, run_dir(steps.out, seed, task, key, scale), task, seed, scale, threads,
                            truth if key == "e" else None) for seed, task, key, scale in plan])
    points: dict = {}
    for seed, task, key, scale in sorted(plan):
        value = get_metric(metrics(run_dir(steps.out, seed, task, key, scale)), AP_KEYS[task])
        points.setdefault(task, {}).setdefault(key, {}).setdefault(f"{scale:g}", []).append(value)
    return points


def summarize(results: dict[int, dict]) -> dict:
    """{task: {row: {"mean", "spread", "values"}}} over seeds; rows a..e."""
    table: dict = {}
    for task, key in AP_KEYS.items():
        rows = {student: [get_metric(r["students"][task][student], key) for r in results.values()]
                for student in STUDENTS}
        table[task] = {row: {"mean": float(np.mean(v)), "spread": float(np.ptp(v)), "values": v}
                       for row, v in rows.items()}
    return table


def print_table(table: dict, results: dict) -> None:
    seeds = len(next(iter(table.values()))["a"]["values"])
    print(f"\nvalidation AP, mean and spread (max - min) over {seeds} seeds")
    print(f"{'':<40} {'box AP':>15} {'keypoint AP':>15}")
    for row, name in STUDENTS.items():
        cells = [f"{table[t][row]['mean']:.3f} +- {table[t][row]['spread']:.3f}" for t in AP_KEYS]
        print(f"({row}) {name:<36} {cells[0]:>15} {cells[1]:>15}")
    print("\ngenerated labels against their hidden ground truth (mean over seeds)")
    for key in ("b", "c", "d"):
        box = np.mean([r["labels"][key]["box_AP"] for r in results.values()])
        kp = np.mean([r["labels"][key]["keypoint_AP"] for r in results.values()])
        print(f"({key}) {STUDENTS[key]:<36} {box:>15.3f} {kp:>15.3f}")
    for line in verdict(table):
        print(line)


def verdict(table: dict) -> list[str]:
    """One line per task: (b) - (a) against the spread, and the (e) - (a) gap."""
    lines = []
    for task, label in (("detect", "box"), ("keypoints", "keypoint")):
        rows = table[task]
        base = rows["a"]["mean"]
        gain, bound = rows["b"]["mean"] - base, rows["e"]["mean"] - base
        spread = max(rows["a"]["spread"], rows["b"]["spread"])
        seeds = len(rows["a"]["values"])
        wins = sum(b > a for a, b in zip(rows["a"]["values"], rows["b"]["values"]))
        against = f"against a spread of {spread:.3f}" if seeds > 1 else "(one seed: no spread to compare with)"
        lines.append(f"{label}: (b) - (a) = {gain:+.3f}{relative(gain, base)} {against}, "
                     f"(b) > (a) in {wins} of {seeds} seeds; (e) - (a) = {bound:+.3f}{relative(bound, base)}")
    return lines


def relative(change: float, base: float) -> str:
    """" (+12%)": `change` relative to `base`; empty when `base` is 0 (an untrained (a))."""
    return f" ({change / base:+.0%})" if base else ""


def markdown_table(results: dict) -> str:
    """The README's table of a results.json: mean +- spread (max - min) and the seeds'
    values; one seed's values alone."""
    table = results["table"]
    seeds = results["seeds"]
    lines = [f"| seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))} | box AP | keypoint AP (GT boxes) |",
             "|---|---|---|"]
    for row, name in STUDENTS.items():
        cells = [f"{table[t][row]['mean']:.3f}" if len(seeds) == 1 else
                 f"{table[t][row]['mean']:.3f} +- {table[t][row]['spread']:.3f} "
                 f"({' '.join(f'{v:.3f}' for v in table[t][row]['values'])})" for t in AP_KEYS]
        lines.append(f"| ({row}) {name} | {cells[0]} | {cells[1]} |")
    return "\n".join([*lines, "", *verdict(table)])


def markdown_curve(curve: dict) -> str:
    """The curve's table: AP of (a) and (e) at each schedule, mean over seeds."""
    scales = sorted({s for task in curve["points"].values() for key in task.values() for s in key}, key=float)
    lines = ["| task | arm | " + " | ".join(f"x{s}" for s in scales) + " |", "|---|---|" + "---|" * len(scales)]
    for task, rows in curve["points"].items():
        iters = curve["sizes"]["det_iters" if task == "detect" else "kp_iters"]
        for key, values in rows.items():
            cells = [f"{np.mean(values[s]):.3f}" if s in values else "" for s in scales]
            lines.append(f"| {task} ({iters} x) | ({key}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(STUDENTS)
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for axis, (task, title) in zip(axes, (("detect", "box AP"), ("keypoints", "keypoint AP (GT boxes)"))):
        means = [table[task][r]["mean"] for r in rows]
        values = [table[task][r]["values"] for r in rows]
        axis.bar(range(len(rows)), means, color=["0.35", "tab:green", "tab:orange", "tab:purple", "tab:blue"])
        for i, v in enumerate(values):
            axis.plot([i] * len(v), v, "k.", markersize=5)
        axis.set_xticks(range(len(rows)), ["(a) sup.", "(b) dist.", "(c) shift", "(d) single", "(e) bound"],
                        rotation=30)
        axis.set_title(f"{title} (dots: seeds)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def plot_curve(curve: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for axis, (task, title) in zip(axes, (("detect", "box AP"), ("keypoints", "keypoint AP (GT boxes)"))):
        iters = curve["sizes"]["det_iters" if task == "detect" else "kp_iters"]
        for key, label in (("a", "(a) labeled only"), ("e", "(e) + true labels, 6:4")):
            values = curve["points"][task][key]
            scales = sorted(values, key=float)
            axis.plot([float(s) * iters for s in scales], [np.mean(values[s]) for s in scales], "o-", label=label)
        axis.set_xscale("log")
        steps = sorted({float(s) * iters for values in curve["points"][task].values() for s in values})
        axis.set_xticks(steps, [f"{s:g}" for s in steps])
        axis.minorticks_off()
        axis.set_xlabel("training steps (log scale)")
        axis.set_title(f"{title}, {curve['sizes']['labeled']} labeled images")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/experiment"))
    parser.add_argument("--seeds", type=int, nargs="+", help="default: 0 1 2 (0 with --quick)")
    parser.add_argument("--quick", action="store_true", help="small sizes: check the script end to end")
    parser.add_argument("--curve", type=float, nargs="+", metavar="SCALE",
                        help="train only (a) and (e), at each of these schedules (x the base iterations)")
    parser.add_argument("--curve-bound", type=float, nargs="+", metavar="SCALE",
                        help="with --curve: train (e) only at these schedules (default: all of --curve)")
    parser.add_argument("--jobs", type=int, default=2, help="steps side by side (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each training (default 1)")
    parser.add_argument("--report", type=Path, metavar="RESULTS_JSON",
                        help="print the table of a results.json (or curve.json) as Markdown, and exit")
    add_size_options(parser)
    args = parser.parse_args(argv)
    if args.report is not None:
        results = json.loads(args.report.read_text())
        print(markdown_curve(results) if "points" in results else markdown_table(results))
        return 0
    sizes = sizes_from(args)
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    args.out.mkdir(parents=True, exist_ok=True)
    settings = args.out / "sizes.json"
    fixed = {k: v for k, v in asdict(sizes).items() if k not in SCHEDULE_FIELDS}
    if settings.exists():
        made = {k: v for k, v in json.loads(settings.read_text()).items() if k not in SCHEDULE_FIELDS}
        if made != fixed:
            parser.error(f"{args.out} was made with other sizes ({settings}); use another --out")
    settings.write_text(json.dumps(asdict(sizes), indent=2) + "\n")
    started = time.perf_counter()
    steps = Steps(args.out, args.jobs)
    data = make_data(steps, sizes)
    if args.curve:
        curve = {"sizes": asdict(sizes), "seeds": args.seeds,
                 "points": run_curve(steps, sizes, data, args.seeds, args.curve, args.curve_bound or args.curve,
                                     args.threads)}
        (args.out / "curve.json").write_text(json.dumps(curve, indent=2) + "\n")
        plot_curve(curve, args.out / "curve.png")
        print(markdown_curve(curve))
        print(f"wrote {args.out}/curve.json and {args.out}/curve.png "
              f"({time.perf_counter() - started:.0f} s this invocation)")
        return 0
    results = {seed: run_seed(steps, sizes, data, seed, args.threads) for seed in args.seeds}
    table = summarize(results)
    (args.out / "results.json").write_text(json.dumps(
        {"sizes": asdict(sizes), "seeds": args.seeds, "table": table, "runs": results}, indent=2) + "\n")
    plot(table, args.out / "results.png")
    print_table(table, results)
    print(f"wrote {args.out}/results.json and {args.out}/results.png "
          f"({time.perf_counter() - started:.0f} s this invocation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
