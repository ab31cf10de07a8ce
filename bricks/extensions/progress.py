"""ProgressBar: a terminal progress bar with rate and ETA, epoch by epoch.

>>> import io
>>> bar = ProgressBar(file=io.StringIO())
>>> bar.format_bar(5, 10, 2.0)
'epoch 1 [###############...............]  5/10   2.5 it/s ETA 0:00:02'
"""

from __future__ import annotations

import inspect
import math
import sys
import time
from typing import Any, TextIO

from bricks.extensions.base import TrainingExtension

__all__ = ["ProgressBar", "epoch_length"]


def _fmt_time(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


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


class ProgressBar(TrainingExtension):
    """Show the progress of each epoch: batches done, total, rate (it/s) and ETA.

    The epoch length comes from the stream's iteration scheme, through the
    transformers that wrap it (see :func:`epoch_length`); when the stream
    cannot know it ahead, from the previous epoch; before that the bar shows
    a count and a rate. A run resumed mid-epoch counts from the start of that
    epoch. Redraws at most every ``interval`` seconds, so it costs next to
    nothing per batch, and does not need control between batches
    (multi-step calls stay on).

    Args:
        file: output (default ``sys.stderr``).
        width: bar width in characters.
        interval: minimum seconds between redraws.
    """

    def __init__(
        self,
        file: TextIO | None = None,
        width: int = 30,
        interval: float = 0.1,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.file, self.width, self.interval = file, width, interval
        self.epoch_length: int | None = None
        self.epoch = 1
        self._epoch_start_iter = 0
        self._timed_from_iter = 0
        self._epoch_start_time = 0.0
        self._last_draw = 0.0

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

    def format_bar(self, done: int, total: int | None, elapsed: float, timed: int = -1) -> str:
        """One line: ``done`` batches of ``total`` in ``elapsed`` seconds.

        ``timed`` is how many of them ran in ``elapsed`` (all by default;
        fewer after resuming mid-epoch), for the rate and the ETA.
        """
        timed = done if timed < 0 else timed
        rate = timed / elapsed if elapsed > 0 else 0.0
        if total and done <= total:
            filled = int(self.width * done / total)
            bar = "#" * filled + "." * (self.width - filled)
            eta = (total - done) / rate if rate > 0 else 0.0
            width = len(str(total))
            return (
                f"epoch {self.epoch} [{bar}] {done:>{width}}/{total} "
                f"{rate:5.1f} it/s ETA {_fmt_time(eta)}"
            )
        return f"epoch {self.epoch} {done} batches {rate:5.1f} it/s elapsed {_fmt_time(elapsed)}"

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        done_total = self.main_loop.log.status["iterations_done"]
        line = self.format_bar(
            done_total - self._epoch_start_iter,
            self.epoch_length,
            now - self._epoch_start_time,
            done_total - self._timed_from_iter,
        )
        out = self.file or sys.stderr
        out.write("\r" + line)
        out.flush()

    def _start(self, epoch_start_iter: int) -> None:
        status = self.main_loop.log.status
        self.epoch = status["epochs_done"] + 1
        self.epoch_length = self.get_iter_per_epoch() or self.epoch_length
        self._epoch_start_iter = epoch_start_iter
        self._timed_from_iter = status["iterations_done"]
        self._epoch_start_time = time.perf_counter()
        self._last_draw = 0.0

    def before_epoch(self) -> None:
        self._start(self.main_loop.log.status["iterations_done"])

    def on_resumption(self) -> None:
        ends = self.main_loop.log.status.get("epoch_ends") or [0]
        self._start(ends[-1])

    def after_batch(self, batch: Any) -> None:
        self._draw()

    def after_epoch(self) -> None:
        done = self.main_loop.log.status["iterations_done"] - self._epoch_start_iter
        self._draw(force=True)
        (self.file or sys.stderr).write("\n")
        self.epoch_length = done  # the guess for a next epoch the stream cannot size

    def batches_until_needed(self, iterations_done: int) -> int | None:
        return None
