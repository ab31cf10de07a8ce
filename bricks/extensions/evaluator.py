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

from bricks.errors import ExtensionError, did_you_mean
from bricks.extensions.aggregation import (
    CONCATENATE,
    MEAN,
    Aggregation,
    MonitoredQuantity,
    get_aggregation,
)

__all__ = ["DatasetEvaluator"]


def _resolve(graph: Any, variable: Any) -> Any:
    if not isinstance(variable, str):
        return variable
    candidates = list(graph.outputs) + list(getattr(graph, "variables", []))
    for v in candidates:
        if v.name == variable or v.tag == variable:
            return v
    names = [v.name for v in candidates]
    raise ExtensionError(
        f"the graph has no variable named {variable!r}{did_you_mean(variable, names)}"
    )


def _epoch_iterator(stream: Any) -> Any:
    getter = getattr(stream, "get_epoch_iterator", None)
    if getter is not None:
        try:
            return getter(as_dict=True)
        except TypeError:
            return getter()
    return iter(stream)


class DatasetEvaluator:
    """Evaluate variables of ``graph`` over a stream and aggregate them.

    Args:
        variables: graph Variables (or names) and :class:`MonitoredQuantity`
            objects.
        graph: the computation graph (or ``FunctionGraph``) they belong to.
        aggregation: ``{name: scheme}`` overriding the default mean over
            examples; scheme is ``"mean"``, ``"min"``, ``"max"``,
            ``"concatenate"`` or an :class:`Aggregation`.
    """

    def __init__(
        self,
        variables: Sequence[Any],
        graph: Any,
        aggregation: Mapping[str, str | Aggregation] | None = None,
    ) -> None:
        self.graph = graph
        self.quantities = [v for v in variables if isinstance(v, MonitoredQuantity)]
        plain = [_resolve(graph, v) for v in variables if not isinstance(v, MonitoredQuantity)]
        needed = list(plain)
        for q in self.quantities:
            for r in q.requires:
                r = _resolve(graph, r)
                if r not in needed:
                    needed.append(r)
        self.variables = plain
        self.needed = needed
        aggregation = dict(aggregation or {})
        names = [v.name for v in plain]
        for key in aggregation:
            if key not in names:
                raise ExtensionError(
                    f"aggregation given for {key!r}, which is not monitored"
                    f"{did_you_mean(key, names)}"
                )
        self.schemes = [get_aggregation(aggregation.get(v.name, MEAN)) for v in plain]
        outputs = {v.tag: i for i, v in enumerate(graph.outputs)}
        self._extra = [v for v in needed if v.tag not in outputs]
        self._fn = None

    def _compile(self) -> None:
        graph, needed, extra, schemes = self.graph, self.needed, self._extra, self.schemes
        n_plain = len(self.variables)

        def values_of(params, inputs, key):
            outs, extras = graph.evaluate(params, inputs, key=key, extra=extra)
            by_tag = {v.tag: x for v, x in zip(graph.outputs, outs, strict=False)}
            by_tag.update({v.tag: x for v, x in zip(extra, extras, strict=True)})
            return [by_tag[v.tag] for v in needed]

        def step(params, accs, inputs, n, key):
            values = values_of(params, inputs, key)
            new = []
            for acc, scheme, value in zip(accs, schemes, values[:n_plain], strict=True):
                new.append(value if scheme is CONCATENATE else scheme.update(acc, value, n))
            return tuple(new), values

        self._fn = jax.jit(step)

    def evaluate(self, data_stream: Any, params: Mapping[str, Any]) -> dict[str, Any]:
        """``{variable name: aggregated value}`` over one epoch of ``data_stream``."""
        if self._fn is None:
            self._compile()
        key = jax.random.key(0) if getattr(self.graph, "needs_key", False) else None
        accs: list[Any] = [None] * len(self.variables)
        concatenated: list[list] = [[] for _ in self.variables]
        for q in self.quantities:
            q.initialize()
        inputs_names = list(self.graph.inputs)
        seen = False
        for batch in _epoch_iterator(data_stream):
            missing = [n for n in inputs_names if n not in batch]
            if missing:
                raise ExtensionError(
                    f"the monitoring stream lacks source(s) {missing}; it has {list(batch)}"
                )
            inputs = {n: batch[n] for n in inputs_names}
            n = np.shape(inputs[inputs_names[0]])[0] if inputs_names else 1
            if not seen:
                accs = self._init_accs(params, inputs, key)
                seen = True
            new, host_values = self._fn(params, tuple(accs), inputs, np.float32(n), key)
            for i, scheme in enumerate(self.schemes):
                if scheme is CONCATENATE:
                    concatenated[i].append(new[i])
                else:
                    accs[i] = new[i]
            if self.quantities:
                by_tag = dict(
                    zip([v.tag for v in self.needed], jax.device_get(host_values), strict=True)
                )
                for q in self.quantities:
                    q.aggregate(*[by_tag[_resolve(self.graph, r).tag] for r in q.requires])
        if not seen:
            raise ExtensionError("the monitoring stream yielded no batches")
        results: dict[str, Any] = {}
        finals = []
        for i, scheme in enumerate(self.schemes):
            if scheme is CONCATENATE:
                finals.append(jnp.concatenate([jnp.atleast_1d(x) for x in concatenated[i]]))
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
            by_tag = {v.tag: x for v, x in zip(graph.outputs, outs, strict=False)}
            by_tag.update({v.tag: x for v, x in zip(extra, extras, strict=True)})
            return [by_tag[v.tag] for v in self.variables]

        if not hasattr(self, "_shapes"):
            self._shapes = jax.eval_shape(shapes_of, params, inputs, key)
        return [
            None if scheme is CONCATENATE else scheme.init(tuple(s.shape), s.dtype)
            for scheme, s in zip(self.schemes, self._shapes, strict=True)
        ]
