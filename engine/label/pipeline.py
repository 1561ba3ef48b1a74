"""The single-box pipeline: stages in threads joined by bounded queues.

    feeder ──> decode + views (pool of `workers` threads) ──> detector inference
           ──> merge (pool of `workers` threads, Numba kernels release the GIL)
           ──> keypoint stage ──> record sink: shard writer (this thread)

Every queue is bounded, so the images in flight (and the memory) do not depend on the
size of the dump; items keep their discovery order end to end, which is what makes
shards deterministic.

A staged plan (engine.label.escalation) loops once: the decoders make only the first
stage's views; a merge worker merges them and applies the rule; an escalated image gets
its second-stage views there and goes back to the detector stage on an unbounded queue
(bounded in fact by the images in flight), where the escalated images of several chunks
are batched together, a full chunk at a time, or whatever is there when the detector
would otherwise wait (for input, or for room downstream: the keypoint stage may be
waiting for one of them). Its final merge takes every pass's candidates in plan order,
as a fixed plan of all the passes would. Each image's detections are a future that the
keypoint stage waits on in discovery order, so the shards' order and content do not
depend on when an image was escalated.

With `dedupe`, each image's bytes are hashed (`content_digest`) as they are read; the
detector stage, which sees the images in discovery order, keeps the first image of each
digest and turns every later one into a pointer record `{"file_name", "duplicate_of"}`
(no decode when the first is already known, no inference either way), so "first" never
depends on thread timing. A resumed run hashes the images of the finished shards again
(read, never decoded) so that their duplicates later on are still pointers. The digests
held grow with the distinct images (some 100 bytes each with the first one's name).

Decoding, resizing and the kernels all release the GIL, and the backends run outside it,
so the stages really overlap.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from engine.label.batches import chunk_images as images_per_chunk
from engine.label.decode import DecodeError, content_digest, decode_bytes, read_source
from engine.label.detect import Candidates, concatenate_candidates
from engine.label.discover import Source
from engine.label.labeler import Labeler
from engine.label.manifest import RunSummary
from engine.label.views import TransformPlan
from engine.label.shards import FinishedShards
from engine.remerge.candidates import CandidateWriter, PersonKeypoints

STAGES = ("discover", "decode", "views", "inference", "ensemble", "keypoints", "write")
_END = object()


class StageClock:
    """Seconds spent in each stage, summed over the threads that run it."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self._lock = threading.Lock()

    def add(self, stage: str, start: float) -> float:
        now = time.perf_counter()
        with self._lock:
            self.seconds[stage] += now - start
        return now


@dataclass
class Item:
    """One discovered path on its way through the stages."""

    index: int
    source: Source
    reason: str | None = None  # why it could not be labeled
    image: np.ndarray | None = None
    views: list | None = None
    record: dict | None = None
    digest: bytes | None = None  # of the bytes, with dedupe
    duplicate_of: str | None = None  # the name of the first image with the same bytes
    known: bool = False  # an image of a finished shard, only hashed (dedupe on resume)
    parts: list[Candidates | None] | None = None  # per pass of the plan, None: not run (yet)
    persons: PersonKeypoints | None = None  # the keypoint stage's results, kept with the candidates
    detections: Future | None = None  # its merged detections, once every pass it gets has run
    escalated: bool | None = None  # a staged plan's decision (None: the plan has no stages)


class RecordSink(Protocol):
    """Where the pipeline hands finished items, in discovery order: a ShardWriter (shard
    files of a run folder) or a scale-out actor's in-memory collector."""

    def add(self, index: int, name: str, record: dict | None, reason: str | None) -> None: ...

    def close(self) -> None: ...


class _Abort(Exception):
    """Another stage failed; this one stops quietly."""


