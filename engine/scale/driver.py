"""`distill label --ray`: the same run folder as one box, written by a Ray Data job.

The driver checks the request and opens the models once (the same checks, model cards and
manifest as a local run), walks the input and cuts it into shards (`split`), and streams
the unfinished ones (`feed`: a bounded window of shard rows, never the whole list) to a
pool of `ShardLabeler` actors through `map_batches`, one shard per call. Shards come back
whole, in whatever order they finish; the driver commits each one into OUT exactly as the
single-box writer does (failures, atomic rename, manifest), so `distill select` reads a
cluster run like a local one, and a killed job resumed with `--resume` labels only the
shards that are missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import time
from collections.abc import Iterable, Iterator

from tqdm import tqdm

from engine.errors import UserError
from engine.label.manifest import RayRuntime, RunSummary
from engine.label.pipeline import STAGES
from engine.label.request import LabelRequest, RayPool
from engine.label.run import check_request, open_run_folder, open_teachers
from engine.scale.actor import ShardLabeler
from engine.scale.cluster import ActorPool, connect, import_ray, size_pool
from engine.scale.feed import RowFeed
from engine.scale.split import Split, split_into_shards

# Shard rows handed to Ray and not yet written back, per actor: one being labeled and one
# waiting, so that no actor idles between shards while the driver's memory stays bounded.
WINDOW_PER_ACTOR = 2


def label_on_ray(request: LabelRequest, pool: RayPool) -> RunSummary:
    """Label the request's images into `request.out` on the Ray cluster at
    `pool.address` (see `cluster.connect`) with the actor pool it asks for (what it
    leaves None, `cluster.size_pool` decides). Returns the run's summary, stage seconds
    summed over actors."""
    wall = time.perf_counter()
    if request.inputs.dedupe:  # actors label shards independently: none knows the others' images
        raise UserError("skipping duplicates runs on one box only, not on Ray")
    checked = check_request(request)
    # Opened here once, on one thread, only to check them and read their cards for the
    # manifest; the actors open their own copies. The pool is sized before OUT is made,
    # so that a pool the cluster cannot hold leaves nothing behind.
    with open_teachers(request, threads=1, take_turns=False) as teachers:
        cluster = connect(pool.address)
        actors = size_pool(cluster.resources, pool.actors, pool.actor_cpus, pool.actor_gpus)
        runtime = RayRuntime(cluster.address, actors.actors, float(actors.cpus), float(actors.gpus),
                             request.runtime.backend, request.runtime.batch_size)
        folder = open_run_folder(request, checked, teachers, runtime)
    with contextlib.closing(folder):
        split = split_into_shards(checked.sources, folder.shard_size, folder.finished())
        summary = RunSummary(stage_seconds=dict.fromkeys(STAGES, 0.0),
                             escalated=None if request.labeling.escalation is None else 0)
        rows = iter(split)
        first = next(rows, None)  # walks past the finished shards: a finished run starts no job
        if first is not None:
            _run_job(request, checked, folder, split, itertools.chain([first], rows), actors, summary)
        summary.skipped = split.skipped
        summary.wall_seconds = time.perf_counter() - wall
        folder.mark_complete(summary)
    return summary


def labeled_rows(rows: Iterable[dict], labeler: type, kwargs: dict, pool: ActorPool,
                 window: int | None = None) -> Iterator[dict]:
    """The result rows of `labeler` actors (a `map_batches` callable class built with
    `kwargs`, one row at a time) over `rows`, as they finish; rows are fed to Ray a bounded
    window at a time (engine.scale.feed; `window` rows, default WINDOW_PER_ACTOR per
    actor), a new one each time the caller asks for the next result, so a caller that
    writes each result first never holds more than the window."""
    ray = import_ray()
    with RowFeed(rows, window=window or WINDOW_PER_ACTOR * pool.actors) as feed:
        labeled = feed.dataset().map_batches(
            labeler, batch_size=1, batch_format="numpy", fn_constructor_kwargs=kwargs,
            compute=ray.data.ActorPoolStrategy(size=pool.actors), num_cpus=pool.cpus, num_gpus=pool.gpus or None)
        for row in labeled.iter_rows():
            yield row
            feed.done()
        feed.finish()


def _run_job(request, checked, folder, split: Split, rows: Iterable[dict], pool: ActorPool,
             summary: RunSummary) -> None:
    ray = import_ray()
    # Absolute paths: an actor's working folder is not the driver's.
    request = dataclasses.replace(request, detector=request.detector.resolve(),
                                  keypoints=request.keypoints.resolve() if request.keypoints else None)
    kwargs = {"request": request, "root": checked.root.resolve(), "threads": pool.threads}
    # The total is known once the walk has ended (the walk runs ahead of the labeling).
    bar = tqdm(desc=f"label on ray ({pool.describe()})", unit="img",
               disable=not request.runtime.progress, dynamic_ncols=True)
    try:
        for row in labeled_rows(rows, ShardLabeler, kwargs, pool):
            failures = json.loads(row["failures"])
            start = time.perf_counter()
            folder.write_shard(int(row["shard"]), row["records"], row["first"], int(row["images"]), failures)
            # The actors' "write" is handing records over; the files are written here.
            summary.stage_seconds["write"] += time.perf_counter() - start
            summary.images += int(row["images"])
            summary.failed += len(failures)
            summary.detections += int(row["detections"])
            if summary.escalated is not None:
                summary.escalated += int(row["escalated"])
            for stage, seconds in json.loads(row["stage_seconds"]).items():
                summary.stage_seconds[stage] += seconds
            if bar.total is None and split.walked:
                bar.total = split.images  # every source of the rows: images and failures
            bar.update(int(row["images"]) + len(failures))
            bar.set_postfix(failed=summary.failed, refresh=False)
    except ray.exceptions.RayError as error:
        # An actor that cannot start or a worker lost: not an image (those are failures).
        first = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise UserError(f"the Ray job failed ({type(error).__name__}): {first}; "
                        f"shards written so far are kept, --resume continues") from None
    finally:
        bar.close()
