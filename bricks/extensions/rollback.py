"""Roll back to the last good checkpoint when training diverges, and go on.

``RollbackOnNonFinite`` answers a non-finite cost (or update) -- and, with
``spike_factor``, a cost that jumps above that many times its running
median -- by restoring the newest checkpoint written before it whose values
are all finite: parameters, optimizer state (with its schedules' step
counts), RNG key, monitoring accumulators, the data stream's position and
every extension's state. It then leaves out the ``skip_batches`` batches
that followed that checkpoint (their stream positions are logged under the
record ``rollback``), optionally scales the learning rate, and training goes
on. The result equals a run that never saw those batches. After
``max_rollbacks`` rollbacks the next divergence stops the run with
:class:`~bricks.errors.RollbackLimitError`.

It needs a :class:`~bricks.extensions.checkpoint.Checkpoint` in the same
main loop (or ``path=`` naming a checkpoint directory)::

    extensions = [
        TrainingDataMonitoring(["cost"], after_batch=True),
        Checkpoint("run/checkpoints", every_n_batches=50),
        RollbackOnNonFinite(max_rollbacks=3, skip_batches=20),
    ]
"""

from __future__ import annotations

import logging
import math
import os
import statistics
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bricks.checkpoint import (
    CheckpointManager,
    read_checkpoint,
    restore_main_loop,
    verify_checkpoint,
)
from bricks.errors import (
    CostSpikeError,
    ExtensionError,
    NonFiniteCostError,
    RollbackLimitError,
)
from bricks.extensions.base import SimpleExtension
from bricks.extensions.checkpoint import Checkpoint

__all__ = ["RollbackOnNonFinite"]

logger = logging.getLogger(__name__)


