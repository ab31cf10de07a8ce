"""ProgressBar: a terminal progress bar with rate and ETA, epoch by epoch.

>>> import io
>>> bar = ProgressBar(file=io.StringIO())
>>> bar.format_bar(5, 10, 2.0)
'epoch 1 [###############...............]  5/10   2.5 it/s ETA 0:00:02'
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from bricks.extensions.base import TrainingExtension

__all__ = ["ProgressBar"]


def _fmt_time(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressBar(TrainingExtension):
    """Show the progress of each epoch: batches done, rate (it/s) and ETA.

    The epoch length comes from the stream (``num_batches`` or the
    iteration scheme's) when it knows it, else from the previous epoch;
    before that the bar shows a count and a rate. Redraws at most every
    ``interval`` seconds, so it costs next to nothing per batch, and does not
    need control between batches (multi-step calls stay on).

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
        self._epoch_start_iter = 0
        self._epoch_start_time = 0.0
        self._last_draw = 0.0

    def _known_length(self) -> int | None:
        stream = self.main_loop.data_stream
        for obj in (stream, getattr(stream, "iteration_scheme", None)):
            n = getattr(obj, "num_batches", None)
            if isinstance(n, int) and n > 0:
                return n
        try:
            return len(stream)
        except TypeError:
            return None

    def format_bar(self, done: int, total: int | None, elapsed: float) -> str:
        epoch = self.main_loop.log.status["epochs_done"] + 1 if self.main_loop else 1
        rate = done / elapsed if elapsed > 0 else 0.0
        if total:
            filled = int(self.width * min(done, total) / total)
            bar = "#" * filled + "." * (self.width - filled)
            eta = (total - done) / rate if rate > 0 else 0.0
            width = len(str(total))
            return (
                f"epoch {epoch} [{bar}] {done:>{width}}/{total} "
                f"{rate:5.1f} it/s ETA {_fmt_time(eta)}"
            )
        return f"epoch {epoch} {done} batches {rate:5.1f} it/s elapsed {_fmt_time(elapsed)}"

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        done = self.main_loop.log.status["iterations_done"] - self._epoch_start_iter
        line = self.format_bar(done, self.epoch_length, now - self._epoch_start_time)
        out = self.file or sys.stderr
        out.write("\r" + line)
        out.flush()

    def before_epoch(self) -> None:
        self.epoch_length = self._known_length() or self.epoch_length
        self._epoch_start_iter = self.main_loop.log.status["iterations_done"]
        self._epoch_start_time = time.perf_counter()
        self._last_draw = 0.0

    def on_resumption(self) -> None:
        self.before_epoch()

    def after_batch(self, batch: Any) -> None:
        self._draw()

    def after_epoch(self) -> None:
        self.epoch_length = self.main_loop.log.status["iterations_done"] - self._epoch_start_iter
        self._draw(force=True)
        (self.file or sys.stderr).write("\n")

    def batches_until_needed(self, iterations_done: int) -> int | None:
        return None
