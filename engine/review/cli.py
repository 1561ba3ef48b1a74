"""`distill gallery`: a static HTML gallery of a labels file, to look at before training.

    distill gallery --labels LABELS.json --images DIR --out GALLERY
                    [--predictions OUT] [--gt GT.json] [--sample N] [--per-page P]
                    [--seed S] [--band B] [--workers W]

GALLERY/index.html opens from disk (no server, no script, relative links only).
engine/review/build.py lists what the folder holds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.options import image_root
from engine.review.build import Settings, build_gallery, page_weight


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = Settings(Path(), Path(), Path())
    p = subparsers.add_parser(
        "gallery", help="a static HTML gallery of generated labels, with threshold plots",
        description="Write GALLERY/index.html: counts and thresholds per category, sampled and paged "
                    "images of every category with their labels drawn (people's skeletons with left "
                    "and right in distinct colours), the images without labels, the threshold plots "
                    "and, with --predictions, the predictions just under their threshold; with --gt, "
                    "false and missed labels and per-category precision and recall at IoU 0.5.")
    p.add_argument("--labels", required=True, type=Path, metavar="LABELS.json",
                   help="COCO labels (distill select's output: scores and info['thresholds']; a file, or the "
                        "folder of distill select --shards)")
    p.add_argument("--images", required=True, type=image_root, metavar="DIR|URL",
                   help="the folder the labels' file_name values are relative to (the labeling run's input "
                        "folder: tar shards' members and video frames in it are read in place), or the "
                        "object-storage prefix it read (s3://bucket/prefix)")
    p.add_argument("--out", required=True, type=Path, metavar="GALLERY",
                   help="folder to write (new, empty, or a previous gallery, which is replaced)")
    p.add_argument("--predictions", type=Path, default=None, metavar="OUT",
                   help="the distill label run the labels were selected from: adds the almost-labels "
                        "pages and computes the threshold plots from all predictions")
    p.add_argument("--gt", type=Path, default=None, metavar="GT.json",
                   help="COCO ground truth of the same images (matched by file_name): marks false and "
                        "missed labels, adds precision and recall per category to the index")
    p.add_argument("--sample", type=int, default=defaults.sample, metavar="N",
                   help=f"at most N randomly sampled images per category and per page list "
                        f"(default {defaults.sample})")
    p.add_argument("--per-page", type=int, default=defaults.per_page, metavar="P",
                   help=f"images per HTML page (default {defaults.per_page})")
    p.add_argument("--seed", type=int, default=defaults.seed, metavar="S",
                   help=f"seed of the samples: the same seed shows the same images (default {defaults.seed})")
    p.add_argument("--band", type=float, default=defaults.band, metavar="B",
                   help=f"almost-labels are predictions with threshold - B <= score < threshold "
                        f"(default {defaults.band})")
    p.add_argument("--workers", type=int, default=defaults.workers, metavar="W",
                   help=f"threads drawing thumbnails (default {defaults.workers}, the CPUs up to 8)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings(args.labels, args.images, args.out, args.predictions, args.gt, args.sample,
                        args.per_page, args.seed, args.workers, args.band, progress=sys.stderr.isatty())
    summary = build_gallery(settings)
    print(f"wrote {summary.out / 'index.html'}: {summary.pages} pages, {summary.thumbnails} thumbnails "
          f"({summary.unreadable} unreadable), index {page_weight(summary.out) / 1024:.0f} KiB with its "
          f"images, in {summary.seconds:.1f} s")
    if summary.plots_skipped:
        print(f"plots skipped: {summary.plots_skipped}")
    elif summary.plots:
        print(f"plots: {summary.plots} PNGs in {summary.out / 'plots'}")
    if summary.unreadable:
        print(f"unreadable images: {summary.unreadable}, listed in {summary.out / 'unreadable.txt'}")
    return 0
