"""Worker pools of :class:`~bricks.data.Prefetch`: started once, fed epoch after epoch.

A :class:`WorkerPool` is a set of worker processes (or threads) that a
``Prefetch`` starts at its first epoch and keeps for every later one. A
new epoch is a message to the workers: a *generation* number that tags its
requests (or, for a whole stream run in a worker, its epoch and position).
Each worker opens its dataset once (an HDF5 file stays open) and reads
until the pool is closed.

Abandoning an epoch bumps a shared generation counter; the workers skip
the requests of older generations without reading them, and the main
process drops whatever of them is still queued. Only one epoch iterator
uses a pool at a time; a second, concurrent epoch iterator gets a pool of
its own.

Batches come back from worker processes through shared memory
(:mod:`bricks.data._shared_memory`).

The main script: a worker process started by ``forkserver`` or ``spawn``
imports the main script only when the dataset (or stream) it is sent
refers to something defined there; a script without an
``if __name__ == "__main__":`` guard then gets a :class:`~bricks.errors.WorkerError`
that says to add one, before any worker starts.
"""

from __future__ import annotations

import ast
import errno
import io
import multiprocessing as mp
import os
import pickle
import queue
import signal
import sys
import threading
import time
import traceback
import types
from typing import Any

from bricks.errors import WorkerError

from ._shared_memory import Slots, Writer

__all__ = ["WorkerPool"]

_PRELOADED = False
_NO_MAIN = "bricks-prefetch-nomain"  # workers whose name starts so never import __main__


def _context(start_method: str) -> Any:
    global _PRELOADED
    ctx = mp.get_context(start_method)
    if start_method == "forkserver" and not _PRELOADED:
        ctx.set_forkserver_preload(["numpy", "h5py", "bricks.data"])
        _PRELOADED = True
    return ctx


# --- the main script ---------------------------------------------------------------


def _install_no_main_filter() -> None:
    """Make ``spawn``/``forkserver`` children named ``_NO_MAIN...`` skip importing ``__main__``.

    multiprocessing asks ``spawn.get_preparation_data(name)`` what a child
    must prepare; it names the main script, which the child then runs as
    ``__mp_main__``. Our workers' payload (unpickled by multiprocessing after
    this preparation) needs it only when the payload refers to ``__main__`` (then they are
    not named so); the filter applies to no other process.
    """
    from multiprocessing import spawn

    original = spawn.get_preparation_data
    if getattr(original, "_bricks_filter", False):
        return

    def get_preparation_data(name: str) -> dict:
        data = original(name)
        if name.startswith(_NO_MAIN):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    get_preparation_data._bricks_filter = True  # type: ignore[attr-defined]
    spawn.get_preparation_data = get_preparation_data


class _Pickler(pickle.Pickler):
    """Pickles a payload and records the classes and functions it takes from ``__main__``."""

    def __init__(self, file: Any) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.from_main: list[str] = []

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type | types.FunctionType) and obj.__module__ == "__main__":
            name = obj.__qualname__
            if name not in self.from_main:
                self.from_main.append(name)
        return NotImplemented


def _has_main_guard(path: str) -> bool:
    """Whether the script at ``path`` has a top-level ``if __name__ == "__main__":``."""
    try:
        with open(path, encoding="utf8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return True  # cannot tell: let multiprocessing decide
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            parts = [node.test.left, *node.test.comparators]
            names = {p.id for p in parts if isinstance(p, ast.Name)}
            consts = {p.value for p in parts if isinstance(p, ast.Constant)}
            if names == {"__name__"} and consts == {"__main__"}:
                return True
    return False


def check_payload(payload: Any, what: str, who: str, start_method: str) -> bool:
    """Check that what a worker process needs pickles (multiprocessing sends it so), and
    return whether it needs ``__main__``.

    Raises:
        WorkerError: part of ``payload`` cannot be pickled (the message
            names it), or it refers to the main script in a way worker
            processes cannot follow (no guard, or no script at all).
    """
    pickler = _Pickler(io.BytesIO())
    try:
        pickler.dump(payload)
    except (pickle.PicklingError, TypeError, AttributeError) as error:
        where = _unpicklable(payload, what)
        raise WorkerError(
            f"{who}: Prefetch(processes=True) sends {what} to each worker process by pickling, "
            f"and {where} cannot be pickled ({type(error).__name__}: {error}). Define functions "
            "and classes it holds at module level (no lambdas or local functions), or use "
            "start_method='fork' (no HDF5 file may be open then), or Prefetch(processes=False)"
        ) from error
    needs_main = bool(pickler.from_main)
    if needs_main:
        names = ", ".join(pickler.from_main)
        main = sys.modules.get("__main__")
        path = getattr(main, "__file__", None)
        spec = getattr(main, "__spec__", None)
        if path is None and spec is None:
            raise WorkerError(
                f"{who}: {what} uses {names}, defined in an interactive session (no script "
                "file), which worker processes cannot import. Define them in a module you import, "
                "or use Prefetch(processes=False) or start_method='fork'"
            )
        if path is not None and not _has_main_guard(path):
            raise WorkerError(
                f"{who}: {what} uses {names}, defined in the main script {path}, so each worker "
                "process imports that script, and it has no `if __name__ == \"__main__\":` "
                "guard: every worker would run the whole script again. Put the code that builds "
                "the streams and trains under `if __name__ == \"__main__\":` (definitions stay at "
                "the top), or move these definitions into a module, or use "
                "Prefetch(processes=False)"
            )
    return needs_main


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


# --- worker bodies (module level: picklable) ------------------------------------------


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
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle

    def watch() -> None:
        while _alive(trainer):
            time.sleep(every)
        os._exit(0)

    threading.Thread(target=watch, name="bricks-prefetch-watchdog", daemon=True).start()


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}\n{traceback.format_exc()}"


