"""Extensions that steer training: FinishAfter, SharedVariableModifier, TrackTheBest,
FinishIfNoImprovement.

>>> finish = FinishAfter(after_n_epochs=3)
>>> best = TrackTheBest("valid_cost")
>>> stop = FinishIfNoImprovement("valid_cost", epochs=2)
>>> best.notification_name, stop.notification_name
('valid_cost_best_so_far', 'valid_cost_best_so_far')
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from bricks.errors import ExtensionError
from bricks.extensions.base import SimpleExtension, _AfterN

__all__ = ["FinishAfter", "SharedVariableModifier", "TrackTheBest", "FinishIfNoImprovement"]

logger = logging.getLogger(__name__)


def _request_finish(main_loop: Any) -> None:
    main_loop.log.status["training_finish_requested"] = True
    main_loop.log.current_row["training_finish_requested"] = True


class _Patience:
    """The patience count of :class:`FinishIfNoImprovement` and
    :class:`~bricks.extensions.FinishIfNoImprovementAfter`: each call notes a
    new best when ``notification_name`` is in the current row, writes the
    remaining patience (epochs or iterations since that best) to
    ``patience_log_record`` and requests the finish when none is left."""

    notification_name: str
    patience_log_record: str
    main_loop: Any

    def _init_patience(self, iterations: int | None, epochs: int | None) -> None:
        if (iterations is None) == (epochs is None):
            raise ExtensionError(
                f"{type(self).__name__} needs exactly one of iterations= or epochs=, "
                f"got iterations={iterations!r}, epochs={epochs!r}"
            )
        self.iterations, self.epochs = iterations, epochs
        self.last_best_iter: int | None = None
        self.last_best_epoch: int | None = None

    def update_best(self) -> None:
        """Note a new best when the notification is in the current row."""
        log = self.main_loop.log
        if self.notification_name in log.current_row:
            self.last_best_iter = log.status["iterations_done"]
            self.last_best_epoch = log.status["epochs_done"]

    def do(self, which_callback: str, *args: Any) -> None:
        self.update_best()
        if self.last_best_iter is None:
            return
        log = self.main_loop.log
        if self.epochs is not None:
            patience = self.epochs - (log.status["epochs_done"] - self.last_best_epoch)
        else:
            patience = self.iterations - (log.status["iterations_done"] - self.last_best_iter)
        log.current_row[self.patience_log_record] = patience
        if patience <= 0:
            _request_finish(self.main_loop)

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()  # type: ignore[misc]
        state.update(last_best_iter=self.last_best_iter, last_best_epoch=self.last_best_epoch)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)  # type: ignore[misc]
        self.last_best_iter = state.get("last_best_iter")
        self.last_best_epoch = state.get("last_best_epoch")


class FinishAfter(SimpleExtension):
    """Finish training when its conditions fire (e.g. ``after_n_epochs=10``).

    ``after_n_batches`` / ``after_n_epochs`` fire once, at the first moment
    *at or past* ``N``: a run resumed (from a checkpoint of another
    ``FinishAfter``) past ``N`` stops at once instead of never. Once it has
    fired, calling ``run()`` again goes on, as Blocks' ``== N`` predicate
    did, until a condition added since fires. Whether it fired is part of
    the extension's state, kept with the ``N`` it was for.
    """

    def __init__(self, **kwargs: Any) -> None:
        n_batches = kwargs.pop("after_n_batches", None)
        n_epochs = kwargs.pop("after_n_epochs", None)
        super().__init__(**kwargs)
        if n_batches is not None:
            self.add_condition(["after_batch"], _AfterN("iterations_done", int(n_batches)))
        if n_epochs is not None:
            self.add_condition(["after_epoch"], _AfterN("epochs_done", int(n_epochs)))
        if not self.conditions:
            raise ExtensionError("FinishAfter needs a condition, e.g. after_n_epochs=10")

    def do(self, which_callback: str, *args: Any) -> None:
        _request_finish(self.main_loop)

    def _after_n(self) -> list[_AfterN]:
        return [p for _, p, _ in self.conditions if isinstance(p, _AfterN)]

    def get_state(self) -> dict[str, Any]:
        return {"after_n": [[p.key, p.n, p.fired] for p in self._after_n()]}

    def set_state(self, state: dict[str, Any]) -> None:
        fired = {(key, n): f for key, n, f in state.get("after_n", [])}
        for p in self._after_n():  # a FinishAfter for another N has not fired
            p.fired = bool(fired.get((p.key, p.n), False))


def _positional_count(function: Callable[..., Any]) -> int | None:
    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in params if p.kind in kinds and p.default is p.empty]
    return len(required)


class SharedVariableModifier(SimpleExtension):
    """Set a hyperparameter from a schedule while training (Blocks' name).

    Args:
        parameter: a hyperparameter handle (``step_rule.learning_rate``) or
            its name in the algorithm (``"learning_rate"``).
        function: ``function(iterations_done)`` (e.g. an optax schedule) or
            ``function(iterations_done, old_value)`` returning the new value.
        num_args: 1 or 2; by default read from ``function``'s signature (as
            Blocks); give it for a callable whose signature cannot be read.
        **kwargs: conditions; default ``after_batch=True``.

    The value is changed in the optimizer state, never re-compiling.
    """

    def __init__(
        self,
        parameter: Any,
        function: Callable[..., float],
        num_args: int | None = None,
        **kwargs: Any,
    ) -> None:
        if num_args is None:
            num_args = _positional_count(function)
        if num_args not in (1, 2):
            raise ExtensionError(
                f"SharedVariableModifier needs function(iterations_done) or "
                f"function(iterations_done, old_value); {function!r} takes {num_args!r} "
                "positional arguments (pass num_args=1 or 2 if its signature cannot be read)"
            )
        if not any(
            k in kwargs
            for k in (
                "after_batch",
                "every_n_batches",
                "after_epoch",
                "every_n_epochs",
                "before_epoch",
                "before_training",
            )
        ):
            kwargs.setdefault("after_batch", True)
        super().__init__(**kwargs)
        self.parameter, self.function, self.num_args = parameter, function, num_args

    def do(self, which_callback: str, *args: Any) -> None:
        algorithm = self.main_loop.algorithm
        done = self.main_loop.log.status["iterations_done"]
        if self.num_args == 1:
            value = self.function(done)
        else:
            value = self.function(done, algorithm.get_hyperparameter(self.parameter))
        algorithm.set_hyperparameter(self.parameter, value)


class TrackTheBest(SimpleExtension):
    """Note when ``record_name`` reaches a new best value.

    Writes ``log.status["best_" + record_name]`` and, at the new best, the
    record ``notification_name`` (default ``record_name + "_best_so_far"``).
    Default condition: ``after_epoch=True``; runs after the monitor that
    writes the record, so list it after that monitor.
    """

    single_schedule = True  # a schedule given (batches or epochs) replaces after_epoch

    def __init__(
        self,
        record_name: str,
        notification_name: str | None = None,
        choose_best: Callable[[list], Any] = min,
        **kwargs: Any,
    ) -> None:
        super().__init__(default_conditions={"after_epoch": True}, **kwargs)
        self.record_name = record_name
        self.notification_name = notification_name or record_name + "_best_so_far"
        self.best_name = "best_" + record_name
        self.choose_best = choose_best

    def do(self, which_callback: str, *args: Any) -> None:
        log = self.main_loop.log
        value = log.current_row.get(self.record_name)
        if value is None:
            return
        best = log.status.get(self.best_name)
        if best is None or self.choose_best([best, value]) == value and value != best:
            log.status[self.best_name] = value
            log.current_row[self.notification_name] = True


class FinishIfNoImprovement(_Patience, SimpleExtension):
    """Stop when :class:`TrackTheBest` saw no new best for a patience.

    Args:
        notification_name: the record :class:`TrackTheBest` writes, or the
            tracked record name itself (``"valid_cost"`` means
            ``"valid_cost_best_so_far"``). A name that a ``TrackTheBest`` of
            the main loop writes as its notification (``notification_name=
            "highest_acc"``) is watched as given. Blocks' spelling, which
            always watches the name as given, is
            :class:`~bricks.extensions.FinishIfNoImprovementAfter`.
        iterations / epochs: the patience (exactly one of them).
        patience_log_record: record of the remaining patience (default
            ``notification_name + "_patience_epochs"`` / ``"_iterations"``).
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
        default = {"after_epoch": True} if epochs is not None else {"after_batch": True}
        super().__init__(default_conditions=default, **kwargs)
        self._given, self._given_patience = notification_name, patience_log_record
        if not notification_name.endswith("_best_so_far"):
            notification_name += "_best_so_far"
        self._watch(notification_name)

    def _watch(self, notification_name: str) -> None:
        self.notification_name = notification_name
        unit = "epochs" if self.epochs is not None else "iterations"
        self.patience_log_record = (
            self._given_patience or f"{notification_name}_patience_{unit}"
        )

    def set_main_loop(self, main_loop: Any) -> None:
        super().set_main_loop(main_loop)
        written = set()
        for ext in getattr(main_loop, "extensions", []):
            for sub in [ext, *getattr(ext, "sub_extensions", [])]:
                if isinstance(sub, TrackTheBest):
                    written.add(sub.notification_name)
        if self.notification_name not in written and self._given in written:
            self._watch(self._given)  # a TrackTheBest with its own notification name
