"""The input walked in the driver and cut into shard rows, one shard at a time.

Listing millions of paths inside Ray is slow (ray-project/ray#40686), and a shard's name
and content must depend only on the input order: so the driver walks the input once,
with the engine's own discovery, and cuts it into the run folder's shards (discovery
indices [k*S, (k+1)*S) make shard k, as on one box). A shard the run being resumed
already wrote is checked against the input and left out; only the others become rows.

A row holds its files' names only, as JSON text: every path is the input root joined
with its name (`Source.path == root / Source.name` for folders and list files alike).
Rows are made lazily, as the walk reaches each shard's end, so that the driver holds one
shard's names at a time (engine.scale.feed hands them to Ray Data a bounded window at a
time) however many files the input has.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from engine.errors import UserError
from engine.label.discover import Source
from engine.label.shards import FinishedShards


def shard_row(index: int, sources: list[Source]) -> dict:
    """A Ray Data row for shard `index`: {"shard": index, "names": JSON list of names,
    "problems": JSON {position in the shard: what discovery found wrong}} (flat string
    columns keep the Arrow schema trivial however many files a shard holds)."""
    problems = {i: s.problem for i, s in enumerate(sources) if s.problem is not None}
    return {"shard": index, "names": json.dumps([s.name for s in sources], ensure_ascii=False),
            "problems": json.dumps(problems, ensure_ascii=False)}


def sources_of_row(row_names: str, row_problems: str, root: Path) -> list[Source]:
    """The sources of a row (inverse of `shard_row`), paths under the input `root`."""
    problems = {int(i): problem for i, problem in json.loads(row_problems).items()}
    return [Source(root / name, name, problems.get(i)) for i, name in enumerate(json.loads(row_names))]


class Split:
    """The shard rows left to do, made as they are iterated (once), and as they go, how
    many images the rows so far hold (`images`) and how many the finished shards hold
    (`skipped`): totals once the iteration has ended (`walked`)."""

    def __init__(self, sources: Iterable[Source], size: int, finished: FinishedShards) -> None:
        self.sources = sources
        self.size = size
        self.finished = finished
        self.images = 0
        self.skipped = 0
        self.walked = False

    def __iter__(self) -> Iterator[dict]:
        shard, pending = -1, []
        for index, source in enumerate(self.sources):
            if source.read is not None:  # rows carry names only: an actor opens root / name
                raise UserError(f"tar shards, object storage and videos are read on one box only, not on Ray: "
                                f"{source.name}")
            if self.finished.covers(index, source.name):
                self.skipped += 1
                continue
            if index // self.size != shard:
                if pending:
                    yield shard_row(shard, pending)
                shard, pending = index // self.size, []
            pending.append(source)
            self.images += 1
        if pending:
            yield shard_row(shard, pending)
        self.walked = True


def split_into_shards(sources: Iterable[Source], size: int, finished: FinishedShards) -> Split:
    """`sources` (in discovery order) cut into rows of shards of `size`, lazily, leaving
    out the finished ones (UserError, while iterating, when the input changed since they
    were written)."""
    return Split(sources, size, finished)
