"""DatasetEvaluator: monitored values of a graph over a whole data stream.

Per batch, one jitted call evaluates the requested variables (one forward
pass) and folds them into on-device accumulators; the host reads the result
once, at the end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bricks.algorithms.checks import describe_shape, find_by_name, is_fixed_shape
from bricks.algorithms.ragged import EXAMPLE_MASK, padded_examples
from bricks.errors import ExtensionError, RecordNameError, did_you_mean
from bricks.extensions.aggregation import (
    MEAN,
    Aggregation,
    MonitoredQuantity,
    collects,
    get_aggregation,
    join,
)

__all__ = ["DatasetEvaluator"]


def _outputs_known(graph: Any) -> bool:
    return bool(getattr(graph, "outputs_known", True))


def _resolve(graph: Any, variable: Any) -> Any:
    if not isinstance(variable, str):
        return variable
    candidates = list(graph.outputs) + list(getattr(graph, "variables", []))
    found = find_by_name(candidates, variable, ExtensionError)
    if found is not None:
        return found
    names = [v.name for v in candidates]
    raise ExtensionError(
        f"the graph has no variable named {variable!r}{did_you_mean(variable, names)}"
    )


def _source(entry: Any) -> tuple[str, str]:
    """``(record name, where it comes from)`` of a monitored entry."""
    if isinstance(entry, MonitoredQuantity):
        return entry.name, f"MonitoredQuantity {type(entry).__name__}"
    if isinstance(entry, str):
        name = entry.removeprefix("output:")
        return name, f"output {name!r}"
    return entry.name, f"variable {entry.tag}"


def unique_records(entries: Sequence[Any], where: str) -> dict[str, str]:
    """``{record name: source}`` of monitored entries (Variables, names,
    :class:`MonitoredQuantity`); two different quantities with one name are refused.

    Raises:
        RecordNameError: two entries would be recorded under one name.
    """
    records: dict[str, str] = {}
    tags: dict[str, Any] = {}
    for entry in entries:
        name, source = _source(entry)
        ident = entry if isinstance(entry, MonitoredQuantity) else source
        if name in records and tags[name] != ident:
            raise RecordNameError(
                f"{where}: two monitored quantities are both named {name!r}: "
                f"{records[name]} and {source}; one would silently replace the other in the "
                "log. Rename one, e.g. dataclasses.replace(variable, name='...')"
            )
        records[name], tags[name] = source, ident
    return records


def _is_source(graph: Any, name: Any) -> bool:
    """Whether ``name`` is one of the graph's inputs (a batch source), not a variable."""
    return isinstance(name, str) and name in list(graph.inputs)


def _epoch_iterator(stream: Any) -> Any:
    getter = getattr(stream, "get_epoch_iterator", None)
    if getter is not None:
        try:
            return getter(as_dict=True)
        except TypeError:
            return getter()
    return iter(stream)


def _examples_in(inputs: Mapping[str, Any], labels: Mapping[str, Any], where: str) -> int:
    """How many examples a batch holds: the length of the axis labelled
    ``'batch'`` in the stream's axis labels, else of the first axis of every
    array input (they must agree); a stream of scalar examples has one."""
    sizes: dict[str, int] = {}
    for name, value in inputs.items():
        shape = np.shape(value)
        names = tuple(labels.get(name) or ())
        if "batch" in names and len(names) == len(shape):
            return int(shape[names.index("batch")])
        if shape:
            sizes[name] = int(shape[0])
    if not sizes:
        return 1
    if len(set(sizes.values())) > 1:
        raise ExtensionError(
            f"{where} cannot tell how many examples a batch holds: the first axes of its inputs "
            f"differ ({sizes}). Give the stream axis labels with a 'batch' axis (e.g. "
            "axis_labels={'features': ('time', 'batch', 'feature'), ...}) or feed batch-major "
            "sources"
        )
    return next(iter(sizes.values()))


