"""Timing and Timestamp.

>>> Timing().conditions[0][0], Timestamp().log_record
('before_epoch', 'timestamp')
"""

from __future__ import annotations

import datetime
import functools
import time
from collections.abc import Callable
from typing import Any

import jax

from bricks.extensions.base import SimpleExtension

__all__ = ["Timing", "Timestamp"]


# the main loop's timings entry where Timing adds the device time it waited for at its
# own points (shared by several Timing extensions of one loop)
_DEVICE_WAIT = "device_wait_total"


def _wait_for_device(algorithm: Any) -> None:
    """Block until the device has finished the steps dispatched so far."""
    current = getattr(algorithm, "current_parameters", None)
    if callable(current):
        try:
            values = current()
        except Exception:  # not initialized yet: nothing dispatched
            return
        jax.block_until_ready(values)


def _synced(method: Callable[..., Any], algorithm: Any) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        # the previous call's device work ends inside this one: the host's work between
        # the two (data, extensions, read-backs) still overlaps the device's
        _wait_for_device(algorithm)
        return method(*args, **kwargs)

    call._timing_synced = True  # type: ignore[attr-defined]
    return call


class Timing(SimpleExtension):
    """Record time spent reading data (waiting for the stream) and training.

    Records (Blocks' names): ``time_read_data_this_epoch``,
    ``time_train_this_epoch``, ``time_read_data_total``,
    ``time_train_total``, ``time_this_epoch`` and, when it fires after a
    batch, ``time_read_data_this_batch`` / ``time_train_this_batch``.

    JAX dispatches a step and returns before the device has run it, so the
    host time of a step call says little. Timing therefore waits for the
    device whenever it fires and counts that wait as training time: "train"
    is the steps' dispatch plus the device work still queued, "read data" is
    the time the loop waited for the stream, and ``time_this_epoch`` is wall
    time with the epoch's work done. Device work that overlapped the host's
    reading of the next batch counts as reading time, so when the device is
    the bottleneck "train" is close to the device time, and when the data is,
    "read data" is. No step waits for the device (the default loop keeps its
    queue of dispatched steps). ``sync=True`` makes each step call wait for
    the previous one, which attributes the time step by step, at the price
    of that queue.

    After a resume the clock starts again: the first ``*_this_epoch``
    records cover the part of the epoch run since the resumption, and the
    ``*_total`` records go on from the totals in the restored log.
    The main loop keeps the running totals, so Timing needs no per-batch
    control. Default conditions: ``before_first_epoch``, ``after_epoch``;
    an epoch schedule given replaces ``after_epoch``: with
    ``every_n_epochs=N`` the ``*_this_epoch`` records cover the ``N`` epochs
    since it last fired.

    Args:
        prefix: prepended to the record names (``prefix_time_...``).
        sync: wait for the device before each step call (see above).
        **kwargs: conditions (see :mod:`bricks.extensions.base`).
    """

    def __init__(self, prefix: str = "", sync: bool = False, **kwargs: Any) -> None:
        defaults = {"before_first_epoch": True, "after_epoch": True}
        super().__init__(default_conditions=defaults, **kwargs)
        self.prefix = prefix + "_" if prefix else ""
        self.sync = sync
        self._epoch_marks = (0.0, 0.0, time.perf_counter())
        self._offsets = (0.0, 0.0)  # the totals of the runs before a resumption

    def set_main_loop(self, main_loop: Any) -> None:
        super().set_main_loop(main_loop)
        algorithm = getattr(main_loop, "algorithm", None)
        if not self.sync or algorithm is None:
            return
        for name in ("process_batch", "process_batches"):
            method = getattr(algorithm, name, None)
            if callable(method) and not getattr(method, "_timing_synced", False):
                setattr(algorithm, name, _synced(method, algorithm))

    def _marks(self) -> tuple[float, float, float]:
        t = self.main_loop.timings
        start = time.perf_counter()
        _wait_for_device(self.main_loop.algorithm)
        now = time.perf_counter()
        # the device's work still queued here is training time too
        t[_DEVICE_WAIT] = t.get(_DEVICE_WAIT, 0.0) + now - start
        return (t["read_data_total"], t["train_total"] + t.get(_DEVICE_WAIT, 0.0), now)

    def dispatch(self, callback_name: str, *args: Any) -> None:
        if callback_name in ("before_training", "on_resumption"):
            # the main loop's clock starts with this run: so does the epoch's
            self._epoch_marks = self._marks()
            if callback_name == "on_resumption":
                log = self.main_loop.log
                self._offsets = (
                    float(log.last_value(self.prefix + "time_read_data_total", 0.0)),
                    float(log.last_value(self.prefix + "time_train_total", 0.0)),
                )
        super().dispatch(callback_name, *args)

    def do(self, which_callback: str, *args: Any) -> None:
        row = self.main_loop.log.current_row
        p = self.prefix
        read, train, now = self._marks()
        if which_callback in ("before_epoch", "before_training"):
            self._epoch_marks = (read, train, now)
            return
        if which_callback == "after_batch":
            row[p + "time_read_data_this_batch"] = self.main_loop.timings["read_data"]
            row[p + "time_train_this_batch"] = self.main_loop.timings["train"]
        if which_callback == "after_epoch":
            r0, t0, w0 = self._epoch_marks
            row[p + "time_read_data_this_epoch"] = read - r0
            row[p + "time_train_this_epoch"] = train - t0
            row[p + "time_this_epoch"] = now - w0
            self._epoch_marks = (read, train, now)
        row[p + "time_read_data_total"] = self._offsets[0] + read
        row[p + "time_train_total"] = self._offsets[1] + train


class Timestamp(SimpleExtension):
    """Write the wall-clock date and time to the log (Blocks' ``Timestamp``).

    Args:
        log_record: the record name (default :attr:`DEFAULT_LOG_RECORD`).
        separator: between date and time (``"2026-01-31 12:00:00.000001"``).
        **kwargs: conditions; they replace the defaults of their kind
            (Blocks' defaults: ``before_training``, ``after_epoch``,
            ``on_error``, ``on_interrupt``, ``on_resumption`` and
            ``after_training``; see :mod:`bricks.extensions.base`).

    Override :meth:`get_timestamp` to write something else.
    """

    DEFAULT_LOG_RECORD = "timestamp"
    single_schedule = True  # a batch schedule given replaces the after_epoch default
    DEFAULT_TRIGGERS = (
        "before_training",
        "after_epoch",
        "on_error",
        "on_interrupt",
        "on_resumption",
        "after_training",
    )

    def __init__(
        self, log_record: str = DEFAULT_LOG_RECORD, separator: str = " ", **kwargs: Any
    ) -> None:
        defaults = dict.fromkeys(self.DEFAULT_TRIGGERS, True)
        super().__init__(default_conditions=defaults, **kwargs)
        self.log_record, self.separator = log_record, separator

    def get_timestamp(self) -> str:
        """The current local date and time, with microseconds."""
        return datetime.datetime.now().isoformat(sep=self.separator, timespec="microseconds")

    def do(self, which_callback: str, *args: Any) -> None:
        self.main_loop.log.current_row[self.log_record] = self.get_timestamp()
