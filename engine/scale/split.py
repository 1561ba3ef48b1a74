"""The input listed up front in the driver and cut into shard rows.

Listing millions of paths inside Ray is slow (ray-project/ray#40686), and a shard's name
and content must depend only on the input order: so the driver walks the input once,
with the engine's own discovery, and cuts it into the run folder's shards (discovery
indices [k*S, (k+1)*S) make shard k, as on one box). A shard the run being resumed
already wrote is checked against the input and left out; only the others become rows.

A row holds its files' names only, as JSON text: every path is the input root joined
with its name (`Source.path == root / Source.name` for folders and list files alike), and
each shard is turned into text as soon as it is complete, so the driver keeps about the
names' bytes (some 60 MB per million files) however many files there are.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
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


@dataclass
class Split:
    """The shard rows left to do, how many images they hold, and how many images the
    finished shards hold."""

    rows: list[dict] = field(default_factory=list)
    images: int = 0
    skipped: int = 0


def split_into_shards(sources: Iterable[Source], size: int, finished: FinishedShards) -> Split:
    """Cut `sources` (in discovery order) into rows of shards of `size`, leaving out the
    finished ones (UserError when the input changed since they were written)."""
    split = Split()
    shard, pending = -1, []
    for index, source in enumerate(sources):
        if source.read is not None:  # rows carry names only: an actor opens root / name
            raise UserError(f"tar shards and object storage are read on one box only, not on Ray: {source.name}")
        if finished.covers(index, source.name):
            split.skipped += 1
            continue
        if index // size != shard:
            if pending:
                split.rows.append(shard_row(shard, pending))
            shard, pending = index // size, []
        pending.append(source)
        split.images += 1
    if pending:
        split.rows.append(shard_row(shard, pending))
    return split