def _read_worker(
    payload: Any, requests: Any, results: Any, gen: Any, trainer: int | None = None
) -> None:
    """Read requests of a dataset, epoch after epoch, with one open handle."""
    _watch_trainer(trainer)
    writer = Writer()
    handle = dataset = None
    try:
        dataset = payload
        handle = dataset.open()
    except BaseException as e:  # noqa: BLE001 -- reported; the main process raises
        results.put(("fatal", -1, None, _describe(e)))
        return
    try:
        while True:
            msg = requests.get()
            if msg is None:
                break
            g, request, select, slot, forget = msg
            if forget:
                writer.forget(forget)
            name = slot[0] if slot is not None else None
            if gen.value != g:  # an abandoned epoch: skip without reading
                results.put(("skip", g, name, None))
                continue
            try:
                data = dataset.get_data(handle, request)
                if select is not None:
                    data = tuple(data[i] for i in select)
                results.put(("ok", g, name, writer.pack(tuple(data), slot)))
            except BaseException as e:  # noqa: BLE001
                results.put(("error", g, name, _describe(e)))
    finally:
        writer.close()
        dataset.close(handle)


def _stream_worker(
    payload: Any, requests: Any, results: Any, gen: Any, trainer: int | None = None
) -> None:
    """Run whole epochs of a stream; each item goes with the stream's state after it."""
    _watch_trainer(trainer)
    try:
        stream = payload
    except BaseException as e:  # noqa: BLE001
        results.put(("fatal", -1, None, _describe(e)))
        return
    while True:
        msg = requests.get()
        if msg is None:
            break
        g, epoch, state = msg
        if gen.value != g:
            continue
        try:
            inner = stream._open(epoch, state)
            try:
                for item in inner:
                    if gen.value != g:
                        break
                    results.put(("ok", g, None, (item, inner.state())))
                else:
                    results.put(("end", g, None, None))
            finally:
                inner.close()
        except BaseException as e:  # noqa: BLE001
            results.put(("error", g, None, _describe(e)))


# --- the pool -------------------------------------------------------------------------


class _Generation:
    """The generation counter of thread workers (``multiprocessing.Value`` for processes)."""

    value = 0


