"""Timing and Timestamp.

>>> Timing().conditions[0][0], Timestamp().log_record
('before_epoch', 'timestamp')
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from bricks.extensions.base import SimpleExtension

__all__ = ["Timing", "Timestamp"]


class Timing(SimpleExtension):
    """Record time spent reading data (waiting for the stream) and training.

    Records (Blocks' names): ``time_read_data_this_epoch``,
    ``time_train_this_epoch``, ``time_read_data_total``,
    ``time_train_total``, ``time_this_epoch`` and, when it fires after a
    batch, ``time_read_data_this_batch`` / ``time_train_this_batch``.
    "train" is the host time of the step call: the step is asynchronous, so
    it shows compute time only where the device is the bottleneck.
    The main loop keeps the running totals, so Timing needs no per-batch
    control. Default conditions: ``before_first_epoch``, ``after_epoch``;
    an epoch schedule given replaces ``after_epoch``: with
    ``every_n_epochs=N`` the ``*_this_epoch`` records cover the ``N`` epochs
    since it last fired.
    """

    def __init__(self, prefix: str = "", **kwargs: Any) -> None:
        defaults = {"before_first_epoch": True, "after_epoch": True}
        super().__init__(default_conditions=defaults, **kwargs)
        self.prefix = prefix + "_" if prefix else ""
        self._epoch_marks = (0.0, 0.0, 0.0)

    def _marks(self) -> tuple[float, float, float]:
        t = self.main_loop.timings
        return (t["read_data_total"], t["train_total"], time.perf_counter())

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
        row[p + "time_read_data_total"] = read
        row[p + "time_train_total"] = train


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
