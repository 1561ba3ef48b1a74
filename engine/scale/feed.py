"""Shard rows streamed into Ray Data while the driver walks the input.

`ray.data.from_items(rows)` needs every row first: the driver would hold every file name
of the dump (some 60 bytes each: 0.6 GB at 10^7 files, 6 GB at 10^8) and the object store
a second copy before the first shard is labeled. Instead, a thread of the driver walks
the input (engine.scale.split, one shard's names at a time) and puts each row into a Ray
queue (`ray.util.queue.Queue`, a small actor); the dataset's one read task takes rows
from that queue and yields them as one-row blocks, until the end marker. At most
`window` rows are put and not yet written back by the driver, so the rows anywhere (the
queue, Ray Data's buffers, the actors) are bounded too, and the driver's memory stays
flat in the dump's size.

The read task reserves no CPU (`num_cpus=0`): it only waits on the queue, and an actor
pool that takes every CPU of a small cluster must not starve it (docs/scale-out.md).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

_POLL_SECONDS = 0.1


class RowFeed:
    """Puts `rows` into a Ray queue from a driver thread, at most `window` rows ahead of
    `done()`; `dataset()` is the Ray Dataset that reads them. `error`: what the walk
    raised (a changed input, an unreadable list), re-raised by `finish()`. Use as a
    context manager: on exit the thread stops and the queue's actor is killed, so a
    stopped job's read task ends too."""

    def __init__(self, rows: Iterable[dict], window: int) -> None:
        from ray.util.queue import Queue

        self.rows = rows
        self.queue = Queue(actor_options={"num_cpus": 0})
        self.error: BaseException | None = None
        self._room = threading.Semaphore(window)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._put_all, name="row-feed", daemon=True)

    def __enter__(self) -> RowFeed:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        self._stop.set()
        self._thread.join()
        ray.kill(self.queue.actor)

    def _put_all(self) -> None:
        try:
            for row in self.rows:
                while not self._room.acquire(timeout=_POLL_SECONDS):
                    if self._stop.is_set():
                        return
                self.queue.put(row)
        except BaseException as error:  # handed to the driver's thread by finish()
            self.error = error
        if not self._stop.is_set():
            self.queue.put(None)  # the end: the read task returns

    def done(self) -> None:
        """One row has come back and been written: room for the next."""
        self._room.release()

    def finish(self) -> None:
        """After the dataset is exhausted: raise what the walk raised, if anything."""
        if self.error is not None:
            raise self.error

    def dataset(self) -> Any:
        """A Ray Dataset of the rows, in the order they are put, one row a block."""
        import ray

        # A read task's output is buffered until a block reaches the target size (128 MiB
        # by default): rows of some 60 KB would wait for thousands of others, and the feed,
        # waiting for rows to come back, would never send them. One row a block instead.
        context = ray.data.DataContext.get_current()
        saved, context.target_max_block_size = context.target_max_block_size, 1
        try:
            return ray.data.read_datasource(queue_datasource(self.queue), override_num_blocks=1, num_cpus=0)
        finally:
            context.target_max_block_size = saved



def queue_datasource(queue: Any) -> Any:
    """A Ray Data datasource whose one read task yields the rows put into `queue`, one row
    a block, until the end marker None. The class is made here, not at import, because
    its base is Ray's: the engine imports without Ray (a local class is pickled by value
    for the read task)."""
    import pyarrow as pa
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class QueueDatasource(Datasource):
        def estimate_inmemory_data_size(self) -> int | None:
            return None  # unknown until the input has been walked

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list[ReadTask]:
            # One task whatever the parallelism: the rows' order is the queue's, and one
            # reader keeps far ahead of actors that spend minutes on each row's shard.
            def read():
                while (row := queue.get()) is not None:
                    yield pa.Table.from_pylist([row])

            return [ReadTask(read, BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None,
                                                 input_files=None))]

    return QueueDatasource()