class WorkerPool:
    """Workers started once and fed epoch after epoch (see the module docstring).

    Args:
        kind: ``"read"`` (workers read requests of a dataset) or ``"stream"``
            (one worker runs whole epochs of a stream).
        payload: the dataset or the stream.
        workers: number of workers.
        depth: items each worker may have read ahead.
        processes: processes (else threads).
        start_method: multiprocessing start method.
        poll: seconds between liveness checks while waiting.
        what: how error messages name the payload (``"the dataset"``).
    """

    def __init__(
        self,
        kind: str,
        payload: Any,
        workers: int,
        depth: int,
        processes: bool,
        start_method: str,
        poll: float,
        what: str,
    ) -> None:
        self.kind, self.n, self.depth, self.processes = kind, workers, depth, processes
        self.poll, self.payload_repr = poll, repr(payload)
        self.busy, self.broken = False, False
        self.workers: list = []
        self.inqs: list = []
        self.outqs: list = []
        self.slots = Slots(cap=2 * workers * depth + 4, enabled=processes and kind == "read")
        target = _read_worker if kind == "read" else _stream_worker
        if processes:
            needs_main = start_method != "fork" and check_payload(  # fork: inherited, never
                payload, what, "Prefetch worker", start_method  # pickled: lambdas are fine
            )
            body = payload
            ctx = _context(start_method)
            if not needs_main:
                _install_no_main_filter()
            prefix = "bricks-prefetch" if needs_main else _NO_MAIN
            self.gen = _shm(lambda: ctx.Value("q", 0, lock=False), "Prefetch worker")
            make_queue, make_worker, trainer = ctx.Queue, ctx.Process, os.getpid()
        else:
            body, prefix, self.gen = payload, "bricks-prefetch", _Generation()
            make_queue, make_worker, trainer = queue.Queue, threading.Thread, None
        self._forget: list[set[str]] = [set() for _ in range(workers)]
        try:
            for k in range(workers):
                who = f"Prefetch worker {k}"
                inq, outq = _shm(make_queue, who), _shm(lambda: make_queue(depth), who)
                worker = make_worker(
                    target=target,
                    args=(body, inq, outq, self.gen, trainer),
                    daemon=True,
                    name=f"{prefix}-{k}",
                )
                self.inqs.append(inq)
                self.outqs.append(outq)
                worker.start()
                self.workers.append(worker)
        except BaseException:
            self.close()
            raise

    # -- epochs ---------------------------------------------------------------------
    def begin(self) -> int:
        """Take the pool for a new epoch; returns the epoch's generation."""
        self.busy = True
        self.gen.value += 1
        return self.gen.value

    def end(self) -> None:
        """The epoch is over or abandoned: workers skip what is left of it."""
        if self.gen is not None:  # else closed already
            self.gen.value += 1
        self.busy = False

    def send_read(self, k: int, g: int, request: Any, select: Any) -> None:
        slot = self.slots.take()
        spec = None if slot is None else (slot.name, slot.size)
        if self.slots.dropped:  # every worker unmaps the slots unlinked since
            for names in self._forget:
                names.update(self.slots.dropped)
            self.slots.dropped = []
        forget, self._forget[k] = tuple(self._forget[k]), set()
        self.inqs[k].put((g, request, select, spec, forget))

    def send_epoch(self, g: int, epoch: int, state: Any) -> None:
        self.inqs[0].put((g, epoch, state))

    def receive(self, k: int, g: int, what: str) -> tuple:
        """The next message of generation ``g`` from worker ``k``: ``(kind, body)``.

        Raises:
            WorkerError: the worker died, or could not load its payload.
        """
        if self.gen is None:
            raise WorkerError(
                f"Prefetch: its workers were stopped (close()) while an epoch was being read, "
                f"before {what}; start a new epoch with get_epoch_iterator(), or resume from "
                "the stream's get_state()"
            )
        while True:
            kind, mg, name, body = self._get(k, what)
            slot = self.slots.release(name)
            if kind == "fatal":
                self.broken = True
                raise WorkerError(
                    f"Prefetch worker {k} ({self._who(k)}) could not load or open "
                    f"{self.payload_repr}:\n{body}"
                )
            if mg != g:
                continue  # left over from an abandoned epoch
            if kind == "ok" and self.kind == "read":
                how, arrays, need = body[0], body[-2], body[-1]
                self.slots.learn(need)
                if how == "shm":
                    return kind, slot.unpack(body[1], arrays)
                return kind, arrays
            return kind, body

    def _who(self, k: int) -> str:
        w = self.workers[k] if k < len(self.workers) else None
        return f"{getattr(w, 'name', '?')}, pid {getattr(w, 'pid', '-')}"

    def _get(self, k: int, what: str) -> tuple:
        q, worker = self.outqs[k], self.workers[k]
        while True:
            try:
                return q.get(timeout=self.poll)
            except queue.Empty:
                if worker.is_alive():
                    continue
                try:  # it may have put its last word just before exiting
                    return q.get(timeout=self.poll)
                except queue.Empty:
                    pass
                self.broken = True
                code = getattr(worker, "exitcode", None)
                hint = ""
                if code == 1 and self.processes:
                    hint = (
                        " (a worker that exits with code 1 as it starts often ran a main script "
                        "that has no `if __name__ == \"__main__\":` guard: see its stderr)"
                    )
                raise WorkerError(
                    f"Prefetch worker {k} ({self._who(k)}) died with exit code {code} while "
                    f"producing {what} of {self.payload_repr}{hint}; no data was lost before "
                    "it, resume from the stream's get_state()"
                ) from None

    # -- shutdown -------------------------------------------------------------------
    def close(self) -> None:
        """Stop the workers and release their queues and shared memory (idempotent)."""
        if self.gen is not None:
            self.gen.value += 1
        for q in self.inqs:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 1.0
        for w, outq in zip(self.workers, self.outqs, strict=False):
            while w.is_alive() and time.monotonic() < deadline:
                _drain(outq)  # a worker blocked on a full queue must get to its stop message
                w.join(timeout=0.02)
            if self.processes and w.is_alive():
                w.terminate()
                w.join(timeout=1.0)
        if self.processes:
            for q in self.inqs + self.outqs:
                q.cancel_join_thread()
                q.close()
        self.slots.close()
        self.workers, self.inqs, self.outqs = [], [], []
        self.gen = None  # its shared memory goes with it
        self.broken = True


def close_pools(pools: list) -> None:
    """Close every pool of ``pools`` (a ``Prefetch`` finalizer; never refers to the stream)."""
    while pools:
        pools.pop().close()


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


def _drain(q: Any) -> None:
    try:
        while True:
            q.get_nowait()
    except (queue.Empty, OSError, ValueError, EOFError):
        pass

