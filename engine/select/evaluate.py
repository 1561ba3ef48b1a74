"""Score generated labels against ground truth the engine never saw (pycocotools).

    python -m engine.select.evaluate --gt GT.json --labels single=A.json --labels ensemble=B.json

Each labels file (`distill select`'s output, scores kept) is scored by
`engine.coco.evaluate.score_labels`: box AP over the ground truth's categories, keypoint
AP over people, images matched by `file_name`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.coco.evaluate import coco_api, score_labels
from engine.coco.read import load_coco, read_coco
from engine.errors import UserError
from engine.label.manifest import RunSettings


def passes_of(labels: dict, path: Path) -> int | str:
    """The number of transforms the labels file `path` (read: `labels`) was made with, from
    the run settings `distill select` recorded in its info ("?" when it has none)."""
    settings = RunSettings.from_info(labels.get("info"), path)
    return len(settings.labeling.plan.passes) if settings is not None else "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Box AP and keypoint AP of generated labels against ground truth.")
    parser.add_argument("--gt", required=True, type=Path, help="ground-truth COCO JSON")
    parser.add_argument("--labels", required=True, action="append", metavar="NAME=LABELS.json",
                        help="a labels file to score, named in the table (repeatable)")
    args = parser.parse_args(argv)
    try:
        gt = coco_api(load_coco(args.gt).data)
        rows = []
        for item in args.labels:
            name, _, path = item.rpartition("=")
            labels = read_coco(Path(path))
            rows.append((name or path, passes_of(labels, Path(path)), score_labels(gt, labels)))
    except UserError as error:
        print(f"evaluate: error: {error}", file=sys.stderr)
        return 2
    print(f"{'labels':<12} {'passes':>6} {'box AP':>7} {'AP50':>6} {'kp AP':>7} {'AP50':>6}")
    for name, views, m in rows:
        print(f"{name:<12} {views:>6} {m['box_AP']:>7.3f} {m['box_AP50']:>6.3f} "
              f"{m['keypoint_AP']:>7.3f} {m['keypoint_AP50']:>6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
