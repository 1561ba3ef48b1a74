"""Pieces the benchmarks share: the images a run measures, the timing loop, the report."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Mapping, TypeVar

from engine.atomic import write_json_atomically
from engine.label.discover import Source, discover_folder

R = TypeVar("R")


def link_images(images: Path, count: int, into: Path, cycle: bool = False) -> list[Source]:
    """The first `count` readable images of the folder `images` (discovery order), linked
    into the new folder `into` under their own relative names; with `cycle`, the folder
    again under copy-k/ as often as it takes to reach `count`, so that a small folder can
    still give a run long enough to outweigh start-up. Returns `into`'s sources as
    `distill label` discovers them there (empty when `images` holds none)."""
    sources = [s for s in discover_folder(images) if s.problem is None]
    into.mkdir(parents=True)
    for i in range(count if cycle and sources else min(count, len(sources))):
        source = sources[i % len(sources)]
        lap = i // len(sources)
        target = into / (source.name if lap == 0 else f"copy-{lap}/{source.name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(source.path.resolve(), target)
    return list(discover_folder(into))


def best_of_interleaved(runs: Mapping[str, Callable[[int], R]], repeats: int,
                        seconds: Callable[[R], float] = lambda result: result,
                        warm_up: bool = False) -> dict[str, R]:
    """Each of `runs` called `repeats` times (after one untimed round when `warm_up`), the
    runs taking turns within each round so that the machine's noise hits them alike; for
    each, the result with the fewest `seconds`. run(attempt): the round, from 0 (the
    warm-up's included)."""
    best: dict[str, R] = {}
    for attempt in range(int(warm_up) + repeats):
        for name, run in runs.items():
            result = run(attempt)
            if attempt >= warm_up and (name not in best or seconds(result) < seconds(best[name])):
                best[name] = result
    return best


def write_report(out: Path, name: str, report: dict[str, Any]) -> Path:
    """`report` as JSON in OUT/`name` (OUT made when missing); returns the file's path."""
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomically(out / name, report, indent=1)
    return out / name
