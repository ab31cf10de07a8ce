"""TrainingDataMonitoring and DataStreamMonitoring.

Record names follow Blocks: ``prefix + "_" + variable name`` (``train_cost``,
``valid_cost``, ``train_total_gradient_norm``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bricks.errors import ExtensionError
from bricks.extensions.aggregation import Aggregation
from bricks.extensions.base import SimpleExtension
from bricks.extensions.evaluator import DatasetEvaluator

__all__ = ["TrainingDataMonitoring", "DataStreamMonitoring"]


def _record(prefix: str, name: str) -> str:
    return f"{prefix}_{name}" if prefix else name


class TrainingDataMonitoring(SimpleExtension):
    """Monitor quantities of the training steps, aggregated on the device.

    Every training step adds the variables' values (computed in the step's
    forward pass, *before* its update) to an on-device accumulator; when a
    condition fires, the mean since the previous report is read back (the
    only device-to-host transfer) and logged. With ``after_batch=True`` that
    is the batch's own value; with ``after_epoch=True`` the mean over the
    epoch's batches.

    Args:
        variables: graph Variables, names (``"cost"``), or the algorithm's
            ``total_gradient_norm`` / ``total_step_norm``.
        prefix: record prefix (default ``"train"``).
        **kwargs: conditions (``after_batch``, ``every_n_batches``,
            ``after_epoch`` ...); default ``after_epoch=True``.

    >>> ext = TrainingDataMonitoring(["cost"], every_n_batches=10)
    >>> ext.prefix
    'train'
    """

    def __init__(self, variables: Sequence[Any], prefix: str = "train", **kwargs: Any) -> None:
        if not any(k not in ("name",) for k in kwargs):
            kwargs["after_epoch"] = True
        super().__init__(**kwargs)
        if not variables:
            raise ExtensionError("TrainingDataMonitoring needs at least one variable")
        self.variables = list(variables)
        self.prefix = prefix
        self.slot: int | None = None

    def set_main_loop(self, main_loop: Any) -> None:
        super().set_main_loop(main_loop)
        add = getattr(main_loop.algorithm, "add_monitor", None)
        if add is None:
            raise ExtensionError(
                "TrainingDataMonitoring needs an algorithm with add_monitor() (GradientDescent)"
            )
        self.slot = add(self.variables)

    def do(self, which_callback: str, *args: Any) -> None:
        log = self.main_loop.log
        values = self.main_loop.algorithm.read_monitor(self.slot, log)
        row = log.current_row
        for name, value in values.items():
            row[_record(self.prefix, name)] = value

    def batches_until_needed(self, iterations_done: int) -> int | None:
        return super().batches_until_needed(iterations_done)


class DataStreamMonitoring(SimpleExtension):
    """Monitor variables over a whole data stream (validation, test).

    Args:
        variables: Variables or names of ``graph``, and
            :class:`~bricks.extensions.MonitoredQuantity` objects.
        data_stream: the stream to evaluate on (one epoch per report).
        prefix: record prefix (default ``"valid"``).
        graph: the graph the variables belong to; default the main loop's
            ``model`` when it is a graph, else the algorithm's graph. Use the
            graph *without* dropout for validation.
        aggregation: ``{name: "mean" | "min" | "max" | "concatenate" |
            Aggregation}``; default mean over examples.
        **kwargs: conditions; default ``before_first_epoch`` and
            ``after_epoch``.

    >>> DataStreamMonitoring(["cost"], [], prefix="test").prefix
    'test'
    """

    def __init__(
        self,
        variables: Sequence[Any],
        data_stream: Any,
        prefix: str = "valid",
        graph: Any = None,
        aggregation: Mapping[str, str | Aggregation] | None = None,
        **kwargs: Any,
    ) -> None:
        if not any(k not in ("name",) for k in kwargs):
            kwargs["before_first_epoch"] = True
            kwargs["after_epoch"] = True
        super().__init__(**kwargs)
        self.variables = list(variables)
        self.data_stream = data_stream
        self.prefix = prefix
        self.graph = graph
        self.aggregation = aggregation
        self._evaluator: DatasetEvaluator | None = None

    def _graph(self) -> Any:
        if self.graph is not None:
            return self.graph
        model = getattr(self.main_loop, "model", None)
        if model is not None and hasattr(model, "evaluate"):
            return model
        return self.main_loop.algorithm.graph

    def do(self, which_callback: str, *args: Any) -> None:
        graph = self._graph()
        if self._evaluator is None:
            self._evaluator = DatasetEvaluator(self.variables, graph, self.aggregation)
        algorithm = self.main_loop.algorithm
        if hasattr(algorithm, "current_parameters"):
            params = algorithm.current_parameters()
        else:
            params = graph.parameter_values()
        needed = {p.path for p in graph.parameters}
        params = {k: v for k, v in params.items() if k in needed}
        values = self._evaluator.evaluate(self.data_stream, params)
        row = self.main_loop.log.current_row
        for name, value in values.items():
            row[_record(self.prefix, name)] = value
