"""The `distill` command: one parser, subcommands registered by the package that owns them.

Each command module exposes `register(subparsers)`, which adds its parser and sets
`func(args) -> int`. Command modules import their heavy dependencies (torch, onnx,
tensorrt) inside `func`, so `distill --help` and the engine commands work on a box
without them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from engine.errors import UserError
from engine.options import OneLineParser

# Modules that register subcommands, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "engine.synth.cli",
    "engine.label.cli",
    "engine.plan.cli",
    "engine.remerge.cli",
    "engine.select.cli",
    "engine.review.cli",
    "engine.convert.cli",
    "trainer.cli",
    "export.cli",
    "export.importers.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="distill",
        description="Data distillation: synthetic data, teacher training and evaluation, export, labeling, "
                    "selection, review gallery, conversion.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # A package whose optional dependencies are absent simply offers no commands.
            if error.name and module_name.startswith(error.name):
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as error:
        print(f"distill {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"distill {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
