"""Print one table of the COCO figures in several training runs' `metrics.json`.

    python -m trainer.summary runs/demo/teacher-detector runs/demo/round1/student-detector

Plain JSON reading, no torch: compare teachers and students of a loop at a glance.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from engine.coco.evaluate import get_metric

# (column title, metrics key suffixes tried in order): COCOeval names recall "AR100" for
# boxes and "AR" for keypoints.
COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AP", ("AP",)), ("AP50", ("AP50",)), ("AP75", ("AP75",)), ("AR", ("AR100", "AR")),
)


def summary_rows(run_dirs: list[Path]) -> list[list[str]]:
    """One row per run: name, task, model, iterations, then the AP columns."""
    rows = []
    for run in run_dirs:
        path = run / "metrics.json"
        try:
            metrics = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise SystemExit(f"summary: cannot read {path}: {error}") from None
        prefix = "box_" if metrics.get("task") == "detect" else "keypoint_"
        row = [run.name, str(metrics.get("task", "?")), str(metrics.get("model", "?")),
               str(metrics.get("iterations", "?"))]
        for _, suffixes in COLUMNS:
            value = next((v for s in suffixes if (v := get_metric(metrics, prefix + s)) is not None), None)
            row.append("-" if value is None else f"{value:.3f}")
        rows.append(row)
    return rows


def format_table(rows: list[list[str]]) -> str:
    header = ["run", "task", "model", "iters", *[title for title, _ in COLUMNS]]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    runs = [Path(a) for a in (sys.argv[1:] if argv is None else argv)]
    if not runs:
        raise SystemExit("usage: python -m trainer.summary RUN_DIR [RUN_DIR ...]")
    print(format_table(summary_rows(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
