"""The paper's Table 1 in miniature: does a student trained on generated labels beat
the same training on the labeled set alone? On synthetic data, CPU-sized.

    .venv/bin/python -m benchmarks.distillation --out runs/experiment [--seeds 0 1]

Data (generated once): labeled 300, unlabeled 3,000 (their ground truth hidden from the
engine), validation 500, and a shifted unlabeled set of 3,000 (`distill synth --shift`).
Per seed: both teachers trained on the labeled set, exported to ONNX, the unlabeled sets
labeled (`distill label`, ensemble and single pass), thresholds calibrated on the
labeled set (`distill select --labeled`), then five students per task, all with the
same long schedule (`--schedule-scale`) and seed:

    (a) supervised   labeled only (the long schedule alone is not mistaken for a gain)
    (b) distilled    labeled + ensemble labels of the similar unlabeled set, 6:4
    (c) shifted      labeled + ensemble labels of the shifted unlabeled set, 6:4
    (d) single-pass  labeled + single-transform labels of the similar set, 6:4
    (e) upper bound  labeled + the similar set's true labels, 6:4

Every step is the project's own command, run as a subprocess with its log in
OUT/logs/; a step whose output exists is skipped, an interrupted training resumes from
its checkpoint and an interrupted labeling run with --resume, so the script can be
killed and re-run unattended. Prints mean and spread (max - min over seeds) of box AP
and keypoint AP on the validation set, saves OUT/results.json and OUT/results.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from engine.coco.evaluate import get_metric, score_label_file
from engine.label.manifest import manifest_path

STUDENTS = {
    "a": "supervised, labeled only",
    "b": "distilled, similar unlabeled",
    "c": "distilled, shifted unlabeled",
    "d": "distilled, single-pass labels",
    "e": "labeled + true labels (bound)",
}
AP_KEYS = {"detect": "box_AP", "keypoints": "keypoint_AP"}


@dataclass
class Sizes:
    """What the experiment trains and labels; the defaults took about 85 minutes on this
    project's 2-core CPU for two seeds (see the README)."""

    labeled: int = 300
    unlabeled: int = 3000
    val: int = 500
    image_px: int = 192  # synthetic images are image_px square
    det_iters: int = 400
    det_batch: int = 4
    kp_iters: int = 300
    kp_batch: int = 8
    kp_lr: float = 0.08
    schedule_scale: float = 1.5
    ratio: float = 0.6
    scales: str = "160:224:32"  # the ensemble's shorter sides, each mirrored
    single_scale: int = 192
    max_detections: int = 20
    det_sizes: list[int] = field(default_factory=lambda: [160, 176, 192, 208])

    @classmethod
    def quick(cls) -> "Sizes":
        """A smoke run of the whole script: small sets, short runs (the detector needs ~150
        steps before it finds people at all: fewer leave the keypoint students nothing)."""
        return cls(labeled=60, unlabeled=40, val=20, det_iters=150, kp_iters=40, schedule_scale=1.0)


class Steps:
    """Runs the project's commands, skipping those whose outputs exist; logs in OUT/logs."""

    def __init__(self, out: Path):
        self.out = out
        (out / "logs").mkdir(parents=True, exist_ok=True)

    def run(self, name: str, done: Path, command: list[str]) -> None:
        if done.exists():
            return
        started = time.perf_counter()
        print(f"[experiment] {name} ...", flush=True)
        log = self.out / "logs" / f"{name}.log"
        with open(log, "a") as handle:
            handle.write(f"$ {' '.join(command)}\n")
            handle.flush()
            finished = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
        if finished.returncode:
            sys.exit(f"[experiment] {name} failed (exit {finished.returncode}); see {log}")
        print(f"[experiment] {name} took {time.perf_counter() - started:.0f} s", flush=True)


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
    for name, (count, seed, extra) in sets.items():
        steps.run(f"synth-{name}", root / name / "annotations.json",
                  distill("synth", "--out", str(root / name), "--images", str(count), "--seed", str(seed),
                          "--config", str(knobs), *extra))
    return {name: root / name for name in sets}