class RollbackOnNonFinite(SimpleExtension):
    """Restore the last finite checkpoint when the cost diverges (see the module docstring).

    Args:
        max_rollbacks: how many rollbacks a run may take; the next divergence
            raises :class:`~bricks.errors.RollbackLimitError`.
        skip_batches: how many batches after the restored checkpoint to leave
            out (the ones that led to the divergence, if it came within them).
        lr_scale: multiply the step rule's ``learning_rate`` by this at each
            rollback (needs a step rule with an injected learning rate).
        spike_factor: also roll back when ``record`` exceeds this many times
            the median of its last ``window`` values.
        record: the log record watched for spikes (``"train_cost"``: a
            ``TrainingDataMonitoring(["cost"], after_batch=True)``).
        window: how many recent values the running median covers.
        path: the checkpoint directory (default: that of the main loop's
            :class:`~bricks.extensions.checkpoint.Checkpoint`).

    Attributes:
        rollbacks: one dict per rollback: ``at`` (iteration of the
            divergence), ``to`` (restored iteration), ``checkpoint``,
            ``reason``, ``skipped`` (stream states of the skipped batches).
    """

    def __init__(
        self,
        max_rollbacks: int = 3,
        skip_batches: int = 0,
        lr_scale: float | None = None,
        spike_factor: float | None = None,
        record: str = "train_cost",
        window: int = 20,
        path: str | os.PathLike | None = None,
        name: str | None = None,
    ) -> None:
        if int(max_rollbacks) < 0 or int(skip_batches) < 0:
            raise ExtensionError(
                f"max_rollbacks and skip_batches must be >= 0, got {max_rollbacks!r} and "
                f"{skip_batches!r}"
            )
        if lr_scale is not None and not 0 < float(lr_scale):
            raise ExtensionError(f"lr_scale must be a positive factor, got {lr_scale!r}")
        if spike_factor is not None and not float(spike_factor) > 1:
            raise ExtensionError(f"spike_factor must be > 1, got {spike_factor!r}")
        super().__init__(name=name, after_batch=spike_factor is not None)
        self.max_rollbacks, self.skip = int(max_rollbacks), int(skip_batches)
        self.lr_scale = None if lr_scale is None else float(lr_scale)
        self.spike_factor = None if spike_factor is None else float(spike_factor)
        self.record, self.window = record, int(window)
        self.path = None if path is None else Path(path)
        self.rollbacks: list[dict[str, Any]] = []
        self._recent: deque[float] = deque(maxlen=self.window)

    # -- detection -------------------------------------------------------------------
    def do(self, which_callback: str, *args: Any) -> None:
        value = self.main_loop.log.current_row.get(self.record)
        if value is None:
            return
        value = float(value)
        done = self.main_loop.status["iterations_done"]
        if not math.isfinite(value):
            raise NonFiniteCostError(f"{self.record} is {value} at iteration {done}")
        if len(self._recent) >= min(5, self.window):
            median = statistics.median(self._recent)
            if median > 0 and value > self.spike_factor * median:
                raise CostSpikeError(
                    f"{self.record} jumped to {value:.6g} at iteration {done}, above "
                    f"spike_factor={self.spike_factor:g} x its running median {median:.6g}"
                )
        self._recent.append(value)

    def on_nonfinite(self, error: NonFiniteCostError) -> Callable[[], None] | None:
        """Called by the main loop with the error; returns the rollback to run."""
        if isinstance(error, RollbackLimitError):
            return None
        at = int(self.main_loop.status["iterations_done"])
        if len(self.rollbacks) >= self.max_rollbacks:
            history = "; ".join(
                f"at iteration {r['at']} back to {r['to']}" for r in self.rollbacks
            )
            raise RollbackLimitError(
                f"training diverged again at iteration {at} after {len(self.rollbacks)} "
                f"rollbacks (max_rollbacks={self.max_rollbacks}: {history}): {error}. Lower "
                "the learning rate, clip steps (StepClipping) or check the data"
            ) from error
        # a NaN step left the state of the iteration before it; a spike is in this one
        checkpoint = self._last_finite(before=at - isinstance(error, CostSpikeError))
        if checkpoint is None:
            return None
        return lambda: self._roll_back(checkpoint, at, error)

    # -- rolling back ------------------------------------------------------------------
    def _directory(self) -> Path:
        if self.path is not None:
            return self.path
        for ext in self.main_loop.extensions:
            if isinstance(ext, Checkpoint):
                return ext.path
        raise ExtensionError(
            "RollbackOnNonFinite needs a Checkpoint extension in the main loop, or path= "
            "naming a checkpoint directory"
        )

    def _last_finite(self, before: int) -> Path | None:
        """The newest good checkpoint at an iteration <= ``before`` whose floats are finite."""
        manager = CheckpointManager(self._directory(), lock=False)
        for candidate in reversed(manager.checkpoints()):
            if int(candidate.name.split("-")[1]) > before or verify_checkpoint(candidate):
                continue
            _, arrays, _ = read_checkpoint(candidate, verify=False)
            if all(
                np.isfinite(a).all() for a in arrays.values() if np.issubdtype(a.dtype, np.inexact)
            ):
                return candidate
        logger.error("no finite checkpoint before iteration %d to roll back to", before)
        return None

    def _roll_back(self, checkpoint: Path, at: int, error: BaseException) -> None:
        loop = self.main_loop
        rollbacks, recent = list(self.rollbacks), list(self._recent)
        restore_main_loop(loop, checkpoint)  # this extension's state comes back too
        self.rollbacks = rollbacks
        self._recent = deque(recent, maxlen=self.window)
        skipped = loop.skip_batches(self.skip)
        entry = {
            "at": at,
            "to": int(loop.status["iterations_done"]),
            "checkpoint": str(checkpoint),
            "reason": f"{type(error).__name__}: {error}",
            "skipped": skipped,
        }
        if self.lr_scale is not None:
            rate = loop.algorithm.get_hyperparameter("learning_rate") * self.lr_scale
            loop.algorithm.set_hyperparameter("learning_rate", rate)
            entry["learning_rate"] = rate
        self.rollbacks.append(entry)
        loop.log.current_row["rollback"] = entry
        logger.warning(
            "rolled back from iteration %d to %s (rollback %d of %d), skipping %d batches: %s",
            at,
            checkpoint.name,
            len(self.rollbacks),
            self.max_rollbacks,
            len(skipped),
            error,
        )

    # -- state ---------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {"rollbacks": self.rollbacks, "recent": list(self._recent)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.rollbacks = list(state.get("rollbacks", []))
        self._recent = deque(state.get("recent", []), maxlen=self.window)
