"""Background prefetching with threads or worker processes, in the same order.

:class:`Prefetch` wraps a stream and reads ahead into bounded queues. It
works in one of two ways:

* **parallel reads** — when it wraps a :class:`~bricks.data.DataStream` read
  by an iteration scheme, the main process draws the requests and hands
  request ``i`` to worker ``i % workers``; the results are taken back in
  request order, so the batches are exactly those of the stream without
  workers. Put the transformers *above* the ``Prefetch``.
* **read-ahead** — any other stream runs whole in one worker (``workers=1``)
  that sends each item together with the stream's state after it.

Workers (processes or threads) start at the first epoch and serve every
later one: a new epoch is a message to them, not a new pool, and each
keeps its dataset (an HDF5 file) open until :meth:`Prefetch.close`, the
stream's garbage collection or the end of the interpreter (see
:mod:`bricks.data._workers`, which also moves batches through shared
memory). The dataset (or stream) is pickled to them once, when they
start: changes made to it later reach them only after ``close()``.

Worker processes start with the ``forkserver`` method by default: they are
forked from a clean server process, so no h5py object ever crosses a fork,
and each worker opens its own HDF5 handle (:class:`~bricks.data.H5PYDataset`
reopens by process id). They import the main script only when what they are
sent refers to it (then the script needs its ``if __name__ == "__main__":``
guard, or the error says to add one). Lambdas need ``start_method="fork"``
and then no HDF5 file may be open in the parent. A worker that raises or
dies makes the main process raise :class:`~bricks.errors.WorkerError` (with
the worker's traceback) within ``poll`` seconds; nothing hangs. Each worker
process watches the trainer and exits within a second when it is gone, even
after a SIGKILL, so neither the workers nor the resource tracker and its
``/dev/shm`` files outlive it. An object that cannot be pickled, and a full
``/dev/shm``, are :class:`~bricks.errors.WorkerError` messages that name the
worker, the object and the fix.

The state of a ``Prefetch`` is the state of the stream it wraps after the
last item *delivered* (not read ahead), so a run resumes at the next batch,
with or without workers.
"""

from __future__ import annotations

import weakref
from typing import Any

from bricks.errors import SchemeError, WorkerError

from ._datastream import DataStream
from ._streams import AbstractDataStream, _Iter
from ._workers import WorkerPool, close_pools

__all__ = ["Prefetch"]


class _ParallelReadIter(_Iter):
    """Requests drawn here; reads in the pool's workers; results taken back in request order."""

    def __init__(self, t: Prefetch, epoch: int, state: Any) -> None:
        self.t = t
        self.leaf = t.data_stream._open(epoch, state)
        self.leaf.close()  # the main process only draws requests
        self.delivered = self.leaf.start
        self.sent = self.received = 0
        self.requests_done = False
        self.select = t.data_stream._source_index
        self.pool: WorkerPool | None = t._acquire()
        self.gen = self.pool.begin()
        self._fill()

    @property
    def workers(self) -> list:
        """The pool's worker processes (or threads)."""
        return list(self.pool.workers) if self.pool is not None else []

    def _fill(self) -> None:
        limit = self.t.workers * self.t.buffer_size
        while not self.requests_done and self.sent - self.received < limit:
            try:
                request = self.leaf.next_request()
            except StopIteration:
                self.requests_done = True
                break
            self.pool.send_read(self.sent % self.t.workers, self.gen, request, self.select)
            self.sent += 1

    def __next__(self) -> tuple:
        if self.pool is None or self.received == self.sent:  # closed, or done
            self.close()
            raise StopIteration
        k = self.received % self.t.workers
        try:
            kind, body = self.pool.receive(k, self.gen, f"request {self.delivered}")
        except BaseException:
            self.close()
            raise
        if kind == "error":
            dataset = self.t.data_stream.dataset
            self.close()
            raise WorkerError(
                f"Prefetch worker {k} failed reading request {self.delivered} of "
                f"{dataset!r}; its traceback:\n{body}"
            )
        self.received += 1
        self.delivered += 1
        self._fill()
        return body

    def state(self) -> dict:
        return {"position": self.delivered}

    def close(self) -> None:
        if self.pool is not None:
            self.t._release(self.pool)
            self.pool = None


class _ReadAheadIter(_Iter):
    """The whole child stream runs in one worker; items come with their state."""

    def __init__(self, t: Prefetch, epoch: int, state: Any) -> None:
        self.t = t
        self._state = state
        self.pool: WorkerPool | None = t._acquire()
        self.gen = self.pool.begin()
        self.pool.send_epoch(self.gen, epoch, state)
        self.done = False

    @property
    def workers(self) -> list:
        """The pool's worker process (or thread)."""
        return list(self.pool.workers) if self.pool is not None else []

    def __next__(self) -> tuple:
        if self.done or self.pool is None:
            raise StopIteration
        try:
            kind, body = self.pool.receive(0, self.gen, "the next item")
        except BaseException:
            self.done = True
            self.close()
            raise
        if kind == "end":
            self.done = True
            self.close()
            raise StopIteration
        if kind == "error":
            name = type(self.t.data_stream).__name__
            self.done = True
            self.close()
            raise WorkerError(f"Prefetch worker failed running {name}; its traceback:\n{body}")
        item, self._state = body
        return item

    def state(self) -> Any:
        return self._state

    def close(self) -> None:
        if self.pool is not None:
            self.t._release(self.pool)
            self.pool = None


