"""The `--ray` driver's peak memory on a long list of paths: shard rows streamed to Ray
Data a bounded window at a time (engine.scale.feed, what `distill label --ray` does)
against every row made first and handed to `ray.data.from_items` (the driver before it).

    /usr/bin/time -v .venv/bin/python -m benchmarks.ray_driver_memory --paths 10000000 --feed stream
    /usr/bin/time -v .venv/bin/python -m benchmarks.ray_driver_memory --paths 10000000 --feed from-items

One feed per process, so that each peak is its own: the driver's peak resident set
(`getrusage`, this process only; /usr/bin/time's `Maximum resident set size` says the
same where Ray's own processes were started apart, by `ray start`). The list file
(`--list`, written once when missing) names files that do not exist: what is measured
is the driver's side of the job, the walk of the list, the rows and their way through
Ray Data, so the actors only count each row's names and return the count (no model, no
file read). The job is the labeling job's: `map_batches` over one-row blocks on an actor
pool (`--actors` actors of 1 CPU on a local cluster of `--cpus` CPUs), the driver
consuming each result row. Prints one line: feed, paths, shards, seconds, peak RSS in MB.
Ray Data spends a fraction of a second on each row (more on a loaded machine), so long
lists are measured with large shards (`--shard-size 10000`: 1,000 rows for 10^7 paths) and,
for the stream, a wider window (`--window 16`) than a labeling job needs, whose shards
take minutes each; the rows in flight then hold 160,000 names (some 10 MB).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
from pathlib import Path

import numpy as np

from engine.label.discover import open_sources
from engine.label.shards import FinishedShards
from engine.scale.cluster import ActorPool
from engine.scale.driver import labeled_rows
from engine.scale.split import split_into_shards


class NameCounter:
    """A `map_batches` actor standing in for ShardLabeler: each row's number of names."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"shard": batch["shard"], "count": np.array([len(json.loads(names)) for names in batch["names"]])}


def write_list(path: Path, count: int) -> None:
    """`count` paths like a camera dump's (some 45 bytes each), one a line."""
    with open(path, "w") as f:
        for start in range(0, count, 100_000):
            f.write("".join(f"/mnt/dump/camera-{i // 10000:04d}/frame-{i:09d}.jpg\n"
                            for i in range(start, min(count, start + 100_000))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", type=int, default=10_000_000)
    parser.add_argument("--feed", choices=("stream", "from-items"), default="stream")
    parser.add_argument("--list", type=Path, help="the list file (default /tmp/paths-N.txt, written when missing)")
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--window", type=int, help="stream: rows in flight (default: the driver's, 2 per actor)")
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    list_file = args.list or Path(f"/tmp/paths-{args.paths}.txt")
    if not list_file.exists():
        write_list(list_file, args.paths)

    import ray

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False
    start = time.perf_counter()
    split = split_into_shards(open_sources(None, list_file)[1], args.shard_size, FinishedShards({}, args.shard_size))
    pool = ActorPool(actors=args.actors, cpus=1.0, gpus=0.0)
    if args.feed == "stream":
        results = labeled_rows(split, NameCounter, {}, pool, window=args.window)
    else:  # the driver before: every row first, then from_items
        rows = list(split)
        results = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            NameCounter, batch_size=1, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=args.actors), num_cpus=1).iter_rows()
    shards = names = 0
    for row in results:
        shards += 1
        names += int(row["count"])
    seconds = time.perf_counter() - start
    ray.shutdown()
    assert names == split.images, (names, split.images)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"feed={args.feed} paths={names} shards={shards} seconds={seconds:.1f} driver_peak_rss_mb={peak_mb:.0f}")


if __name__ == "__main__":
    main()
