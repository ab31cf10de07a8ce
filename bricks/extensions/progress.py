"""ProgressBar: a tqdm progress bar with rate, ETA, epoch and the latest monitored values.

>>> import io
>>> bar = ProgressBar(file=io.StringIO())
>>> bar.format_bar(5, 10, 2.0)
'epoch 1 [###############...............]  5/10  2.50it/s ETA 00:02'
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from tqdm.auto import tqdm

from bricks.errors import ExtensionError, did_you_mean
from bricks.extensions.base import TrainingExtension

__all__ = ["ProgressBar", "epoch_length", "is_interactive"]

logger = logging.getLogger(__name__)

# how many rows back the latest values are looked for (monitoring may write a row late)
_WINDOW = 64

# the bar redrawn in place (a terminal, a notebook, an in-memory buffer)
_BAR = "{desc} [{bar:%d}] {n_fmt:>%d}/{total_fmt} {rate_fmt} ETA {remaining}{postfix}"
_COUNT = "{desc} {n_fmt} batches {rate_fmt} elapsed {elapsed}{postfix}"
# one line per report (a log file, CI): no bar, the same figures
_LINE = "{desc} {n_fmt}/{total_fmt} batches {rate_fmt} ETA {remaining}{postfix}"


def _num_requests(scheme: Any, epoch: int) -> int | None:
    fn = getattr(scheme, "num_requests", None)
    if not callable(fn):
        return None
    try:
        takes_epoch = bool(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        takes_epoch = True
    n = fn(epoch) if takes_epoch else fn()
    return int(n) if isinstance(n, int) and n >= 0 else None


def _defining_class(stream: Any, method: str) -> str | None:
    for klass in type(stream).__mro__:
        if method in klass.__dict__:
            return klass.__name__
    return None


# wrappers that give exactly one item per item of the stream they wrap: transformers
# iterating with the base Transformer's epoch iterator (one transform per item; those
# that drop, group or split items -- Filter, Batch, Unpack, Cache -- define their own)
# and read-ahead wrappers, which never change the order or the count
_ONE_TO_ONE = ("Transformer", "Prefetch")


def epoch_length(stream: Any, epoch: int = 0) -> int | None:
    """How many items (batches) ``stream`` gives in epoch ``epoch``, or ``None``.

    Read from the iteration scheme (``num_requests(epoch)``) of the stream or
    of the stream it wraps, through wrappers that keep the count (mappings,
    casts, renames, prefetching); a ``Batch`` of a constant size over a
    stream of known length gives ``ceil(length / batch_size)``. ``None`` when
    the count cannot be known ahead (a ``Filter``, an infinite scheme, ...).
    A stream may also tell it with a ``num_batches`` attribute or method.
    """
    declared = getattr(stream, "num_batches", None)
    if callable(declared):
        declared = declared(epoch)
    if isinstance(declared, int) and declared >= 0:
        return declared
    child = getattr(stream, "data_stream", None)
    scheme = getattr(stream, "iteration_scheme", None)
    if scheme is not None:
        n = _num_requests(scheme, epoch)
        if n is not None:
            return n
        size = getattr(scheme, "batch_size", None)
        unbounded = getattr(scheme, "num_examples", None) is None and (
            getattr(scheme, "times", None) is None
        )
        if child is not None and isinstance(size, int) and size > 0 and unbounded:
            # a Batch of a constant size: batches until the examples run out
            examples = epoch_length(child, epoch)
            return None if examples is None else math.ceil(examples / size)
        return None
    if child is not None and _defining_class(stream, "_open") in _ONE_TO_ONE:
        return epoch_length(child, epoch)
    return None


def is_interactive(file: Any) -> bool:
    """Whether a bar redrawn in place suits ``file``.

    ``False`` for a file or a pipe that is not a terminal (a log file, CI
    output): those get one line per report instead of carriage returns.
    ``True`` for a terminal and for in-memory buffers (``io.StringIO``, a
    notebook's output), which have no file descriptor.
    """
    try:
        file.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return True
    isatty = getattr(file, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


def _columns(file: Any) -> int:
    try:
        return os.get_terminal_size(file.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class ProgressBar(TrainingExtension):
    """Show the progress of each epoch: batches done, total, rate, ETA, latest values.

    Drawn by `tqdm <https://tqdm.github.io>`_ (``tqdm.auto``: a widget in
    notebooks, trimmed to the terminal's width). The epoch length comes from
    the stream's iteration scheme, through the transformers that wrap it (see
    :func:`epoch_length`); when the stream cannot know it ahead, from the
    previous epoch; before that the bar shows a count and a rate. The rate
    and the ETA count from the end of the epoch's first step call (which
    compiles, in the first epoch); a run resumed mid-epoch counts its
    batches from the start of that epoch. The bar's postfix shows the latest value
    of the monitored records (``train_cost=2.31``), read from the log rows
    the monitoring extensions wrote: no device transfer of its own; put the
    bar after them in the extension list to see this batch's values.

    With ``report_every_n_batches=N`` it also prints one line every ``N``
    batches with the progress and the latest
    values (``epoch 1 100/1125 batches 9.3it/s ETA 01:50, train_cost=2.4``),
    above the bar. Output that is not a terminal (a log file, CI: see
    :func:`is_interactive`) gets only these lines, and one at the end of each
    epoch, instead of carriage-return redraws.

    Redraws at most every ``interval`` seconds, so it costs next to nothing
    per batch, and needs no control between batches except at the reports
    (multi-step calls stay on).

    Args:
        file: output (default ``sys.stderr``).
        width: bar width in characters.
        interval: minimum seconds between redraws.
        name: the extension's name.
        report_every_n_batches: print a report line every this many batches.
        records: the records shown (default: every numeric record of the log
            rows except ``time_*`` ones); one never logged is named in a
            warning of the ``bricks.extensions.progress`` logger at the end.
        dynamic: redraw in place (``True``) or print lines (``False``);
            default: :func:`is_interactive` of the output.
    """

    def __init__(
        self,
        file: TextIO | None = None,
        width: int = 30,
        interval: float = 0.1,
        name: str | None = None,
        *,
        report_every_n_batches: int | None = None,
        records: Sequence[str] | None = None,
        dynamic: bool | None = None,
    ) -> None:
        super().__init__(name)
        if report_every_n_batches is not None and int(report_every_n_batches) < 1:
            raise ExtensionError(
                f"ProgressBar: report_every_n_batches must be >= 1 or None, "
                f"got {report_every_n_batches!r}"
            )
        self.file, self.width, self.interval = file, width, interval
        self.report_every = None if report_every_n_batches is None else int(report_every_n_batches)
        self.records = None if records is None else list(records)
        self.dynamic = dynamic
        self.epoch_length: int | None = None
        self.epoch = 1
        self.latest: dict[str, Any] = {}
        self._epoch_start_iter = 0
        self._timed_from_iter = 0
        self._epoch_start_time = 0.0
        self._clock_set = False
        self._last_draw = 0.0
        self._bar: Any = None
        self._reported_at = -1

    # -- what to show ----------------------------------------------------------
    def get_iter_per_epoch(self) -> int | None:
        """The number of batches of the current epoch, when known ahead (Blocks' name)."""
        stream = self.main_loop.data_stream
        n = epoch_length(stream, self.main_loop.log.status["epochs_done"])
        if n is None:
            try:
                n = len(stream)
            except TypeError:
                return None
        return n

    def _out(self) -> TextIO:
        return self.file or sys.stderr

    def _is_dynamic(self) -> bool:
        return is_interactive(self._out()) if self.dynamic is None else bool(self.dynamic)

    def _postfix(self) -> str:
        names = self.records if self.records is not None else list(self.latest)
        return ", ".join(f"{k}={_value(self.latest[k])}" for k in names if k in self.latest)

    def _bar_format(self, total: int | None) -> str:
        if total:
            return _BAR % (self.width, len(str(total)))
        return _COUNT

    def format_bar(
        self,
        done: int,
        total: int | None,
        elapsed: float,
        timed: int = -1,
        postfix: str = "",
        bar_format: str | None = None,
    ) -> str:
        """One line: ``done`` batches of ``total`` in ``elapsed`` seconds.

        ``timed`` is how many of them ran in ``elapsed`` (all by default;
        fewer after resuming mid-epoch), for the rate and the ETA.
        """
        timed = done if timed < 0 else timed
        if total is not None and done > total:
            total = None
        return tqdm.format_meter(
            done,
            total,
            elapsed,
            prefix=f"epoch {self.epoch}",
            ascii=".#",
            unit="it",
            initial=done - timed,
            bar_format=bar_format or self._bar_format(total),
            postfix=postfix or None,
        )

    def report_line(self) -> str:
        """The report: epoch, batches done of the epoch, rate, ETA and the latest values."""
        done_total = self.main_loop.log.status["iterations_done"]
        total = self.epoch_length
        done = done_total - self._epoch_start_iter
        fmt = _LINE if total and done <= total else _COUNT
        return self.format_bar(
            done,
            total,
            time.perf_counter() - self._epoch_start_time,
            done_total - self._timed_from_iter,
            postfix=self._postfix(),
            bar_format=fmt,
        )

    def _wanted(self, key: str, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.records is not None:
            return key in self.records
        return not key.startswith("time_")

    def _collect(self) -> None:
        """The latest value of each shown record, from the last ``_WINDOW`` rows.

        Monitoring may complete a row a step late (its read-back finishes
        after the next step is queued), so the rows before the current one
        are read too, newest first.
        """
        log = self.main_loop.log
        done = log.status["iterations_done"]
        found: dict[str, Any] = {}
        for i in range(done, max(done - _WINDOW, -1), -1):
            if i not in log:
                continue
            for key, value in log[i].items():
                if key not in found and self._wanted(key, value):
                    found[key] = value
        self.latest.update(found)

    # -- drawing ---------------------------------------------------------------
    def _open_bar(self, done: int, timed: int) -> Any:
        out = self._out()
        bar = tqdm(
            total=self.epoch_length,
            initial=done,
            desc=f"epoch {self.epoch}",
            file=out,
            ascii=".#",
            bar_format=self._bar_format(self.epoch_length),
            mininterval=0,
            miniters=0,
            maxinterval=0,
            # follow the terminal's width, unless it reports none (a bare pseudo-terminal)
            dynamic_ncols=_columns(out) > 0,
            leave=True,
            postfix=self._postfix() or None,
            delay=1e-9,  # no draw before the clock is set below
        )
        # rate and ETA from the batches run since the epoch (or the resumption) started;
        # tqdm's clock is time.time
        now = time.time()
        bar.start_t = now - (time.perf_counter() - self._epoch_start_time)
        bar.initial = done - timed
        bar.refresh()
        bar.last_print_t, bar.last_print_n = now, done
        return bar

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        done_total = self.main_loop.log.status["iterations_done"]
        done = done_total - self._epoch_start_iter
        timed = done_total - self._timed_from_iter
        if self.epoch_length is not None and done > self.epoch_length:
            self.epoch_length = None  # longer than announced: count without a total
            self._close_bar(newline=False)
        if self._bar is None:
            self._bar = self._open_bar(done, timed)  # draws once
            return
        self._bar.set_postfix_str(self._postfix(), refresh=False)
        self._bar.update(done - self._bar.n)

    def _close_bar(self, newline: bool = True) -> None:
        if self._bar is None:
            return
        bar, self._bar = self._bar, None
        if newline:
            bar.close()  # a last draw, then a new line
        else:
            bar.leave = False
            bar.close()

    def _write(self, line: str) -> None:
        self._reported_at = self.main_loop.log.status["iterations_done"]
        if self._bar is not None:
            tqdm.write(line, file=self._out())
        else:
            out = self._out()
            out.write(line + "\n")
            out.flush()

    # -- events ----------------------------------------------------------------
    def _start(self, epoch_start_iter: int) -> None:
        status = self.main_loop.log.status
        self._close_bar()
        self.epoch = status["epochs_done"] + 1
        self.epoch_length = self.get_iter_per_epoch() or self.epoch_length
        self._epoch_start_iter = epoch_start_iter
        self._timed_from_iter = status["iterations_done"]
        self._epoch_start_time = time.perf_counter()
        self._clock_set = False
        self._last_draw = 0.0

    def before_epoch(self) -> None:
        self._start(self.main_loop.log.status["iterations_done"])

    def on_resumption(self) -> None:
        ends = self.main_loop.log.status.get("epoch_ends") or [0]
        self._start(ends[-1])

    def _report_due(self) -> bool:
        every = self.report_every
        return every is not None and self.main_loop.log.status["iterations_done"] % every == 0

    def _set_clock(self) -> None:
        """The rate counts from the end of the epoch's first call: that one compiles."""
        if not self._clock_set:
            self._clock_set = True
            self._timed_from_iter = self.main_loop.log.status["iterations_done"]
            self._epoch_start_time = time.perf_counter()

    def after_batch(self, batch: Any) -> None:
        self._set_clock()
        due = self._report_due()
        if self._is_dynamic():
            if due or time.perf_counter() - self._last_draw >= self.interval:
                self._collect()
            if due:
                self._write(self.report_line())
            self._draw(force=due)
        elif due:
            self._collect()
            self._write(self.report_line())

    def after_epoch(self) -> None:
        done = self.main_loop.log.status["iterations_done"] - self._epoch_start_iter
        self._collect()
        if self._is_dynamic():
            if self._bar is None:
                self._draw(force=True)
            assert self._bar is not None
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.n = done  # close() draws it
            self._close_bar()
        elif self._reported_at != self.main_loop.log.status["iterations_done"]:
            self._write(self.report_line())
        self.epoch_length = done  # the guess for a next epoch the stream cannot size

    def after_training(self) -> None:
        self._close_bar()
        seen = set()
        for _, row in self.main_loop.log:
            seen.update(row)
        for name in self.records or ():
            if name not in self.latest:
                logger.warning(
                    "ProgressBar: record %r was never a number in the log, so it was never "
                    "shown%s",
                    name,
                    did_you_mean(name, seen),
                )

    def on_interrupt(self) -> None:
        self._close_bar()

    def on_error(self, exception: BaseException | None = None) -> None:
        self._close_bar()

    def batches_until_needed(self, iterations_done: int) -> int | None:
        if self.report_every is None:
            return None
        return self.report_every - iterations_done % self.report_every
