"""`distill synth --out DIR --images N --seed S [--shift]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.json_file import read_json_object
from engine.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth", help="write a synthetic COCO dataset (people with keypoints, objects)",
        description="Write DIR/images/*.jpg and DIR/annotations.json: articulated people "
                    "with the 17 COCO keypoints, four other COCO categories, clutter. "
                    "Same seed, same bytes.")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--images", required=True, type=int, help="number of images (>= 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--shift", action="store_true",
                        help="draw from the shifted (sports) distribution")
    parser.add_argument("--config", type=Path, default=None,
                        help="JSON file of SynthConfig overrides (difficulty knobs)")
    parser.set_defaults(func=run)


def _load_config(path: Path | None):
    from engine.synth.config import SynthConfig

    if path is None:
        return SynthConfig()
    try:
        data = read_json_object(path)
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except ValueError as error:
        raise UserError(f"config file {path}: {error}") from None
    try:
        return SynthConfig.from_dict(data)
    except TypeError as error:
        raise UserError(f"config file {path}: {error}") from None


def run(args: argparse.Namespace) -> int:
    from engine.synth.dataset import generate_dataset

    config = _load_config(args.config)
    path = generate_dataset(args.out, args.images, args.seed, shift=args.shift, config=config)
    print(f"wrote {args.images} images and {path}")
    return 0
