"""Printing: the log status and the current row, as Blocks prints them.

>>> Printing().conditions[0][0]
'before_epoch'
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from bricks.extensions.base import SimpleExtension

__all__ = ["Printing"]

_STATUS_SHOWN = ("iterations_done", "epochs_done", "resumed_from", "training_finish_requested")


class Printing(SimpleExtension):
    """Print the status and the records of the current row.

    Default conditions (Blocks'): ``before_first_epoch``, ``on_resumption``,
    ``after_epoch``, ``after_training``, ``on_interrupt``. An epoch schedule
    given replaces ``after_epoch`` (``every_n_epochs=10`` prints every tenth
    epoch only); ``every_n_batches=N`` prints every ``N`` batches as well
    (``after_epoch=False`` to print only then); see
    :mod:`bricks.extensions.base`.

    Args:
        file: where to print (default ``sys.stdout``).
    """

    def __init__(self, file: TextIO | None = None, **kwargs: Any) -> None:
        events = ("before_first_epoch", "on_resumption", "after_epoch", "after_training")
        defaults = dict.fromkeys((*events, "on_interrupt"), True)
        super().__init__(default_conditions=defaults, **kwargs)
        self.file = file

    def do(self, which_callback: str, *args: Any) -> None:
        log = self.main_loop.log
        out = self.file or sys.stdout
        done = log.status["iterations_done"]
        lines = [
            "",
            "-" * 60,
            "AFTER ANOTHER EPOCH"
            if which_callback == "after_epoch"
            else f"{which_callback.upper().replace('_', ' ')}",
            "-" * 60,
            "Training status:",
        ]
        for key in _STATUS_SHOWN:
            lines.append(f"\t {key}: {log.status.get(key)}")
        lines.append(f"Log records from the iteration {done}:")
        for key, value in sorted(log.current_row.items()):
            if key == "got_exception":
                continue
            lines.append(f"\t {key}: {value}")
        print("\n".join(lines), file=out, flush=True)