class DatasetEvaluator:
    """Evaluate variables of ``graph`` over a stream and aggregate them.

    Args:
        variables: graph Variables (or names) and :class:`MonitoredQuantity`
            objects.
        graph: the computation graph (or ``FunctionGraph``) they belong to.
        aggregation: ``{name: scheme}`` overriding the default mean over
            examples; scheme is ``"mean"``, ``"min"``, ``"max"``,
            ``"concatenate"`` or an :class:`Aggregation`.
        where: who evaluates (``"DataStreamMonitoring 'valid'"``), for messages.

    A stream padded by :class:`~bricks.data.PadBatch` (an ``example_mask``
    source) weighs each batch by its real examples, so a ragged last batch
    runs in the same program; every monitored value must honour the mask
    (see :mod:`bricks.algorithms.ragged`).

    Attributes:
        compilations: how many programs the monitoring function compiled.

    Raises:
        RecordNameError: two monitored quantities have one name.
        ExtensionError: an unknown name, or a quantity whose shape changes
            with the batch aggregated by other than ``"concatenate"``.
    """

    def __init__(
        self,
        variables: Sequence[Any],
        graph: Any,
        aggregation: Mapping[str, str | Aggregation] | None = None,
        where: str = "DatasetEvaluator",
    ) -> None:
        self.graph = graph
        self.where = where
        self.entries = list(variables)
        self.quantities = [v for v in variables if isinstance(v, MonitoredQuantity)]
        self.aggregation = dict(aggregation or {})
        self._fn = None
        self._ready = False
        self.compilations = 0  # programs of the monitoring function (traces)
        if _outputs_known(graph):
            self._setup()
        else:  # names of a cost function's dict, resolved at the first batch
            self.records = unique_records(self.entries, where)

    def _setup(self) -> None:
        """Resolve names to the graph's variables (once its outputs are known)."""
        graph = self.graph
        plain = [_resolve(graph, v) for v in self.entries if not isinstance(v, MonitoredQuantity)]
        needed = list(plain)
        for q in self.quantities:
            for r in q.requires:
                if _is_source(graph, r):  # a batch source: read from the batch itself
                    continue
                r = _resolve(graph, r)
                if r not in needed:
                    needed.append(r)
        self.variables = plain
        self.needed = needed
        self.records = unique_records(plain + self.quantities, self.where)
        names = [v.name for v in plain]
        for key in self.aggregation:
            if key not in names:
                raise ExtensionError(
                    f"aggregation given for {key!r}, which is not monitored"
                    f"{did_you_mean(key, names)}"
                )
        self.schemes = [get_aggregation(self.aggregation.get(v.name, MEAN)) for v in plain]
        for v, scheme in zip(plain, self.schemes, strict=True):
            if not collects(scheme) and not is_fixed_shape(v.shape):
                raise ExtensionError(
                    f"{v.name!r} ({v.tag}) has shape {describe_shape(graph, v.shape)}, which "
                    f"changes with the batch, so its {scheme.name} over batches is undefined: "
                    f"monitor its `.mean()` (the mean over examples), or pass "
                    f"aggregation={{{v.name!r}: 'concatenate'}} to collect every value"
                )
        outputs = {v.tag: i for i, v in enumerate(graph.outputs)}
        self._extra = [v for v in needed if v.tag not in outputs]
        self._ready = True

    def _check_shape(self, i: int, value: Any) -> None:
        """At trace time: a value aggregated over batches keeps its first shape."""
        first = tuple(self._shapes[i].shape)
        if tuple(jnp.shape(value)) != first:
            v = self.variables[i]
            raise ExtensionError(
                f"{v.name!r} ({v.tag}) has shape {tuple(jnp.shape(value))} in this batch but "
                f"{first} in the first one; its {self.schemes[i].name} over batches needs one "
                "shape — monitor its `.mean()`, or aggregate it with 'concatenate'"
            )

    def _compile(self) -> None:
        graph, needed, extra, schemes = self.graph, self.needed, self._extra, self.schemes
        n_plain = len(self.variables)

        def values_of(params, inputs, key):
            outs, extras = graph.evaluate(params, inputs, key=key, extra=extra)
            by_tag = {v.tag: x for v, x in zip(graph.outputs, outs, strict=True)}
            by_tag.update({v.tag: x for v, x in zip(extra, extras, strict=True)})
            return [by_tag[v.tag] for v in needed]

        def step(params, accs, inputs, n, key):
            self.compilations += 1
            values = values_of(params, inputs, key)
            new = []
            for i, (acc, scheme, value) in enumerate(
                zip(accs, schemes, values[:n_plain], strict=True)
            ):
                if not collects(scheme):
                    self._check_shape(i, value)
                new.append(value if collects(scheme) else scheme.update(acc, value, n))
            return tuple(new), values

        self._fn = jax.jit(step)

    def evaluate(self, data_stream: Any, params: Mapping[str, Any]) -> dict[str, Any]:
        """``{variable name: aggregated value}`` over one epoch of ``data_stream``."""
        key = jax.random.key(0) if getattr(self.graph, "needs_key", False) else None
        for q in self.quantities:
            q.initialize()
        inputs_names = list(self.graph.inputs)
        labels = getattr(data_stream, "axis_labels", None) or {}
        seen = False
        accs: list[Any] = []
        concatenated: list[list] = []
        for batch in _epoch_iterator(data_stream):
            missing = [n for n in inputs_names if n not in batch]
            if missing:
                raise ExtensionError(
                    f"the monitoring stream lacks source(s) {missing}; it has {list(batch)}"
                )
            inputs = {n: batch[n] for n in inputs_names}
            n = _examples_in(inputs, labels, self.where)
            if not seen:
                if not self._ready:  # a cost function's outputs: learned from this batch
                    self.graph.discover(params, inputs)
                    self._setup()
                if self._fn is None:
                    self._compile()
                accs = self._init_accs(params, inputs, key)
                concatenated = [[] for _ in self.variables]
                seen = True
            if EXAMPLE_MASK in batch:  # PadBatch: the repeated rows weigh nothing
                n = padded_examples(self, batch, n, params, key)
            new, host_values = self._fn(params, tuple(accs), inputs, np.float32(n), key)
            for i, scheme in enumerate(self.schemes):
                if collects(scheme):
                    concatenated[i].append(new[i])
                else:
                    accs[i] = new[i]
            if self.quantities:
                by_tag = dict(
                    zip([v.tag for v in self.needed], jax.device_get(host_values), strict=True)
                )
                for q in self.quantities:
                    q.aggregate(
                        *[
                            np.asarray(batch[r])
                            if _is_source(self.graph, r)
                            else by_tag[_resolve(self.graph, r).tag]
                            for r in q.requires
                        ]
                    )
        if not seen:
            raise ExtensionError("the monitoring stream yielded no batches")
        results: dict[str, Any] = {}
        finals = []
        for i, scheme in enumerate(self.schemes):
            if collects(scheme):
                finals.append(join(scheme, concatenated[i]))
            else:
                finals.append(scheme.finalize(accs[i]))
        for v, value in zip(self.variables, jax.device_get(finals), strict=True):
            value = np.asarray(value)
            results[v.name] = value.item() if value.ndim == 0 else value
        for q in self.quantities:
            results[q.name] = q.get_aggregated_value()
        return results

    def _init_accs(self, params: Any, inputs: Any, key: Any) -> list[Any]:
        graph, extra = self.graph, self._extra

        def shapes_of(params, inputs, key):
            outs, extras = graph.evaluate(params, inputs, key=key, extra=extra)
            by_tag = {v.tag: x for v, x in zip(graph.outputs, outs, strict=True)}
            by_tag.update({v.tag: x for v, x in zip(extra, extras, strict=True)})
            return [by_tag[v.tag] for v in self.variables]

        if not hasattr(self, "_shapes"):
            self._shapes = jax.eval_shape(shapes_of, params, inputs, key)
        return [
            None if collects(scheme) else scheme.init(tuple(s.shape), s.dtype)
            for scheme, s in zip(self.schemes, self._shapes, strict=True)
        ]
