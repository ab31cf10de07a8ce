"""TrainingDataMonitoring and DataStreamMonitoring.

Record names follow Blocks: ``prefix + "_" + variable name`` (``train_cost``,
``valid_cost``, ``train_total_gradient_norm``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bricks.algorithms.ragged import check_quantities_read_mask
from bricks.errors import ExtensionError, RecordNameError
from bricks.extensions.aggregation import Aggregation, MonitoredQuantity
from bricks.extensions.base import SimpleExtension, _Every
from bricks.extensions.evaluator import DatasetEvaluator, unique_records

__all__ = ["MonitoringExtension", "TrainingDataMonitoring", "DataStreamMonitoring"]


def _record(prefix: str, name: str) -> str:
    return f"{prefix}_{name}" if prefix else name


def _claim_records(ext: Any, sources: Mapping[str, str]) -> None:
    """Register the log records ``ext`` writes (``{name: source}``, unprefixed);
    refuse a record another monitoring extension of the main loop already writes.

    Two extensions writing one record (``train_cost`` after every batch and
    after every epoch) would replace each other's values in the same row.
    """
    mine = {ext._record_name(name): source for name, source in sources.items()}
    for other in getattr(ext.main_loop, "extensions", []):
        theirs = getattr(other, "_records", None)
        if other is ext or not theirs:
            continue
        for record, source in mine.items():
            if record in theirs:
                raise RecordNameError(
                    f"the log record {record!r} would be written by both "
                    f"{type(other).__name__} {other.name!r} ({theirs[record]}) and "
                    f"{type(ext).__name__} {ext.name!r} ({source}); one would silently "
                    "replace the other. Give one of them another prefix="
                )
    ext._records = mine


class _AtRow:
    """The log as seen from one row: ``current_row`` is that row (a deferred read-back
    logs the non-finite guard's ``skipped_steps`` where the synchronous read would)."""

    def __init__(self, log: Any, row: Any) -> None:
        self._log, self.current_row = log, row

    def __getitem__(self, iteration: int) -> Any:
        return self._log[iteration]

    @property
    def status(self) -> Any:
        return self._log.status


class _StepRows:
    """Log rows of consecutive iterations ``first..last`` of a per-step slot, completed
    by one read-back."""

    def __init__(self, ext: TrainingDataMonitoring, log: Any, first: int) -> None:
        self.ext, self.log = ext, log
        self.first, self.last = first, first - 1
        self._finish: Any = None
        self._end = self.last
        self._done = False

    def start(self) -> None:
        """Start the read-back (the slot then holds the steps that follow).

        A log reader that runs before this extension in ``after_batch`` settles
        the rows after the step call but before its rows are added: the slot
        then also holds that call's steps, so they are read (and their rows
        written) now, and the extension skips them when its turn comes.
        """
        ext = self.ext
        if ext._steps is self:
            ext._steps = None
        loop = ext.main_loop
        self._end = max(self.last, loop.iterations_dispatched)
        if self._end > self.last:
            ext._carried = loop.step_calls  # this call's rows are this read's
        self._finish = loop.algorithm.start_read_steps(ext.slot, self._end - self.first + 1)

    def ready(self) -> bool:
        return self._finish is not None and self._finish.ready()

    def finish(self) -> None:
        if self._done:  # completed early (the extension's conditions changed)
            return
        self._done = True
        if self._finish is None:
            self.start()
        log = self.log
        values = self._finish(_AtRow(log, log[self._end]))
        names = {key: self.ext._record_name(key) for key in values[0]} if values else {}
        for i, step in enumerate(values, self.first):
            row = log[i]
            for key, value in step.items():
                row[names[key]] = value


class MonitoringExtension(SimpleExtension):
    """Base of the monitoring extensions: how a quantity's log record is named (Blocks).

    The record of ``name`` is ``prefix + SEPARATOR + name + SEPARATOR +
    suffix``, leaving out an empty prefix or suffix.

    Args:
        prefix, suffix: around every record name (default none).
        **kwargs: name and conditions, see :class:`SimpleExtension`.
    """

    SEPARATOR = "_"
    reads_log = False  # writes records only: the main loop need not settle read-backs first

    def __init__(self, prefix: str = "", suffix: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prefix, self.suffix = prefix or "", suffix or ""

    def _record_name(self, name: str) -> str:
        """The log record of the quantity ``name``."""
        if not isinstance(name, str):
            raise ExtensionError("record name must be a string")
        return self.SEPARATOR.join(part for part in (self.prefix, name, self.suffix) if part)


class TrainingDataMonitoring(MonitoringExtension):
    """Monitor quantities of the training steps, aggregated on the device.

    Every training step adds the variables' values (computed in the step's
    forward pass, *before* its update) to an on-device accumulator; when a
    condition fires, the mean since the previous report is read back (the
    only device-to-host transfer) and logged. With ``after_batch=True`` that
    is the batch's own value; with ``after_epoch=True`` the mean over the
    epoch's batches.

    Reports after a batch do not wait for the device: the read-back starts
    and the main loop writes the row once the values arrive (after the next
    step is queued), or before an extension that may read the log runs
    (one without ``reads_log = False``), at the end of an epoch, at
    checkpoints and at the end. Rows and values are those of a synchronous
    read. A report after every batch (and nothing else) keeps each step's
    values on the device and reads 64 steps back at once
    (``add_monitor(per_step=True)``), so it does not limit ``steps_per_call``.

    Args:
        variables: graph Variables, names (``"cost"``), or the algorithm's
            ``total_gradient_norm`` / ``total_step_norm``, and
            :class:`~bricks.extensions.MonitoredQuantity` objects. A
            quantity's ``requires`` are batch sources or monitorable names;
            it reads their values back after every batch and reports what
            it aggregated since the previous report.
        prefix: record prefix (default ``"train"``); ``suffix=`` also works.
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
        self.quantities = [v for v in self.variables if isinstance(v, MonitoredQuantity)]
        self.slot: int | None = None
        self._quantity_slot: int | None = None
        self._required: list[str] = []

    def set_main_loop(self, main_loop: Any) -> None:
        super().set_main_loop(main_loop)
        algorithm = main_loop.algorithm
        add = getattr(algorithm, "add_monitor", None)
        if add is None:
            raise ExtensionError(
                "TrainingDataMonitoring needs an algorithm with add_monitor() (GradientDescent)"
            )
        resolve = getattr(algorithm, "resolve", lambda v: v)
        resolved = [resolve(v) for v in self.variables if not isinstance(v, MonitoredQuantity)]
        where = f"TrainingDataMonitoring {self.name!r}"
        _claim_records(self, unique_records(resolved + self.quantities, where))
        self._per_step = self._reports_every_batch() and hasattr(algorithm, "start_read_steps")
        if not resolved:
            self.slot = None
        elif self._per_step:
            self.slot = add(resolved, per_step=True)
        else:
            self.slot = add(resolved)
        self._steps: _StepRows | None = None  # rows waiting for their per-step values
        self._carried: int | None = None  # a step call whose rows a read-back wrote
        self._fast: tuple | None = None  # the conditions the per-step path was checked for
        self._kept = 0
        self._defer: Any = None
        sources = set(getattr(algorithm, "inputs", []))
        required = [r for q in self.quantities for r in q.requires if r not in sources]
        self._required = list(dict.fromkeys(getattr(r, "name", r) for r in required))
        if self._required:
            self._quantity_slot = add([resolve(r) for r in self._required])
        for q in self.quantities:
            q.initialize()

    def _reports_every_batch(self) -> bool:
        """Whether the one condition is "after every batch" (nothing else, no arguments)."""
        if len(self.conditions) != 1:
            return False
        name, predicate, arguments = self.conditions[0]
        every_one = predicate is None or (isinstance(predicate, _Every) and predicate.n == 1)
        return name == "after_batch" and every_one and not arguments

    def handles(self, callback_name: str) -> bool:
        if callback_name == "after_batch" and self.quantities:
            return True
        return self.has_condition(callback_name)

    def dispatch(self, callback_name: str, *args: Any) -> None:
        if callback_name == "after_batch":
            if self.quantities:
                self._aggregate_quantities(args[0] if args else {})
            elif self._fast == self.conditions_key():
                self._step_rows()  # what do() would do, without re-checking
                return
        super().dispatch(callback_name, *args)

    def _aggregate_quantities(self, batch: Mapping[str, Any]) -> None:
        """Hand this batch's values (read back now) to each MonitoredQuantity."""
        where = f"TrainingDataMonitoring {self.name!r}"
        check_quantities_read_mask(batch, self.quantities, where)
        values: dict[str, Any] = {}
        if self._quantity_slot is not None:
            values = self.main_loop.algorithm.read_monitor(self._quantity_slot, self.main_loop.log)
        for q in self.quantities:
            args = []
            for r in q.requires:
                key = getattr(r, "name", r)
                args.append(np.asarray(batch[key]) if key in batch else values[key])
            q.aggregate(*args)

    def do(self, which_callback: str, *args: Any) -> None:
        log = self.main_loop.log
        row = log.current_row
        if self.slot is not None:
            algorithm = self.main_loop.algorithm
            defer = getattr(self.main_loop, "defer_readback", None)
            start = getattr(algorithm, "start_read", None)
            if which_callback == "after_batch" and self._arm():
                self._step_rows()
            else:
                if self._steps is not None:  # the per-step rows first (conditions changed)
                    self._steps.finish()
                if which_callback == "after_batch" and defer is not None and start is not None:
                    # read back one step later (the main loop consumes it after queuing
                    # the next step, or before anything reads the log): no device sync
                    finish = start(self.slot)
                    write = functools.partial(self._write, row, finish, _AtRow(log, row))
                    defer(write, getattr(finish, "ready", None))
                else:
                    self._write(row, lambda log: algorithm.read_monitor(self.slot, log), log)
        for q in self.quantities:
            row[self._record_name(q.name)] = q.get_aggregated_value()
            q.initialize()

    def _arm(self) -> bool:
        """Whether this batch's report goes the per-step way (``add_monitor(per_step=True)``:
        the one condition is every batch, the slot keeps steps, the main loop defers);
        then :meth:`dispatch` takes it directly until the conditions change."""
        loop = self.main_loop
        defer = getattr(loop, "defer_readback", None)
        if not (self._per_step and defer is not None and self._reports_every_batch()):
            return False
        kept = loop.algorithm.steps_kept(self.slot)
        if not kept:
            return False
        self._kept, self._defer = kept, defer
        if not self.quantities:
            self._fast = self.conditions_key()
        return True

    def _step_rows(self) -> None:
        """The rows of the batches of the last step call, completed with the others
        waiting when their values are read back: ``steps_kept`` steps at once, or
        earlier when something reads the log."""
        loop = self.main_loop
        if self._carried == loop.step_calls:  # read back already (see _StepRows.start)
            self._carried = None
            return
        log = loop.log
        done = log.status["iterations_done"]
        steps = self._steps
        if steps is None:
            steps = self._steps = _StepRows(self, log, done - loop.chunk_length + 1)
            self._defer(steps.finish, steps.ready)
        steps.last = done
        if done - steps.first + 1 >= self._kept:  # never more: batches_until_needed
            steps.start()

    def _write(self, row: Any, read: Any, log: Any) -> None:
        for name, value in read(log).items():
            row[self._record_name(name)] = value

    def batches_until_needed(self, iterations_done: int) -> int | None:
        if self.quantities:  # they read every batch's values
            return 1
        if self._fast == self.conditions_key() or (self._fast is None and self._arm()):
            # each step keeps its values: as many steps as the slot has room for
            steps = self._steps
            return self._kept - (steps.last - steps.first + 1 if steps is not None else 0)
        return super().batches_until_needed(iterations_done)


class DataStreamMonitoring(MonitoringExtension):
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

    def set_main_loop(self, main_loop: Any) -> None:
        super().set_main_loop(main_loop)
        if self.graph is None and not hasattr(main_loop.algorithm, "graph"):
            model = getattr(main_loop, "model", None)
            if model is None or not hasattr(model, "evaluate"):
                return  # no graph to resolve names in yet; done at the first report
        self._evaluator = self._make_evaluator()
        _claim_records(self, self._evaluator.records)

    def _make_evaluator(self) -> DatasetEvaluator:
        return DatasetEvaluator(
            self.variables,
            self._graph(),
            self.aggregation,
            where=f"DataStreamMonitoring {self.name!r}",
        )

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
            self._evaluator = self._make_evaluator()
            _claim_records(self, self._evaluator.records)
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
            row[self._record_name(name)] = value

    @property
    def compilations(self) -> int:
        """How many programs its monitoring function compiled (0 before the first report)."""
        return self._evaluator.compilations if self._evaluator is not None else 0