def train(steps: Steps, sizes: Sizes, data: dict[str, Path], run: Path, task: str, seed: int,
          schedule_scale: float = 1.0, pseudo: tuple[Path, Path] | None = None) -> dict:
    """One training (teacher or student) evaluated on the validation set; its metrics."""
    iters, batch = (sizes.det_iters, sizes.det_batch) if task == "detect" else (sizes.kp_iters, sizes.kp_batch)
    command = distill(
        "train", "--task", task, "--model", "tiny", "--iters", str(iters), "--batch-size", str(batch),
        "--schedule-scale", str(schedule_scale), "--seed", str(seed), "--out", str(run),
        "--checkpoint-every", "100", "--train-json", str(data["labeled"] / "annotations.json"),
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
    steps.run(f"train-{run.parent.name}-{run.name}", run / "metrics.json", command)
    return json.loads((run / "metrics.json").read_text())


def label_and_select(steps: Steps, sizes: Sizes, data: dict[str, Path], seed_dir: Path, name: str,
                     images: Path, single: bool) -> Path:
    """Label `images` with the seed's exported teachers, select with calibrated thresholds."""
    run = seed_dir / "labels" / name
    plan = ["--scales", str(sizes.single_scale), "--no-flip", "--no-keypoint-flip"] if single else ["--scales", sizes.scales]
    command = distill("label", "--detector", str(seed_dir / "detector.onnx"), "--keypoints",
                      str(seed_dir / "keypoints.onnx"), "--images", str(images), "--out", str(run),
                      "--max-detections", str(sizes.max_detections), "--no-progress", *plan)
    if manifest_path(run).exists():
        command.append("--resume")
    done = run / "done"
    steps.run(f"label-{seed_dir.name}-{name}", done, command)
    done.touch()
    labels = seed_dir / "labels" / f"{name}.json"
    steps.run(f"select-{seed_dir.name}-{name}", labels,
              distill("select", "--predictions", str(run), "--labeled", str(data["labeled"] / "annotations.json"),
                      "--out", str(labels)))
    return labels


def run_seed(steps: Steps, sizes: Sizes, data: dict[str, Path], seed: int) -> dict:
    seed_dir = steps.out / f"seed{seed}"
    result: dict = {"teacher": {}, "labels": {}, "students": {}}
    for task, name in (("detect", "detector"), ("keypoints", "keypoints")):
        result["teacher"][task] = train(steps, sizes, data, seed_dir / f"teacher-{name}", task, seed)
        steps.run(f"export-{seed_dir.name}-{name}", seed_dir / f"{name}.onnx",
                  distill("export", "onnx", "--checkpoint", str(seed_dir / f"teacher-{name}" / "model.pt"),
                          "--out", str(seed_dir / f"{name}.onnx")))
    generated = {
        "b": (label_and_select(steps, sizes, data, seed_dir, "similar", data["unlabeled"] / "images", False),
              data["unlabeled"]),
        "c": (label_and_select(steps, sizes, data, seed_dir, "shifted", data["shifted"] / "images", False),
              data["shifted"]),
        "d": (label_and_select(steps, sizes, data, seed_dir, "single", data["unlabeled"] / "images", True),
              data["unlabeled"]),
        "e": (data["unlabeled"] / "annotations.json", data["unlabeled"]),
    }
    for key in ("b", "c", "d"):
        labels, source = generated[key]
        result["labels"][key] = score_label_file(labels, source / "annotations.json")
    for task in ("detect", "keypoints"):
        for key in STUDENTS:
            pseudo = None if key == "a" else (generated[key][0], generated[key][1] / "images")
            run = seed_dir / f"student-{task}-{key}"
            result["students"].setdefault(task, {})[key] = train(
                steps, sizes, data, run, task, seed, sizes.schedule_scale, pseudo)
    return result


def summarize(results: dict[int, dict]) -> dict:
    """{task: {row: {"mean", "spread", "values"}}} over seeds; rows: teacher, a..e."""
    table: dict = {}
    for task, key in AP_KEYS.items():
        rows = {"teacher": [get_metric(r["teacher"][task], key) for r in results.values()]}
        for student in STUDENTS:
            rows[student] = [get_metric(r["students"][task][student], key) for r in results.values()]
        table[task] = {row: {"mean": float(np.mean(v)), "spread": float(np.ptp(v)), "values": v}
                       for row, v in rows.items()}
    return table


def print_table(table: dict, results: dict[int, dict]) -> None:
    seeds = len(results)
    print(f"\nvalidation AP, mean and spread (max - min) over {seeds} seeds")
    print(f"{'':<34} {'box AP':>15} {'keypoint AP':>15}")
    names = {"teacher": "teacher (normal schedule)", **{k: f"({k}) {v}" for k, v in STUDENTS.items()}}
    for row, name in names.items():
        cells = [f"{table[t][row]['mean']:.3f} +- {table[t][row]['spread']:.3f}" for t in AP_KEYS]
        print(f"{name:<34} {cells[0]:>15} {cells[1]:>15}")
    print("\ngenerated labels against their hidden ground truth (mean over seeds)")
    for key in ("b", "c", "d"):
        box = np.mean([r["labels"][key]["box_AP"] for r in results.values()])
        kp = np.mean([r["labels"][key]["keypoint_AP"] for r in results.values()])
        print(f"{'(' + key + ') ' + STUDENTS[key]:<34} {box:>15.3f} {kp:>15.3f}")
    for task, label in (("detect", "box"), ("keypoints", "keypoint")):
        gain = table[task]["b"]["mean"] - table[task]["a"]["mean"]
        spread = max(table[task]["a"]["spread"], table[task]["b"]["spread"])
        print(f"{label}: (b) - (a) = {gain:+.3f} against a spread of {spread:.3f}; "
              f"(e) - max((a), (b)) = {table[task]['e']['mean'] - max(table[task]['a']['mean'], table[task]['b']['mean']):+.3f}")


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = ["teacher", *STUDENTS]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for axis, (task, title) in zip(axes, (("detect", "box AP"), ("keypoints", "keypoint AP"))):
        means = [table[task][r]["mean"] for r in rows]
        values = [table[task][r]["values"] for r in rows]
        lows = [m - min(v) for m, v in zip(means, values)]
        highs = [max(v) - m for m, v in zip(means, values)]
        axis.bar(range(len(rows)), means, yerr=[lows, highs], capsize=4,
                 color=["0.6", "0.35", "tab:green", "tab:orange", "tab:purple", "tab:blue"])
        axis.set_xticks(range(len(rows)), ["teacher", "(a) sup.", "(b) dist.", "(c) shift", "(d) single", "(e) bound"],
                        rotation=30)
        axis.set_title(f"{title} (bars: range over seeds)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/experiment"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--quick", action="store_true", help="small sizes: check the script end to end")
    args = parser.parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    args.out.mkdir(parents=True, exist_ok=True)
    settings = args.out / "sizes.json"
    if settings.exists() and json.loads(settings.read_text()) != asdict(sizes):
        sys.exit(f"[experiment] {args.out} was made with other sizes ({settings}); use another --out")
    settings.write_text(json.dumps(asdict(sizes), indent=2) + "\n")
    started = time.perf_counter()
    steps = Steps(args.out)
    data = make_data(steps, sizes)
    results = {seed: run_seed(steps, sizes, data, seed) for seed in args.seeds}
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
