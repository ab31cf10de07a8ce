"""The main loop: epochs of batches through an algorithm, with extensions (Blocks' MainLoop).

Event order (as in Blocks)::

    before_training                      (on_resumption instead, when resuming)
    per epoch:  before_epoch
                per batch: before_batch(batch) -> step -> iterations_done += 1
                           -> after_batch(batch)
                after_epoch
    after_training                       (when training finished cleanly)
    on_interrupt                         (Ctrl-C / SIGTERM, before after_training)
    on_error(exception)                  (an exception escaped; it is re-raised)

The first Ctrl-C (SIGINT) finishes the current epoch, a second one or a
SIGTERM finishes the current batch; training then ends cleanly (extensions
such as a checkpoint run ``on_interrupt`` and ``after_training``). The
handlers stay installed until those have run, so a signal that arrives
while the final checkpoint is written only marks the run interrupted. A
third Ctrl-C exits at once with status 130 (``os._exit``: the checkpoints
already committed stay valid; one being written is left as a ``.tmp-``
directory that the next run removes). SIGUSR1 asks for a checkpoint now:
after the current batch every extension with an ``on_save_request()``
method (:class:`~bricks.extensions.checkpoint.Checkpoint`) saves, and
training goes on.

>>> import numpy as np
>>> from bricks.algorithms import GradientDescent, Scale
>>> from bricks.extensions import FinishAfter
>>> data = [{"x": np.full((2,), float(i), np.float32)} for i in range(5)]
>>> algorithm = GradientDescent(
...     cost=lambda p, x: ((p["w"] - x) ** 2).mean(),
...     parameters={"w": np.zeros(2, np.float32)}, step_rule=Scale(0.1))
>>> loop = MainLoop(algorithm, data, extensions=[FinishAfter(after_n_epochs=2)])
>>> loop.run()
>>> loop.log.status["iterations_done"], loop.log.status["epoch_ends"]
(10, [5, 10])
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from bricks.errors import MainLoopError, MissingAttributeError, NonFiniteCostError
from bricks.log import TrainingLog
from bricks.main_loop._signals import SignalHandling

__all__ = ["MainLoop", "TrainingFinish"]

logger = logging.getLogger(__name__)


def _agreement() -> Any:
    """An agreement on interrupts when several processes train together, else ``None``."""
    import sys

    if "jax" not in sys.modules:  # a loop without jax (a numpy algorithm) is one process
        return None
    from bricks.distributed import Agreement, process_count

    return Agreement(2) if process_count() > 1 else None


def _watchdog(setting: Any) -> Any:
    """The step watchdog: the one given, else a default one when several processes train."""
    import sys

    if setting is not None or "jax" not in sys.modules:
        return setting or None
    from bricks.distributed import StepWatchdog, process_count

    return StepWatchdog() if process_count() > 1 else None


_MAX_PENDING = 64  # read-backs left pending between steps, at most


class TrainingFinish(Exception):
    """Raised inside the loop to stop training cleanly (not an error)."""


class MainLoop(SignalHandling):
    """Train ``algorithm`` on batches of ``data_stream`` while extensions watch.

    Args:
        algorithm: a :class:`~bricks.algorithms.GradientDescent` (or anything
            with ``initialize()`` and ``process_batch(batch)``).
        data_stream: yields dict batches ``{source: array}``; a Fuel-like
            stream with ``get_epoch_iterator(as_dict=True)``, or any
            re-iterable of dicts. ``get_state()/set_state()`` are used for
            checkpoints when the stream has them.
        model: what is being trained (a graph or a brick), for extensions.
        extensions: :class:`~bricks.extensions.TrainingExtension` objects,
            run in the given order at every event.
        log: a :class:`~bricks.log.TrainingLog`; ``log_path`` makes one that
            persists to a JSON-lines file.
        steps_per_call: at most this many training steps run in one compiled
            call (a ``lax.scan``) whenever no extension needs control between
            them; results and logs are the same as with ``1``. One scan of
            this length is compiled: a shorter stretch (before an extension
            needs control, or at an epoch's end) runs in it with the missing
            steps masked, so no other program is compiled.
        watchdog: a :class:`~bricks.distributed.StepWatchdog` that stops every process
            when a step overruns its deadline, naming the stuck one (default: a
            default one when several processes train; ``False``: none).

    Attributes:
        log, status (``log.status``), extensions, algorithm, data_stream,
        model, timings (``read_data`` and ``train`` seconds of the last batch).
    """

    def __init__(
        self,
        algorithm: Any,
        data_stream: Any,
        model: Any = None,
        extensions: Sequence[Any] | None = None,
        log: TrainingLog | None = None,
        log_path: str | None = None,
        steps_per_call: int = 1,
        watchdog: Any = None,
    ) -> None:
        if log is not None and log_path is not None:
            raise MainLoopError("give MainLoop either log= or log_path=, not both")
        self.algorithm = algorithm
        self.data_stream = data_stream
        self._model = model
        self.extensions = list(extensions or [])
        self.log = log if log is not None else TrainingLog(log_path)
        if int(steps_per_call) < 1:
            raise MainLoopError(f"steps_per_call must be >= 1, got {steps_per_call!r}")
        self.steps_per_call = int(steps_per_call)
        #: how many batches the last step call trained on (``after_batch`` follows it),
        #: and how many step calls this loop made
        self.chunk_length = 1
        self.step_calls = 0
        self._in_flight = 0
        self.timings = {"read_data": 0.0, "train": 0.0, "read_data_total": 0.0, "train_total": 0.0}
        self._epoch_iterator: Iterator | None = None
        self._old_handlers: dict[int, Any] = {}
        self._interrupts = 0
        self._save_requested = False
        self._readbacks: list[tuple[Callable[[], None], Callable[[], bool] | None]] = []
        self._agreement: Any = None
        self.watchdog, self._watchdog = watchdog, None
        self._local_interrupts = [False, False]  # batch, epoch: what this process received
        names = [getattr(e, "name", type(e).__name__) for e in self.extensions]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise MainLoopError(
                f"extension names must be unique to checkpoint them; repeated: {duplicates}; "
                "pass name=... to tell them apart"
            )
        for ext in self.extensions:
            if hasattr(ext, "set_main_loop"):
                ext.set_main_loop(self)
            else:
                ext.main_loop = self

    @property
    def status(self) -> dict[str, Any]:
        return self.log.status

    @property
    def model(self) -> Any:
        """The model given to the constructor; without one, reading it raises
        :class:`~bricks.errors.MissingAttributeError` (an ``AttributeError``, as in Blocks)."""
        if self._model is None:
            raise MissingAttributeError(
                "this MainLoop was built without a model; pass model=... to MainLoop"
            )
        return self._model

    @model.setter
    def model(self, value: Any) -> None:
        self._model = value

    @property
    def iteration_state(self) -> Iterator | None:
        """The current epoch iterator (Blocks' name)."""
        return self._epoch_iterator

    def find_extension(self, name: str) -> Any:
        """The extension called ``name``."""
        for ext in self.extensions:
            if getattr(ext, "name", None) == name:
                return ext
        raise MainLoopError(
            f"no extension named {name!r}; have {[getattr(e, 'name', e) for e in self.extensions]}"
        )

    # -- running -------------------------------------------------------------
    def run(
        self, resume: str | os.PathLike | tuple[Mapping[str, Any], Mapping[str, Any]] | None = None
    ) -> None:
        """Train until an extension or an interrupt stops it, or the stream is done.

        Args:
            resume: a checkpoint path (a ``ckpt-NNNNNNNNN`` directory, or a
                directory of them: the newest good one is used; see
                :mod:`bricks.checkpoint`), or a ``(json_state, arrays)`` pair
                from :meth:`get_state`, to restore first; ``on_resumption`` is
                dispatched instead of ``before_training``.
        """
        if isinstance(resume, (str, os.PathLike)):
            from bricks.checkpoint import restore_main_loop  # same (training) layer

            restore_main_loop(self, resume)
        elif resume is not None:
            self.set_state(*resume)
        self._install_signal_handlers()
        self._agreement, self._local_interrupts = _agreement(), [False, False]
        self._watchdog = _watchdog(self.watchdog)
        if self._watchdog is not None:
            self._watchdog.start()
        try:
            try:
                if not self.status["training_started"]:
                    self._run_extensions("before_training")
                    self.algorithm.initialize()
                    # an extension (Load) may have restored a started run: as Blocks,
                    # that is a resumption too
                    restored = self.status["training_started"]
                    self.status["training_started"] = True
                    if restored:
                        self._mark_resumed()
                        self._run_extensions("on_resumption")
                else:
                    self._mark_resumed()
                    # idempotent; GradientDescent binds the bricks to its parameters again
                    self.algorithm.initialize()
                    self._run_extensions("on_resumption")
                self.log.flush(with_status=True)
                while self._run_epoch_or_roll_back():
                    pass
                self._finish_check()
            except TrainingFinish:
                self._finish_check()
                self.log.current_row["training_finished"] = True
        except BaseException as error:
            # a collective that lost its peer: name the process that went silent (a
            # signal meanwhile only sets a flag: the handlers are still the loop's)
            lost = None if self._watchdog is None else self._watchdog.explain(error)
            self._restore_signal_handlers()
            try:  # the rows of the steps that ran stay complete
                self.settle_readbacks()
            except Exception:  # the original error is what the user must see
                self._readbacks.clear()
            self.log.current_row["got_exception"] = traceback.format_exc()
            logger.error("Error during training: %s", error)
            for ext in self.extensions:  # each one runs even if another fails
                try:
                    ext.dispatch("on_error", error)
                except Exception:  # the original error is what the user must see
                    logger.error("%r failed in on_error:\n%s", ext, traceback.format_exc())
            try:
                self._write_back()
                self.log.close()
            except Exception:
                logger.error("Could not close the log:\n%s", traceback.format_exc())
            if lost is not None:
                raise lost from error
            raise
        else:
            self.settle_readbacks()
            self.status["finished_cleanly"] = True
            if self.status["epoch_interrupt_received"] or self.status["batch_interrupt_received"]:
                self._run_extensions("on_interrupt")
            self._write_back()
            self._run_extensions("after_training")
            self.log.close()
        finally:
            self._restore_signal_handlers()
            if self._watchdog is not None:
                self._watchdog.stop()

    def _mark_resumed(self) -> None:
        """Status of a run that goes on: where it resumed, no finish or interrupt pending."""
        self.status["resumed_from"] = self.status["iterations_done"]
        self.status["training_finish_requested"] = False
        self.status["epoch_interrupt_received"] = False
        self.status["batch_interrupt_received"] = False

    def _write_back(self) -> None:
        write_back = getattr(self.algorithm, "write_back", None)
        if write_back is not None:
            write_back()

    def _finish_check(self) -> None:
        check = getattr(self.algorithm, "check_finite", None)
        if check is not None:
            check(self.log, wait=True)

    @property
    def iterations_dispatched(self) -> int:
        """The iteration of the newest step handed to the algorithm (``iterations_done``
        but while a step call's batches are not counted yet)."""
        return self.status["iterations_done"] + self._in_flight

    def defer_readback(
        self, finish: Callable[[], None], ready: Callable[[], bool] | None = None
    ) -> None:
        """Run ``finish`` (it completes a log row from a started device read-back) later:
        after the next step is queued, or before anything may read the log.

        :class:`~bricks.extensions.TrainingDataMonitoring` reports every batch
        this way, so the host does not wait for each step before queuing the
        next. The rows are those of the synchronous read: same iterations,
        same values. An extension that never reads the log says so with
        ``reads_log = False``; before any other one runs, at the end of an
        epoch, at checkpoints and at the end of training, pending rows are
        completed. ``ready()`` says whether ``finish`` would not wait: between
        steps only those are completed (in order), so the host never waits
        for the device there, and at most 64 stay pending.
        """
        self._readbacks.append((finish, ready))

    def settle_readbacks(self, wait: bool = True) -> None:
        """Complete the log rows of the pending read-backs, in order: all of them
        (waiting for the device), or with ``wait=False`` those whose values arrived."""
        pending = self._readbacks
        while pending:
            finish, ready = pending[0]
            if not wait and len(pending) <= _MAX_PENDING and ready is not None and not ready():
                return
            pending.pop(0)
            finish()

    def _run_extensions(self, callback_name: str, *args: Any) -> None:
        if callback_name not in ("before_batch", "after_batch"):
            self.settle_readbacks()
            for ext in self.extensions:
                self._dispatch(ext, callback_name, *args)
            return
        done = self.status["iterations_done"] - (callback_name == "after_batch")
        for ext in self.extensions:
            handles = getattr(ext, "handles", None)
            if handles is not None and not handles(callback_name):
                continue  # nothing to do on this event: not even called
            if self._readbacks and getattr(ext, "reads_log", True):
                need = ext.batches_until_needed(done)
                if need is not None and need <= 1:
                    self.settle_readbacks()
            self._dispatch(ext, callback_name, *args)

    def _dispatch(self, ext: Any, callback_name: str, *args: Any) -> None:
        watchdog = self._watchdog
        if watchdog is not None:  # an extension call is not step time
            watchdog.enter(getattr(ext, "name", None) or type(ext).__name__)
        try:
            ext.dispatch(callback_name, *args)
        finally:
            if watchdog is not None:
                watchdog.leave()

    def _new_epoch_iterator(self) -> Iterator:
        stream = self.data_stream
        getter = getattr(stream, "get_epoch_iterator", None)
        if getter is not None:
            try:
                return iter(getter(as_dict=True))
            except TypeError:
                return iter(getter())
        if isinstance(stream, Iterable):
            return iter(stream)
        raise MainLoopError(
            "data_stream must have get_epoch_iterator() or be iterable, "
            f"got {type(stream).__name__}"
        )

    def _run_epoch_or_roll_back(self) -> bool:
        """One epoch; a non-finite cost is offered to extensions with an
        ``on_nonfinite(error)`` method
        (:class:`~bricks.extensions.rollback.RollbackOnNonFinite`):
        one that returns a callable has it restore an earlier state, and training
        goes on from there."""
        try:
            return self._run_epoch()
        except NonFiniteCostError as error:
            self._readbacks.clear()  # rows of steps that a rollback replaces
            for ext in self.extensions:
                handler = getattr(ext, "on_nonfinite", None)
                restore = handler(error) if callable(handler) else None
                if restore is not None:
                    restore()
                    return True
            raise

    def skip_batches(self, count: int) -> list[Any]:
        """Draw ``count`` batches from the data stream without training on them.

        Used after restoring a state (a rollback) to leave out the batches
        that followed it. Returns the stream's ``get_state()`` before each
        skipped batch (``None`` for a stream without one): what identifies
        it. Stops early at the end of an epoch.
        """
        if not self.status["epoch_started"]:
            self._epoch_iterator = self._new_epoch_iterator()
            self.status["epoch_started"] = True
            self.status["received_first_batch"] = False
            self._run_extensions("before_epoch")
        elif self._epoch_iterator is None:
            self._epoch_iterator = self._new_epoch_iterator()
        getter = getattr(self.data_stream, "get_state", None)
        where: list[Any] = []
        for _ in range(int(count)):
            state = getter() if callable(getter) else None
            try:
                self._next_batch()
            except StopIteration:
                break
            where.append(state)
        return where

    def _run_epoch(self) -> bool:
        if not self.status["epoch_started"]:
            self.status["received_first_batch"] = False
            try:
                self._epoch_iterator = self._new_epoch_iterator()
            except StopIteration:
                return False
            self.status["epoch_started"] = True
            self._run_extensions("before_epoch")
        elif self._epoch_iterator is None:  # resumed mid-epoch: the stream knows where
            self._epoch_iterator = self._new_epoch_iterator()
        while self._run_iteration():
            pass
        self.status["epoch_started"] = False
        self.status["epochs_done"] += 1
        self.status["epoch_ends"].append(self.status["iterations_done"])
        self._epoch_iterator = None
        self.settle_readbacks()
        self._finish_check()
        self._run_extensions("after_epoch")
        self.log.flush(with_status=True)
        self._check_finish_training("epoch")
        return True

    def _chunk_size(self) -> int:
        if self.steps_per_call == 1:
            return 1
        done = self.status["iterations_done"]
        k = self.steps_per_call
        for ext in self.extensions:
            need = ext.batches_until_needed(done)
            if need is not None:
                k = min(k, max(int(need), 1))
        return k

    def _next_batch(self) -> Any:
        return next(self._epoch_iterator)

    def _run_iteration(self) -> bool:
        k = self._chunk_size()
        start = time.perf_counter()
        batches = []
        if k > 1:  # in-memory data: the k batches in one buffer, stacked in place
            read_ahead = getattr(self._epoch_iterator, "read_ahead", None)
            if read_ahead is not None:
                read_ahead(k)
        try:
            while len(batches) < k:
                batches.append(self._next_batch())
        except StopIteration:
            if not batches:
                if not self.status["received_first_batch"]:
                    raise MainLoopError(
                        "the epoch iterator yielded no batches; is the data stream empty?"
                    ) from None
                return False
        read = time.perf_counter()
        self.status["received_first_batch"] = True
        self._run_extensions("before_batch", batches[0])
        if self.steps_per_call == 1:
            self.algorithm.process_batch(batches[0])
        elif not hasattr(self.algorithm, "process_batches"):
            for batch in batches:
                self.algorithm.process_batch(batch)
        else:  # a short chunk (the epoch's end) runs masked in the same compiled scan
            self.algorithm.process_batches(batches, length=self.steps_per_call)
        self._in_flight = len(batches)  # dispatched, not yet counted as done
        self.step_calls += 1
        if self._readbacks:  # earlier steps' rows, if they arrived: the next step is queued
            self.settle_readbacks(wait=False)
        self.status["iterations_done"] += len(batches)
        self._in_flight = 0
        self.chunk_length = len(batches)
        timings = self.timings
        timings["read_data"] = read - start
        timings["train"] = time.perf_counter() - read
        timings["read_data_total"] += timings["read_data"]
        timings["train_total"] += timings["train"]
        check = getattr(self.algorithm, "check_finite", None)
        if check is not None:
            check(self.log, wait=False)
        self._run_extensions("after_batch", batches[-1])
        if self._save_requested:
            self._save_requested = False
            for ext in self.extensions:
                request = getattr(ext, "on_save_request", None)
                if callable(request):
                    request()
        if self.log._pending:
            self.log.flush()
        if self._agreement is not None:
            self._agree_on_interrupts()
        if self._watchdog is not None:
            self._watchdog.beat(self.status["iterations_done"])
        self._check_finish_training("batch")
        return True

    def _agree_on_interrupts(self) -> None:
        """Several processes: an interrupt that reached one of them stops all, after
        one agreed batch (each batch contributes its flags, the previous batch's
        agreement counts; see :class:`bricks.distributed.Agreement`)."""
        status, local = self.status, self._local_interrupts
        local[0] |= status["batch_interrupt_received"]
        local[1] |= status["epoch_interrupt_received"]
        batch, epoch = self._agreement.step(local)
        status["batch_interrupt_received"], status["epoch_interrupt_received"] = batch, epoch

    def _check_finish_training(self, level: str) -> None:
        if self.status["training_finish_requested"] or self.status["batch_interrupt_received"]:
            raise TrainingFinish
        if level == "epoch" and self.status["epoch_interrupt_received"]:
            raise TrainingFinish

    # -- checkpointing -------------------------------------------------------
    def get_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Everything needed to resume exactly: ``(json_state, arrays)``.

        ``json_state`` holds the log (status and rows), the algorithm's
        JSON part, the data stream's state and each extension's state by
        name; ``arrays`` is a flat ``{name: numpy array}`` mapping (parameters,
        optimizer state, RNG key, monitoring accumulators).
        """
        self.settle_readbacks()
        self._finish_check()
        algo_json, arrays = {}, {}
        if hasattr(self.algorithm, "get_state"):
            algo_json, algo_arrays = self.algorithm.get_state()
            arrays.update({f"algorithm/{k}": v for k, v in algo_arrays.items()})
        stream_state = None
        if hasattr(self.data_stream, "get_state"):
            stream_state = self.data_stream.get_state()
        state = {
            "format": "bricks.main_loop/1",
            "log": self.log.checkpoint_state(),  # a file-backed log: where its file stands
            "algorithm": algo_json,
            "data_stream": stream_state,
            "extensions": {ext.name: ext.get_state() for ext in self.extensions},
        }
        return state, arrays

    def set_state(self, state: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
        """Restore :meth:`get_state`'s output; the next :meth:`run` resumes."""
        if state.get("format") != "bricks.main_loop/1":
            raise MainLoopError(f"not a main-loop state (format={state.get('format')!r})")
        self.log.set_state(state["log"])
        if hasattr(self.algorithm, "set_state"):
            prefix = "algorithm/"
            self.algorithm.set_state(
                state["algorithm"],
                {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)},
            )
        if state.get("data_stream") is not None:
            if not hasattr(self.data_stream, "set_state"):
                raise MainLoopError(
                    "the checkpoint has a data-stream state but the stream has no set_state()"
                )
            self.data_stream.set_state(state["data_stream"])
        saved = state.get("extensions", {})
        for ext in self.extensions:
            if ext.name in saved:
                ext.set_state(saved[ext.name])
        self._epoch_iterator = None
