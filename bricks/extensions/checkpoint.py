"""Checkpoint and Load: save the complete training state, resume it exactly.

``Checkpoint(path, every_n_batches=100)`` writes the main loop's whole state
(parameters by path, optimizer state, RNG key, log, the data stream's
position mid-epoch, every extension's state, the configuration hash and the
library versions) into ``path/ckpt-NNNNNNNNN/`` with
:class:`bricks.checkpoint.CheckpointManager`: atomically, checksummed, in
open formats, under a directory lock. By default it also saves
``after_training`` and ``on_interrupt`` (SIGTERM / Ctrl-C finish the batch,
save, and :func:`bricks.checkpoint.exit_status` gives the exit code 75).

Resume in a new process with ``MainLoop(...).run(resume=path)`` (it
dispatches ``on_resumption``) or with a :class:`Load` extension placed first.

>>> ckpt = Checkpoint("run/", every_n_batches=100, keep_last=3)
>>> sorted({name for name, _, _ in ckpt.conditions})
['after_batch', 'after_training', 'on_interrupt']
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bricks.checkpoint import (
    CheckpointManager,
    PendingPayload,
    main_loop_payload,
    main_loop_snapshot,
    restore_main_loop,
)
from bricks.errors import (
    CheckpointCorruptError,
    CheckpointError,
    CheckpointNotFoundError,
    CheckpointWaitTimeoutError,
    CheckpointWriteError,
)
from bricks.extensions._separately import check_separately, write_separately
from bricks.extensions.base import SimpleExtension

__all__ = ["Checkpoint", "Load"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while a checkpoint is written; deliver them after the commit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        received.append(signum)
        logger.warning(
            "signal %d received while writing a checkpoint; it takes effect once the "
            "checkpoint is committed",
            signum,
        )

    old = {
        s: signal.signal(s, hold)
        for s in (signal.SIGINT, signal.SIGTERM)
        # the main loop's handlers only set flags (a third Ctrl-C exits at once, as asked)
        if not getattr(signal.getsignal(s), "safe_during_save", False)
    }
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(received):
            handler = old[s]
            if callable(handler):
                handler(s, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), s)


#: callbacks of periodic saves, which ``if_busy="skip"`` may skip
_PERIODIC = frozenset(["after_batch", "after_epoch"])


class Checkpoint(SimpleExtension):
    """Save the complete training state (Blocks' ``Checkpoint``).

    Args:
        path: the run's checkpoint directory; each save is a
            ``ckpt-NNNNNNNNN`` directory in it (``N``: iterations done).
        keep_last: keep only this many newest checkpoints (``None``: all).
        keep_best: also keep this many best checkpoints by ``metric``.
        metric: a log record (e.g. ``"valid_cost"``) ranking checkpoints
            for ``keep_best``; read from the log's current row at save time.
        mode: ``"min"`` or ``"max"`` for ``metric``.
        async_save: take a snapshot of the state at the save call (a copy on
            the device, queued behind the steps already dispatched; the save
            call does not wait for the device) and write it in a background
            thread while training goes on; the values saved are those of the
            save call. The end of training, an interrupt, an explicit
            :meth:`save` and the end of the process wait for a pending write.
        if_busy: what a periodic asynchronous save (``after_batch``,
            ``after_epoch``) does when the previous write is still going on:
            ``"skip"`` (default) skips it, so training never waits for the
            disk (the skipped steps are in :attr:`skipped`); ``"wait"``
            waits for the previous write, then saves.
        save_separately: also write these into the checkpoint directory, in
            open formats, at every save: ``"parameters"`` (``parameters.npz``
            for inference), ``"model"``, ``"log"`` (see
            :mod:`bricks.extensions._separately`).
        on_error: what a failed write (a full disk:
            :class:`~bricks.errors.CheckpointWriteError`) does: ``"stop"``
            (default) raises it and training stops; ``"warn"`` logs it and
            training goes on (the previous checkpoints stay valid).
        exit_wait_s: how long the end of training (and an error) waits for
            a pending asynchronous write before giving up with
            :class:`~bricks.errors.CheckpointWaitTimeoutError` (the previous
            checkpoint stays valid; the runner then exits with status 74).
        name: the extension's name.
        **conditions: when to save (``every_n_batches=...``,
            ``every_n_epochs=...``, ...); ``after_training`` and
            ``on_interrupt`` default to ``True``. A condition added with a
            destination argument (``add_condition(["after_batch"],
            OnLogRecord("valid_cost_best_so_far"), ("best/",))``) saves
            into that directory instead (synchronously, keeping its newest
            checkpoint only). Every save appends its directory to the log
            record ``saved_to`` of the row (Blocks' record).

    Attributes:
        manager: the :class:`~bricks.checkpoint.CheckpointManager`.
        last_path: the newest checkpoint written (a pending async one included).
        save_times: seconds the training loop spent in each save call.
        skipped: iterations at which a periodic asynchronous save was skipped
            because the previous write was still going on (``if_busy="skip"``).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        keep_last: int | None = None,
        keep_best: int | None = None,
        metric: str | None = None,
        mode: str = "min",
        async_save: bool = False,
        if_busy: str = "skip",
        exit_wait_s: float = 600.0,
        on_error: str = "stop",
        name: str | None = None,
        save_separately: Sequence[str] = (),
        **conditions: Any,
    ) -> None:
        if if_busy not in ("skip", "wait"):
            raise CheckpointError(f"if_busy must be 'skip' or 'wait', got {if_busy!r}")
        conditions.setdefault("after_training", True)
        conditions.setdefault("on_interrupt", True)
        super().__init__(name=name, **conditions)
        self.path = Path(path)
        self.save_separately = list(save_separately)
        self._destinations: dict[str, CheckpointManager] = {}
        self.metric = metric
        self.manager = CheckpointManager(path, keep_last, keep_best, metric, mode)
        self.async_save = bool(async_save)
        self.if_busy = if_busy
        if not float(exit_wait_s) > 0:
            raise CheckpointError(
                f"exit_wait_s must be a positive number of seconds, got {exit_wait_s!r}"
            )
        self.exit_wait_s = float(exit_wait_s)
        if on_error not in ("stop", "warn"):
            raise CheckpointError(f"on_error must be 'stop' or 'warn', got {on_error!r}")
        self.on_error = on_error
        self.failures: list[str] = []
        self.last_path: Path | None = None
        self.save_times: list[float] = []
        self.skipped: list[int] = []
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._saved_at: tuple[Any, ...] | None = None

    # -- events -----------------------------------------------------------------
    def dispatch(self, callback_name: str, *args: Any) -> None:
        if callback_name in ("before_training", "on_resumption"):
            self.manager.acquire()  # a second run on this directory stops here
        try:
            super().dispatch(callback_name, *args)
        finally:
            if callback_name in ("after_training", "on_error"):
                try:
                    self.wait(timeout=self.exit_wait_s)
                finally:
                    if self._thread is None:  # a write past exit_wait_s keeps the lock
                        self.manager.release()
                    for manager in self._destinations.values():
                        manager.release()

    def do(self, which_callback: str, *args: Any) -> None:
        _, destination = self.parse_args(which_callback, args)
        if destination:
            self.save_to(destination[0])
            return
        check_separately(self.main_loop, self.save_separately)
        done = int(self.main_loop.status["iterations_done"])
        if which_callback == "after_training" and self._saved_at == self._moment():
            return  # nothing changed since the last checkpoint: no second state of this iteration
        if (
            self.async_save
            and self.if_busy == "skip"
            and which_callback in _PERIODIC
            and self._thread is not None
            and self._thread.is_alive()
        ):
            self.skipped.append(done)
            logger.info(
                "checkpoint at iteration %d skipped: the previous one is still being written",
                done,
            )
            return
        self.save()
        self._saved_at = self._moment()
        if self.save_separately:
            write_separately(self.main_loop, self.save_separately, self.path)
        self._note_saved_to(self.path)

    def _note_saved_to(self, path: str | os.PathLike) -> None:
        row = self.main_loop.log.current_row
        row["saved_to"] = list(row.get("saved_to", [])) + [str(path)]

    def save_to(self, destination: str | os.PathLike) -> Path:
        """Write a checkpoint into the directory ``destination`` now, keeping only it there.

        Used by conditions given a destination argument (e.g. the best
        model so far); synchronous, with ``save_separately`` written too.
        """
        check_separately(self.main_loop, self.save_separately)
        key = str(destination)
        manager = self._destinations.get(key)
        if manager is None:
            manager = self._destinations[key] = CheckpointManager(destination, keep_last=1)
            manager.acquire()
        self.wait()
        state, arrays, meta = main_loop_payload(self.main_loop)
        meta["extension"] = self.name
        with _signals_deferred():
            path = manager.save(int(meta["iterations_done"]), state, arrays, meta, {})
        if self.save_separately:
            write_separately(self.main_loop, self.save_separately, Path(destination))
        self._note_saved_to(destination)
        return path

    # -- saving -----------------------------------------------------------------
    def _metrics(self) -> dict[str, float]:
        if self.metric is None:
            return {}
        value = self.main_loop.log.current_row.get(self.metric)
        try:
            return {} if value is None else {self.metric: float(np.asarray(value))}
        except (TypeError, ValueError):
            return {}

    def save(self) -> Path | None:
        """Write a checkpoint of the main loop now (or start writing it, if async).

        Returns:
            the checkpoint's path; ``None`` for an asynchronous save (see
            :attr:`last_path` after :meth:`wait`).
        """
        start = time.perf_counter()
        self.wait()
        metrics = self._metrics()
        pending = main_loop_snapshot(self.main_loop) if self.async_save else None
        if pending is not None:
            step = int(self.main_loop.status["iterations_done"])
            self._thread = threading.Thread(
                target=self._write_pending,
                args=(step, pending, metrics),
                name=f"bricks-checkpoint-{step}",
                daemon=False,  # the interpreter waits for it at exit
            )
            self._thread.start()
            self.save_times.append(time.perf_counter() - start)
            return None
        state, arrays, meta = main_loop_payload(self.main_loop, copy=self.async_save)
        step = int(meta["iterations_done"])
        meta["extension"] = self.name
        if self.async_save:  # an algorithm without a device state: host copies
            self._thread = threading.Thread(
                target=self._write,
                args=(step, state, arrays, meta, metrics),
                name=f"bricks-checkpoint-{step}",
                daemon=False,
            )
            self._thread.start()
            self.save_times.append(time.perf_counter() - start)
            return None
        with _signals_deferred():
            self._write(step, state, arrays, meta, metrics)
        self.save_times.append(time.perf_counter() - start)
        if self._error is not None:
            error, self._error = self._error, None
            if self._tolerated(error):
                return None
            raise error
        return self.last_path

    def _tolerated(self, error: BaseException) -> bool:
        """With ``on_error="warn"``, a failed write is logged and training goes on."""
        if self.on_error != "warn" or not isinstance(error, CheckpointWriteError):
            return False
        logger.warning("checkpoint not written, training goes on (on_error='warn'): %s", error)
        self.failures.append(str(error))
        return True

    def _write_pending(
        self, step: int, pending: PendingPayload, metrics: Mapping[str, float]
    ) -> None:
        try:
            state, arrays, meta = pending.result()  # waits for the device copies
        except BaseException as error:  # re-raised in the training thread
            self._error = error
            return
        if pending.nonfinite_at is not None:  # MainLoop raises NonFiniteCostError itself
            logger.warning(
                "checkpoint at iteration %d not written: the cost was non-finite at "
                "iteration %d, so the state stopped changing there",
                step,
                pending.nonfinite_at,
            )
            return
        meta["extension"] = self.name
        self._write(step, state, arrays, meta, metrics)

    def _write(
        self,
        step: int,
        state: Mapping[str, Any],
        arrays: Mapping[str, Any],
        meta: Mapping[str, Any],
        metrics: Mapping[str, float],
    ) -> None:
        try:
            self.last_path = self.manager.save(step, state, arrays, meta, metrics)
            logger.info("checkpoint written: %s", self.last_path)
        except BaseException as error:  # re-raised in the training thread
            self._error = error

    def on_save_request(self) -> None:
        """Save now, between two batches (the main loop calls it on SIGUSR1)."""
        done = int(self.main_loop.status["iterations_done"])
        if self._saved_at == self._moment():
            return  # this iteration's state is saved already
        logger.info("checkpoint requested (SIGUSR1) at iteration %d", done)
        self.save()
        self._saved_at = self._moment()

    def _moment(self) -> tuple[Any, ...]:
        """What tells two saves of one iteration apart (an epoch end, a finish request)."""
        status = self.main_loop.status
        return (
            int(status["iterations_done"]),
            int(status["epochs_done"]),
            bool(status["training_finish_requested"]),
            bool(status["epoch_interrupt_received"] or status["batch_interrupt_received"]),
        )

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a pending asynchronous save; re-raise its error, if any.

        Args:
            timeout: give up after this many seconds.

        Raises:
            CheckpointWaitTimeoutError: the write took longer than ``timeout``.
        """
        thread, self._thread = self._thread, None
        if thread is not None:
            if thread.is_alive():
                logger.warning(
                    "waiting for %s (into %s) to finish%s",
                    thread.name,
                    self.path,
                    "" if timeout is None else f", at most {timeout:g} s",
                )
            with _signals_deferred():
                thread.join(timeout)
            if thread.is_alive():
                self._thread = thread
                raise CheckpointWaitTimeoutError(
                    f"the checkpoint write {thread.name} into {self.path} did not finish within "
                    f"exit_wait_s={timeout:g} s; the previous checkpoint stays valid (a slow or "
                    "hung disk? raise Checkpoint(exit_wait_s=...) to wait longer)"
                )
        if self._error is not None:
            error, self._error = self._error, None
            if self._tolerated(error):
                return
            if isinstance(error, CheckpointWriteError):
                raise error
            raise CheckpointError(
                f"writing a checkpoint into {self.path} failed: {error}"
            ) from error


class Load(SimpleExtension):
    """Restore the complete training state before training starts (Blocks' ``Load``).

    Put it first among the extensions. It restores the newest good
    checkpoint under ``path`` in ``before_training``; training then goes on
    with the very next batch, after ``on_resumption`` (as Blocks, and as
    ``MainLoop.run(resume=path)``). The log is restored as saved; the main
    loop then sets ``resumed_from`` and clears the finish and interrupt
    flags. A path that is a file (not a checkpoint directory) raises
    :class:`~bricks.errors.CheckpointCorruptError` even with ``missing_ok``.

    Args:
        path: a checkpoint or a directory of them.
        strict: fail when the newest checkpoint is damaged instead of falling
            back to the previous one.
        missing_ok: start from scratch when there is no checkpoint yet (the
            first launch of a job that is restarted after preemption).
        **kwargs: conditions; ``before_training`` defaults to ``True``.
    """

    def __init__(
        self, path: str | os.PathLike, strict: bool = False, missing_ok: bool = True, **kwargs: Any
    ) -> None:
        kwargs.setdefault("before_training", True)
        super().__init__(**kwargs)
        self.path = Path(path)
        self.strict, self.missing_ok = strict, missing_ok
        self.loaded_from: Path | None = None

    def do(self, which_callback: str, *args: Any) -> None:
        if self.path.is_file():  # never "no checkpoint yet": a file is not a checkpoint
            raise CheckpointCorruptError(
                f"cannot load {self.path}: it is a file, not a checkpoint directory "
                "(bricks checkpoints are directories written by Checkpoint; Blocks' "
                ".tar pickles are not read)"
            )
        try:
            # the log comes back as saved; MainLoop.run marks the resumption
            # (resumed_from, finish and interrupt flags) as Blocks' log.resume() did
            self.loaded_from = restore_main_loop(self.main_loop, self.path, strict=self.strict)
        except CheckpointNotFoundError:
            if not self.missing_ok:
                raise
            logger.info("no checkpoint in %s yet: training from scratch", self.path)