class Prefetch(AbstractDataStream):
    """Read a stream ahead in background threads or processes, in the same order.

    Args:
        data_stream: the stream to read ahead. A ``DataStream`` read by a
            scheme is read in parallel by ``workers``; any other stream runs
            whole in one worker.
        workers: number of readers (more than one needs a ``DataStream``).
        processes: use worker processes instead of threads.
        buffer_size: items each worker may read ahead (bounded queues).
        start_method: multiprocessing start method (``"forkserver"``,
            ``"spawn"`` or ``"fork"``).
        poll: seconds between liveness checks of the workers.

    The workers start at the first epoch and serve the later ones; call
    :meth:`close` to stop them sooner than the stream's garbage collection
    or the end of the program. Threads suit readers that release the GIL
    (memory-mapped HDF5, in-memory arrays); processes suit h5py reads and
    Python-heavy readers (``docs/data.md``, "Threads or processes?").

    Raises:
        WorkerError: a worker raised (with its traceback) or died, or the
            dataset cannot be sent to worker processes (unpicklable, or
            defined in a main script without an ``if __name__ == "__main__":``
            guard).

    >>> import numpy as np
    >>> from bricks.data import DataStream, IndexableDataset, SequentialScheme
    >>> s = DataStream(IndexableDataset({"x": np.arange(7)}),
    ...                iteration_scheme=SequentialScheme(7, 3))
    >>> [b[0].tolist() for b in Prefetch(s, workers=2).get_epoch_iterator()]
    [[0, 1, 2], [3, 4, 5], [6]]
    """

    def __init__(
        self,
        data_stream: AbstractDataStream,
        workers: int = 1,
        processes: bool = False,
        buffer_size: int = 4,
        start_method: str = "forkserver",
        poll: float = 0.1,
    ) -> None:
        super().__init__()
        self.data_stream = data_stream
        self.sources = data_stream.sources
        self.produces_examples = data_stream.produces_examples
        self.axis_labels = data_stream.axis_labels
        self.parallel = (
            isinstance(data_stream, DataStream)
            and data_stream.iteration_scheme is not None
            and not data_stream._data_driven  # one dataset state across epochs: one reader
        )
        if workers < 1 or (workers > 1 and not self.parallel):
            raise SchemeError(
                f"Prefetch: workers={workers} needs a DataStream read by an iteration scheme "
                f"(found {type(data_stream).__name__}); wrap the DataStream in Prefetch and put "
                "the transformers above it, or use workers=1"
            )
        if buffer_size < 1:
            raise SchemeError(f"Prefetch: buffer_size must be at least 1, found {buffer_size}")
        self.workers, self.processes = int(workers), processes
        self.buffer_size, self.start_method, self.poll = int(buffer_size), start_method, poll

    def _acquire(self) -> WorkerPool:
        """An idle pool of this stream's workers, started now if there is none."""
        pools = self.__dict__.get("_live_pools")
        if pools is None:
            pools = self._live_pools = []
            self._live_finalizer = weakref.finalize(self, close_pools, pools)
        for pool in list(pools):
            if pool.broken:
                pools.remove(pool)
                pool.close()
            elif not pool.busy:
                return pool
        if self.parallel:
            ds = self.data_stream.dataset
            pool = WorkerPool("read", ds, self.workers, self.buffer_size, self.processes,
                              self.start_method, self.poll, "the dataset")
        else:
            pool = WorkerPool("stream", self.data_stream, 1, self.buffer_size, self.processes,
                              self.start_method, self.poll, "the stream")
        pools.append(pool)
        return pool

    def _release(self, pool: WorkerPool) -> None:
        """An epoch is done with ``pool``: keep it for the next one (one idle pool at most)."""
        pool.end()
        pools = self.__dict__.get("_live_pools", [])
        idle = [p for p in pools if not p.busy and not p.broken]
        if pool.broken or len(idle) > 1:
            if pool in pools:
                pools.remove(pool)
            pool.close()

    def close(self) -> None:
        """Stop the workers (they restart at the next epoch) and release their resources."""
        super().close()
        close_pools(self.__dict__.get("_live_pools", []))

    def _open(self, epoch: int, state: Any) -> _Iter:
        if self.parallel:
            return _ParallelReadIter(self, epoch, state)
        return _ReadAheadIter(self, epoch, state)
