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

Worker processes start with the ``forkserver`` method by default: they are
forked from a clean server process, so no h5py object ever crosses a fork,
and each worker opens its own HDF5 handle (:class:`~bricks.data.H5PYDataset`
reopens by process id). Everything a worker needs (the dataset, or the
stream) is pickled to it; lambdas need ``start_method="fork"`` and then no
HDF5 file may be open in the parent. A worker that raises or dies makes the
main process raise :class:`~bricks.errors.WorkerError` within ``poll``
seconds; nothing hangs. Each worker process watches the trainer and exits
within a second when it is gone, even after a SIGKILL, so neither the
workers nor the resource tracker and its ``/dev/shm`` semaphores outlive
it. An object that cannot be pickled, and a full ``/dev/shm``, are
:class:`~bricks.errors.WorkerError` messages that name the worker, the
object and the fix.

The state of a ``Prefetch`` is the state of the stream it wraps after the
last item *delivered* (not read ahead), so a run resumes at the next batch,
with or without workers.
"""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import pickle
import queue
import threading
import time
import traceback
from typing import Any

from bricks.errors import SchemeError, WorkerError

from ._streams import AbstractDataStream, DataStream, _Iter

__all__ = ["Prefetch"]

_PRELOADED = False


def _context(start_method: str) -> Any:
    global _PRELOADED
    ctx = mp.get_context(start_method)
    if start_method == "forkserver" and not _PRELOADED:
        ctx.set_forkserver_preload(["numpy", "h5py", "bricks.data"])
        _PRELOADED = True
    return ctx


# --- worker bodies (module level: picklable) --------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead: nobody reaped it yet
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return True


def _watch_trainer(trainer: int | None, every: float = 0.5) -> None:
    """In a worker process: exit at once when the trainer is gone (even by SIGKILL).

    A worker blocked on a queue would otherwise live on forever, and with it
    the resource tracker and the ``/dev/shm`` semaphores of its queues.
    """
    if trainer is None or trainer == os.getpid():
        return  # a thread worker

    def watch() -> None:
        while _alive(trainer):
            time.sleep(every)
        os._exit(0)

    threading.Thread(target=watch, name="bricks-prefetch-watchdog", daemon=True).start()


def _read_worker(
    dataset: Any, requests: Any, results: Any, stop: Any, trainer: int | None = None
) -> None:
    _watch_trainer(trainer)
    handle = None
    try:
        handle = dataset.open()
        while True:
            request = requests.get()
            if request is None or stop.is_set():
                break
            results.put(("ok", dataset.get_data(handle, request[0])))
    except BaseException as e:  # report everything; the main process raises
        results.put(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
    finally:
        if handle is not None:
            dataset.close(handle)


def _stream_worker(
    stream: AbstractDataStream,
    epoch: int,
    state: Any,
    results: Any,
    stop: Any,
    trainer: int | None = None,
) -> None:
    _watch_trainer(trainer)
    try:
        inner = stream._open(epoch, state)
        for item in inner:
            if stop.is_set():
                break
            results.put(("ok", item, inner.state()))
        inner.close()
        results.put(("end",))
    except BaseException as e:
        results.put(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


# --- iterators ----------------------------------------------------------------------


class _ParallelReadIter(_Iter):
    """Requests drawn here; reads in workers; results taken back in request order."""

    def __init__(self, t: Prefetch, epoch: int, state: Any) -> None:
        self.t = t
        self.leaf = t.data_stream._open(epoch, state)
        self.delivered = self.leaf.start
        self.sent = self.received = 0
        self.requests_done = False
        self.workers: list = []
        self.inqs: list = []
        self.outqs: list = []
        n, depth = t.workers, t.buffer_size
        if t.processes:
            ctx = _context(t.start_method)
            self.leaf.close()  # the main process does not read
            make_event, make_queue, make_worker = ctx.Event, ctx.Queue, ctx.Process
        else:
            make_event, make_queue, make_worker = threading.Event, queue.Queue, threading.Thread
        trainer = os.getpid() if t.processes else None
        self.stop = _shm(make_event, "the stop event")
        for k in range(n):
            who = f"Prefetch worker {k}"
            inq, outq = _shm(make_queue, who), _shm(lambda: make_queue(depth), who)
            worker = make_worker(
                target=_read_worker,
                args=(t.data_stream.dataset, inq, outq, self.stop, trainer),
                daemon=True,
                name=f"bricks-prefetch-{k}",
            )
            _start(worker, t.data_stream.dataset, "the dataset", who)
            self.workers.append(worker)
            self.inqs.append(inq)
            self.outqs.append(outq)
        self._fill()

    def _fill(self) -> None:
        limit = self.t.workers * self.t.buffer_size
        while not self.requests_done and self.sent - self.received < limit:
            try:
                request = self.leaf.next_request()
            except StopIteration:
                self.requests_done = True
                break
            self.inqs[self.sent % self.t.workers].put((request,))
            self.sent += 1

    def __next__(self) -> tuple:
        if self.received == self.sent or not self.outqs:  # done, or closed
            self.close()
            raise StopIteration
        k = self.received % self.t.workers
        msg = _get(
            self.outqs[k], self.workers[k], self.t.poll, f"worker {k}", f"request {self.delivered}"
        )
        if msg[0] == "error":
            self.close()
            raise WorkerError(
                f"Prefetch worker {k} failed reading request {self.delivered} of "
                f"{self.t.data_stream.dataset!r}:\n{msg[1]}"
            )
        self.received += 1
        self.delivered += 1
        self._fill()
        return msg[1]

    def state(self) -> dict:
        return {"position": self.delivered}

    def close(self) -> None:
        if not self.workers:
            return
        self.stop.set()
        for q in self.inqs:
            q.put(None)
        for w, outq in zip(self.workers, self.outqs, strict=True):
            _drain(outq)
            w.join(timeout=1.0)
            if self.t.processes and w.is_alive():
                w.terminate()
                w.join(timeout=1.0)
        if self.t.processes:
            for q in self.inqs + self.outqs:
                q.cancel_join_thread()
                q.close()
        else:
            self.leaf.close()
        self.workers = []
        # drop the queues and the event: their semaphores in /dev/shm go with them
        self.inqs, self.outqs, self.stop = [], [], None


class _ReadAheadIter(_Iter):
    """The whole child stream runs in one worker; items come with their state."""

    def __init__(self, t: Prefetch, epoch: int, state: Any) -> None:
        self.t = t
        self._state = state
        if t.processes:
            ctx = _context(t.start_method)
            self.queue = _shm(lambda: ctx.Queue(t.buffer_size), "Prefetch worker")
            self.stop = _shm(ctx.Event, "Prefetch worker")
            self.worker = ctx.Process(
                target=_stream_worker,
                args=(t.data_stream, epoch, state, self.queue, self.stop, os.getpid()),
                daemon=True,
                name="bricks-prefetch",
            )
        else:
            self.queue = queue.Queue(t.buffer_size)
            self.stop = threading.Event()
            self.worker = threading.Thread(
                target=_stream_worker,
                args=(t.data_stream, epoch, state, self.queue, self.stop),
                daemon=True,
                name="bricks-prefetch",
            )
        _start(self.worker, t.data_stream, "the stream", "Prefetch worker")
        self.done = False

    def __next__(self) -> tuple:
        if self.done:
            raise StopIteration
        msg = _get(self.queue, self.worker, self.t.poll, "worker", "the next item")
        if msg[0] == "end":
            self.done = True
            self.close()
            raise StopIteration
        if msg[0] == "error":
            self.done = True
            self.close()
            raise WorkerError(
                f"Prefetch worker failed running {type(self.t.data_stream).__name__}:\n{msg[1]}"
            )
        self._state = msg[2]
        return msg[1]

    def state(self) -> Any:
        if self.done and self._state is None:
            return None
        return self._state

    def close(self) -> None:
        if self.worker is None:
            return
        self.stop.set()
        _drain(self.queue)
        self.worker.join(timeout=1.0)
        if self.t.processes:
            if self.worker.is_alive():
                self.worker.terminate()
                self.worker.join(timeout=1.0)
            self.queue.cancel_join_thread()
            self.queue.close()
        self.worker = None
        self.queue = self.stop = None  # their semaphores in /dev/shm go with them


def _shm(make: Any, who: str) -> Any:
    """Make a queue or event; a full ``/dev/shm`` becomes a WorkerError that says so."""
    try:
        return make()
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.ENOMEM, errno.EMFILE):
            raise
        raise WorkerError(
            f"{who}: cannot create its queue: shared memory is exhausted ({error}). Worker "
            "processes talk through semaphores and pipes in /dev/shm; raise its size (docker: "
            "--shm-size=1g; a host: mount -o remount,size=1G /dev/shm), use fewer workers, or "
            "Prefetch(processes=False)"
        ) from error


def _start(worker: Any, payload: Any, what: str, who: str) -> None:
    """Start a worker; say which object could not be pickled when that is why it failed."""
    try:
        worker.start()
    except (pickle.PicklingError, TypeError, AttributeError) as error:
        if not hasattr(worker, "pid"):  # a thread: nothing is pickled
            raise
        where = _unpicklable(payload, what)
        raise WorkerError(
            f"{who}: Prefetch(processes=True) sends {what} to each worker process by pickling, "
            f"and {where} cannot be pickled ({type(error).__name__}: {error}). Define functions "
            "and classes it holds at module level (no lambdas or local functions), or use "
            "start_method='fork' (no HDF5 file may be open then), or Prefetch(processes=False)"
        ) from error


def _unpicklable(obj: Any, path: str, depth: int = 0) -> str:
    """The path (``the dataset.transform[0]``) of the first part of ``obj`` that fails pickling."""
    try:
        pickle.dumps(obj)
        return f"{path} ({type(obj).__name__})"  # it pickles alone: the culprit is around it
    except Exception:  # noqa: BLE001 -- any failure marks the culprit
        pass
    if depth < 6:
        if isinstance(obj, dict):
            children = [(f"{path}[{k!r}]", v) for k, v in obj.items()]
        elif isinstance(obj, list | tuple):
            children = [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
        else:
            children = [(f"{path}.{k}", v) for k, v in getattr(obj, "__dict__", {}).items()]
        for child_path, child in children:
            try:
                pickle.dumps(child)
            except Exception:  # noqa: BLE001
                return _unpicklable(child, child_path, depth + 1)
    return f"{path} ({type(obj).__name__}: {obj!r:.80})"


def _drain(q: Any) -> None:
    try:
        while True:
            q.get_nowait()
    except (queue.Empty, OSError, ValueError, EOFError):
        pass


def _get(q: Any, worker: Any, poll: float, who: str, what: str) -> tuple:
    """Wait for a message, checking every ``poll`` seconds that the worker lives."""
    while True:
        try:
            return q.get(timeout=poll)
        except queue.Empty:
            if not worker.is_alive():
                try:  # it may have put its last word just before exiting
                    return q.get(timeout=poll)
                except queue.Empty:
                    pass
                code = getattr(worker, "exitcode", None)
                raise WorkerError(
                    f"Prefetch {who} ({worker.name}, pid {getattr(worker, 'pid', '-')}) died with "
                    f"exit code {code} while producing {what}; no data was lost before it, "
                    "resume from the stream's get_state()"
                ) from None


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
            isinstance(data_stream, DataStream) and data_stream.iteration_scheme is not None
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

    def _open(self, epoch: int, state: Any) -> _Iter:
        if self.parallel:
            return _ParallelReadIter(self, epoch, state)
        return _ReadAheadIter(self, epoch, state)