class Pipeline:
    """One labeling run over `sources` into `sink` (see the module docstring).

    finished: the shards a resumed run already wrote, whose images are skipped (None:
    label everything); workers: threads for decoding and for merging each; chunk_images:
    images whose views are batched together; max_pixels: the decoder's bomb guard;
    count_sources: a fresh iterator over the same input, walked in the background only to
    give the progress bar its total (None: no total); dedupe: exact duplicates become
    pointer records (module docstring); candidates: where every pass's candidates are kept
    (`distill label --keep-candidates`), handed each item just before `sink`.
    """

    def __init__(self, labeler: Labeler, sink: RecordSink, finished: FinishedShards | None, workers: int,
                 max_pixels: int, chunk_images: int, progress: bool = True,
                 count_sources: Callable[[], Iterator[Source]] | None = None, dedupe: bool = False,
                 candidates: CandidateWriter | None = None) -> None:
        self.labeler = labeler
        self.sink = sink
        self.finished = finished
        self.workers = max(1, workers)
        self.max_pixels = max_pixels
        self.chunk_images = max(1, chunk_images)
        self.progress = progress
        self.count_sources = count_sources
        self.dedupe = dedupe
        self.candidates = candidates
        self._pass_index = {item: p for p, item in enumerate(labeler.settings.plan.passes)}
        # A staged plan: first-stage views for every image; the merge workers put the
        # images the rule escalates on `_escalated` with their second-stage views, and
        # the detector stage batches those together (module docstring).
        settings = labeler.settings
        self.escalation = settings.escalation
        self._first = settings.escalation.first if settings.escalation is not None else None
        self._second = settings.second_stage
        self._escalated: queue.Queue = queue.Queue()  # bounded by the items in flight
        self._backlog: list[Item] = []  # escalated items the detector has taken, waiting for a full chunk
        second = TransformPlan(self._second, settings.plan.max_size) if self._second else None
        self._escalation_chunk = images_per_chunk(labeler.batch_size, second) if second is not None else 0
        self._open: list[Future] = []  # detections of items in flight, not yet known
        # digest -> name of its first image; written only by the detector stage, in order.
        self._seen: dict[bytes, str] = {}
        self.clock = StageClock()
        self._abort = threading.Event()
        self._error: BaseException | None = None
        # Look-ahead: enough decoded images to keep every decoder busy and fill a chunk;
        # each holds all its views (up to ~100 MB at 1200 px), so no more than that.
        self._prepared: queue.Queue = queue.Queue(maxsize=self.workers + self.chunk_images)
        self._detected: queue.Queue = queue.Queue(maxsize=2)
        self._labeled: queue.Queue = queue.Queue(maxsize=2)

    # ---- plumbing -------------------------------------------------------------------
    def _put(self, q: queue.Queue, value: Any) -> None:
        while True:
            if self._abort.is_set():
                raise _Abort
            try:
                q.put(value, timeout=0.1)
                return
            except queue.Full:
                continue

    def _get(self, q: queue.Queue) -> Any:
        while True:
            if self._abort.is_set():
                raise _Abort
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue

    def _stage(self, body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except _Abort:
                pass
            except BaseException as error:  # handed to the main thread, which re-raises
                if self._error is None:
                    self._error = error
                self._abort.set()
        return run

    # ---- stages ---------------------------------------------------------------------
    def _feed(self, sources: Iterator[Source], decode_pool: ThreadPoolExecutor) -> None:
        start = time.perf_counter()
        for index, source in enumerate(sources):
            start = self.clock.add("discover", start)
            if self.finished is not None and self.finished.covers(index, source.name):
                self.summary.skipped += 1
                if self.dedupe:  # its digest still decides which later images are duplicates
                    self._put(self._prepared, decode_pool.submit(self._hash, index, source))
                continue
            self._put(self._prepared, decode_pool.submit(self._prepare, index, source))
            start = time.perf_counter()
        self._put(self._prepared, _END)

    def _prepare(self, index: int, source: Source) -> Item:
        item = Item(index, source, reason=source.problem)
        if item.reason is not None:
            return item
        start = time.perf_counter()
        try:
            data = read_source(source)
            if self.dedupe:
                item.digest = content_digest(data)
                # Registered by the in-order detector stage, so by an earlier image: a
                # duplicate for certain, not worth decoding. (Not registered yet decides
                # nothing: the detector stage checks again.)
                item.duplicate_of = self._seen.get(item.digest)
                if item.duplicate_of is not None:
                    return item
            item.image = decode_bytes(data, self.max_pixels)
        except DecodeError as error:
            item.reason = str(error)
            return item
        start = self.clock.add("decode", start)
        item.views = self.labeler.views(item.image, self._first)
        self.clock.add("views", start)
        return item

    def _hash(self, index: int, source: Source) -> Item:
        """An image of a finished shard: only its digest (dedupe on resume)."""
        item = Item(index, source, reason=source.problem, known=True)
        if item.reason is None:
            try:
                item.digest = content_digest(read_source(source))
            except DecodeError:
                pass  # unreadable: it was no first occurrence in the finished shard either
        return item

    def _first_or_duplicate(self, item: Item) -> None:
        """Register `item` as the first image of its digest, or make it a pointer to the
        first. Called in discovery order. An image whose bytes were read but did not
        decode is a first occurrence too (its duplicates point at its failure entry), so
        a resumed run, which only hashes the finished shards, decides the same."""
        if item.digest is None:
            return
        first = self._seen.get(item.digest)
        if first is None:
            self._seen[item.digest] = item.source.name
            return
        item.duplicate_of, item.reason, item.image, item.views = first, None, None, None
        item.record = {"file_name": item.source.name, "duplicate_of": first}

    def _detect(self, merge_pool: ThreadPoolExecutor) -> None:
        chunk: list[Item] = []
        while True:
            value = self._get_serving(self._prepared, merge_pool)
            if value is not _END:
                item = value.result()
                if self.dedupe:
                    self._first_or_duplicate(item)
                if not item.known:
                    chunk.append(item)
            if chunk and (value is _END or len(chunk) == self.chunk_images):
                good = [item for item in chunk if item.reason is None and item.duplicate_of is None]
                self._run_views(good)
                for item in good:
                    item.detections = Future()
                    merge_pool.submit(self._first_merge, item)
                if self.escalation is not None:  # only a staged plan waits for them at the end
                    self._open = [f for f in self._open if not f.done()] + [item.detections for item in good]
                self._put_serving(self._detected, (chunk, good), merge_pool)
                chunk = []
            if value is _END:
                while self.escalation is not None and self._open:  # escalated images still to run
                    self._serve(merge_pool, waiting=True)
                    self._open = [f for f in self._open if not f.done()]
                self._put(self._detected, _END)
                return

    def _get_serving(self, q: queue.Queue, merge_pool: ThreadPoolExecutor) -> Any:
        """`_get`, running the escalated images' views while nothing else is there to run."""
        if self.escalation is None:
            return self._get(q)
        while True:
            try:
                return q.get_nowait()
            except queue.Empty:
                self._serve(merge_pool, waiting=True)

    def _put_serving(self, q: queue.Queue, value: Any, merge_pool: ThreadPoolExecutor) -> None:
        """`_put`, running the escalated images' views while `q` is full: the stage
        downstream may be waiting for one of them (no deadlock), and the detector would
        idle anyway."""
        if self.escalation is None:
            return self._put(q, value)
        while True:
            self._serve(merge_pool, waiting=False)
            try:
                q.put(value, timeout=0.02)
                return
            except queue.Full:
                self._serve(merge_pool, waiting=True)

    def _serve(self, merge_pool: ThreadPoolExecutor, waiting: bool) -> None:
        """Run the second stage's views of escalated images: a full chunk of them at once
        (batches stay full, views of several images batched together), or whatever there
        is when the detector would otherwise wait (`waiting`; then this waits briefly for
        one to arrive)."""
        if self._abort.is_set():
            raise _Abort
        try:
            while True:
                self._backlog.append(self._escalated.get(timeout=0.02 if waiting and not self._backlog else 0))
        except queue.Empty:
            pass
        while self._backlog and (waiting or len(self._backlog) >= self._escalation_chunk):
            items = self._backlog[:self._escalation_chunk]
            self._backlog = self._backlog[self._escalation_chunk:]
            self._run_views(items)
            for item in items:
                merge_pool.submit(self._final_merge, item)

    def _run_views(self, items: list[Item]) -> None:
        """The detector over the views of `items`, batched together; each view's candidates
        land in its item's `parts` at its pass's place in the plan."""
        start = time.perf_counter()
        per_view = self.labeler.detect_passes([item.views for item in items])
        self.clock.add("inference", start)
        for item, candidates in zip(items, per_view):
            if item.parts is None:
                item.parts = [None] * len(self._pass_index)
            for view, found in zip(item.views, candidates):
                item.parts[self._pass_index[view.scale, view.flipped]] = found
            item.views = None  # the biggest arrays in flight: free them now

    def _merge(self, item: Item):
        """An item's candidates of the passes that ran, concatenated in plan order (as
        `Labeler.detect` would have) and merged."""
        start = time.perf_counter()
        detections = self.labeler.merge(concatenate_candidates([c for c in item.parts if c is not None]))
        self.clock.add("ensemble", start)
        return detections

    def _first_merge(self, item: Item) -> None:
        """(A merge worker.) The first stage merged; for a staged plan, the rule decides:
        an escalated item gets its second-stage views and goes back to the detector stage,
        any other is done."""
        try:
            detections = self._merge(item)
            if self.escalation is not None:
                start = time.perf_counter()
                item.escalated = self.escalation.escalates(detections, [c for c in item.parts if c is not None])
                self.clock.add("ensemble", start)
                if item.escalated:
                    start = time.perf_counter()
                    item.views = self.labeler.views(item.image, self._second)
                    self.clock.add("views", start)
                    self._escalated.put(item)
                    return
            self._done(item, detections)
        except BaseException as error:  # the keypoint stage re-raises it
            item.detections.set_exception(error)

    def _final_merge(self, item: Item) -> None:
        """(A merge worker.) An escalated item: every pass's candidates, in plan order, merged."""
        try:
            self._done(item, self._merge(item))
        except BaseException as error:
            item.detections.set_exception(error)

    def _done(self, item: Item, detections) -> None:
        if self.candidates is None:
            item.parts = None
        item.detections.set_result(detections)

    def _result(self, future: Future):
        while True:
            if self._abort.is_set():
                raise _Abort
            try:
                return future.result(timeout=0.1)
            except FutureTimeout:
                continue

    def _keypoints(self) -> None:
        while True:
            value = self._get(self._detected)
            if value is _END:
                self._put(self._labeled, _END)
                return
            chunk, good = value
            detections = [self._result(item.detections) for item in good]
            start = time.perf_counter()
            keypoints = self.labeler.estimate_keypoints([item.image for item in good], detections)
            for item, dets, kps in zip(good, detections, keypoints):
                item.record = self.labeler.record(item.source.name, item.image, dets, kps, item.escalated)
                item.detections = None
                if self.candidates is not None and self.labeler.keypoints is not None:
                    item.persons = PersonKeypoints(dets.boxes[kps.rows], kps.points, kps.scores)
                item.image = None
            self.clock.add("keypoints", start)
            self._put(self._labeled, chunk)

    def _count(self, bar: tqdm) -> None:
        total = 0
        for _ in self.count_sources():
            total += 1
            if self._abort.is_set():  # the run ended first: the total no longer matters
                return
        bar.total = max(0, total - self.summary.skipped)
        bar.refresh()

    # ---- the run --------------------------------------------------------------------
    def run(self, sources: Iterator[Source]) -> RunSummary:
        self.summary = RunSummary(escalated=None if self.escalation is None else 0)
        wall = time.perf_counter()
        bar = tqdm(desc="label", unit="img", disable=not self.progress, dynamic_ncols=True)
        decode_pool = ThreadPoolExecutor(self.workers, thread_name_prefix="decode")
        merge_pool = ThreadPoolExecutor(self.workers, thread_name_prefix="merge")
        threads = [threading.Thread(target=self._stage(body), name=name, daemon=True) for name, body in (
            ("feed", lambda: self._feed(sources, decode_pool)),
            ("detect", lambda: self._detect(merge_pool)),
            ("keypoints", self._keypoints),
        )]
        if self.count_sources is not None and self.progress:
            threads.append(threading.Thread(target=self._stage(lambda: self._count(bar)), name="count", daemon=True))
        for thread in threads:
            thread.start()
        try:
            while True:
                chunk = self._get(self._labeled)
                if chunk is _END:
                    break
                start = time.perf_counter()
                for item in chunk:
                    if self.candidates is not None:  # before the shard it belongs to is committed
                        self.candidates.add(item.index, item.source.name,
                                            item.parts if item.duplicate_of is None else None, item.persons)
                    self.sink.add(item.index, item.source.name, item.record, item.reason)
                    if item.record is None:
                        self.summary.failed += 1
                    elif item.duplicate_of is not None:
                        self.summary.duplicates += 1
                    else:
                        self.summary.images += 1
                        self.summary.detections += len(item.record["detections"])
                        if item.escalated:
                            self.summary.escalated += 1
                self.clock.add("write", start)
                bar.update(len(chunk))
                bar.set_postfix(failed=self.summary.failed, refresh=False)
            if self.candidates is not None:
                self.candidates.close()
            self.sink.close()
        except _Abort:
            pass
        except BaseException:
            self._abort.set()
            raise
        finally:
            # Stops every stage still waiting on a queue (after an error or an interrupt)
            # and the background count; after a normal end the stages have already returned.
            self._abort.set()
            for thread in threads:
                thread.join()
            decode_pool.shutdown(wait=True, cancel_futures=True)
            merge_pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
        if self._error is not None:
            raise self._error
        self.summary.wall_seconds = time.perf_counter() - wall
        self.summary.stage_seconds = dict(self.clock.seconds)
        return self.summary
