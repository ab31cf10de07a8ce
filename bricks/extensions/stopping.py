"""Early stopping: FinishIfNoImprovementAfter and EarlyStopping (Blocks' ``stopping``).

>>> stop = EarlyStopping("valid_cost", epochs=5)
>>> [type(e).__name__ for e in stop.sub_extensions]
['TrackTheBest', 'FinishIfNoImprovementAfter']
>>> stop.notification_name
'valid_cost_best_so_far'
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bricks.errors import ExtensionError
from bricks.extensions.composite import CompositeExtension
from bricks.extensions.predicates import OnLogRecord
from bricks.extensions.training import FinishAfter, TrackTheBest, _Patience

__all__ = ["FinishIfNoImprovementAfter", "EarlyStopping"]

logger = logging.getLogger(__name__)


class FinishIfNoImprovementAfter(_Patience, FinishAfter):
    """Finish when the record ``notification_name`` was not written for a patience.

    Unlike :class:`~bricks.extensions.FinishIfNoImprovement`, the name is
    used as given (Blocks): it is the record that marks a new best (e.g.
    what :class:`TrackTheBest` writes); its value is not read.

    Args:
        notification_name: the record that marks a new best.
        iterations / epochs: the patience (exactly one of them).
        patience_log_record: record of the remaining patience (default
            ``notification_name + "_patience_iterations"`` / ``"_epochs"``).
        **kwargs: conditions; default ``after_epoch=True``.
    """

    single_schedule = True  # a schedule given (batches or epochs) replaces the default

    def __init__(
        self,
        notification_name: str,
        iterations: int | None = None,
        epochs: int | None = None,
        patience_log_record: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._init_patience(iterations, epochs)
        self.notification_name = notification_name
        unit = "epochs" if epochs is not None else "iterations"
        self.patience_log_record = patience_log_record or f"{notification_name}_patience_{unit}"
        super().__init__(default_conditions={"after_epoch": True}, **kwargs)


class EarlyStopping(CompositeExtension):
    """Track the best value of a record and stop when it stops improving (Blocks).

    A :class:`TrackTheBest` and a :class:`FinishIfNoImprovementAfter` in one.

    Args:
        record_name: the record to watch (e.g. ``"valid_cost"``).
        checkpoint_extension: a :class:`~bricks.extensions.Checkpoint` to also
            save into ``checkpoint_filename`` at every new best. When it is
            not among the main loop's extensions at ``before_training``, it
            becomes a sub-extension of this one.
        checkpoint_filename: where the best checkpoints go (needed with
            ``checkpoint_extension``).
        notification_name: record marking a new best (default
            ``record_name + "_best_so_far"``).
        choose_best: ``min`` (default) or ``max``, see :class:`TrackTheBest`.
        iterations / epochs: the patience (exactly one of them).
        **kwargs: conditions of both parts; default ``after_epoch=True``.
    """

    def __init__(
        self,
        record_name: str,
        checkpoint_extension: Any = None,
        checkpoint_filename: str | None = None,
        notification_name: str | None = None,
        choose_best: Callable[[list], Any] = min,
        iterations: int | None = None,
        epochs: int | None = None,
        **kwargs: Any,
    ) -> None:
        if notification_name is None:
            notification_name = record_name + "_best_so_far"
        self.notification_name = notification_name
        name = kwargs.pop("name", None)
        # both parts default to after_epoch; conditions given replace that default in both
        tracking = TrackTheBest(
            record_name, notification_name, choose_best=choose_best, **kwargs
        )
        stopping = FinishIfNoImprovementAfter(
            notification_name, iterations=iterations, epochs=epochs, **kwargs
        )
        if checkpoint_extension is not None and checkpoint_filename is None:
            raise ExtensionError(
                "EarlyStopping got checkpoint_extension without checkpoint_filename; "
                "give the destination of the best checkpoints"
            )
        self.checkpoint_extension = checkpoint_extension
        if checkpoint_extension is not None:
            checkpoint_extension.add_condition(
                ["after_batch"], OnLogRecord(notification_name), (checkpoint_filename,)
            )
        super().__init__([tracking, stopping], name=name, before_training=True)

    def do(self, which_callback: str, *args: Any) -> None:
        if which_callback != "before_training" or self.checkpoint_extension is None:
            return
        extensions = list(getattr(self.main_loop, "extensions", []))
        if self.checkpoint_extension not in extensions:
            self.checkpoint_extension.main_loop = self.main_loop
            self.sub_extensions.append(self.checkpoint_extension)
        elif self in extensions and extensions.index(self.checkpoint_extension) < extensions.index(
            self
        ):
            logger.warning(
                "%s: the checkpoint extension runs before it, so it saves a new best "
                "one event late; list it after EarlyStopping",
                self.name,
            )
