"""The main loop's signal handling: Ctrl-C finishes the epoch, a second one or
SIGTERM the batch, a third exits at once; SIGUSR1 asks for a checkpoint.

The handlers only set flags that :class:`~bricks.main_loop.MainLoop` reads
between batches (see its module docstring for the whole protocol).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

__all__ = ["SignalHandling"]

logger = logging.getLogger("bricks.main_loop.main_loop")


class SignalHandling:
    """Mixin of :class:`~bricks.main_loop.MainLoop`: installs and restores its
    signal handlers (main thread only) and turns signals into status flags."""

    status: dict[str, Any]
    log: Any
    _save_requested: bool

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self._interrupts = 0
        self._old_handlers = {
            signal.SIGINT: signal.signal(signal.SIGINT, self._handle_interrupt),
            signal.SIGTERM: signal.signal(signal.SIGTERM, self._handle_batch_interrupt),
            signal.SIGUSR1: signal.signal(signal.SIGUSR1, self._handle_save_request),
        }

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        self._old_handlers = {}

    def _handle_interrupt(self, signum: int, frame: Any) -> None:
        self._interrupts += 1
        if self._interrupts >= 3:
            logger.warning("Third interrupt: exiting now; the last committed checkpoint is valid")
            logging.shutdown()
            os._exit(130)
        if self._interrupts == 2:
            self._handle_batch_interrupt(signum, frame)
            return
        logger.warning("Interrupt received: finishing the current epoch (again to stop sooner)")
        self.status["epoch_interrupt_received"] = True
        self.log.current_row["epoch_interrupt_received"] = True

    def _handle_batch_interrupt(self, signum: int, frame: Any) -> None:
        logger.warning("Interrupt received: finishing the current batch")
        self.status["batch_interrupt_received"] = True
        self.log.current_row["batch_interrupt_received"] = True

    def _handle_save_request(self, signum: int, frame: Any) -> None:
        logger.warning("SIGUSR1 received: saving a checkpoint after this batch")
        self._save_requested = True

    # the handlers only set flags: safe while a checkpoint is being written
    _handle_interrupt.safe_during_save = True  # type: ignore[attr-defined]
    _handle_batch_interrupt.safe_during_save = True  # type: ignore[attr-defined]
