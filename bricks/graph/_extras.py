"""Graph transforms Blocks had beside the basic ones: replacing outputs and
inputs (:meth:`ComputationGraph.replace`) and :func:`collect_parameters`."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bricks.core.application import application
from bricks.core.brick import Brick
from bricks.core.roles import AUXILIARY, COLLECTED, COLLECTOR
from bricks.core.tracing import Intervention, Variable, annotate, current_frame
from bricks.errors import GraphError

from ._graph import ComputationGraph, _constant_like, _output_values

__all__ = ["collect_parameters"]


def _as_function(value: Any) -> Callable[[Any], Any]:
    if callable(value):
        return value
    return lambda old: _constant_like(value, old)


def replace(graph: ComputationGraph, replacements: Any) -> ComputationGraph:
    """See :meth:`ComputationGraph.replace`."""
    items = list(replacements.items() if isinstance(replacements, Mapping) else replacements)
    inner: dict[str, Intervention] = {}
    inputs: dict[str, Callable[[Any], Any]] = {}
    outputs: dict[str, Callable[[Any], Any]] = {}
    for var, value in items:
        if isinstance(var, str) and var in graph.inputs:
            inputs[var] = _as_function(value)
            continue
        try:
            found = graph.get_variable(var)
        except GraphError:
            warnings.warn(
                f"replace: {getattr(var, 'tag', var)!r} is not a part of this graph; its "
                "replacement is left out",
                UserWarning,
                stacklevel=3,
            )
            continue
        if found.has_role(AUXILIARY):
            warnings.warn(
                f"replace: {found.tag!r} is an auxiliary variable; what is computed from it "
                "does not change (replace the variable it was computed from instead)",
                UserWarning,
                stacklevel=3,
            )
        fn = _as_function(value)
        if found.tag.startswith("output:"):
            outputs[found.name] = fn
        else:
            inner[found.tag] = Intervention(lambda v, k, f=fn: f(v))
    new = graph._with_interventions(inner)
    if inputs or outputs:
        new = _replace_io(new, inputs, outputs)
    return new


def _replace_io(
    graph: ComputationGraph,
    inputs: Mapping[str, Callable[[Any], Any]],
    outputs: Mapping[str, Callable[[Any], Any]],
) -> ComputationGraph:
    fn = graph.fn
    names = [v.name for v in graph.outputs]
    keys = graph._output_keys
    kind = graph._output_kind

    def replaced(**kwargs: Any) -> Any:
        kwargs = {k: inputs[k](v) if k in inputs else v for k, v in kwargs.items()}
        out = fn(**kwargs)
        if not outputs:
            return out
        values = _output_values(out, keys, "the graph function")
        values = [outputs[n](v) if n in outputs else v for n, v in zip(names, values, strict=True)]
        if keys is not None:
            return dict(zip(keys, values, strict=True))
        if kind is not None:
            return kind(values)
        return values[0]

    replaced.__name__ = getattr(fn, "__name__", "output")
    return graph._derive(fn=replaced)


class ParameterCollector(Brick):
    """Holds one flat parameter (role ``COLLECTOR``) that others are slices of."""

    def __init__(self, size: int, name: str = "collected_parameters") -> None:
        super().__init__(name=name)
        self.size = int(size)

    def _allocate(self) -> None:
        self.add_parameter(
            "collected_parameters",
            (self.size,),
            (COLLECTOR,),
            lambda key, shape, dtype: jnp.zeros(shape, dtype),
        )

    @application
    def slice(self, start: int, shape: tuple[int, ...]) -> jax.Array:
        size = int(np.prod(shape))
        return self.parameter("collected_parameters")[start : start + size].reshape(shape)


def collect_parameters(
    graph: ComputationGraph, parameters: Sequence[Variable], name: str = "collected_parameters"
) -> ComputationGraph:
    """A graph whose ``parameters`` are replaced by slices of one flat vector.

    As Blocks' ``collect_parameters``: the new graph has one parameter, a
    1-d vector (role ``COLLECTOR``, path ``/collected_parameters.collected_parameters``)
    holding the current values of ``parameters`` one after the other; each
    of them becomes a reshaped slice of it, a variable with role
    ``COLLECTED``. Useful for optimizers that want one vector.
    """
    params = [graph.get_variable(p) for p in parameters]
    if not params or any(p.path is None for p in params):
        raise GraphError("collect_parameters takes parameters of the graph (graph.parameters)")
    values = graph.parameter_values()
    flat = jnp.concatenate([jnp.ravel(values[p.path]).astype(jnp.float32) for p in params])
    collector = ParameterCollector(flat.shape[0], name=name)
    collector.allocate()
    collector.set_parameter_values({f"{collector.path}.collected_parameters": flat})
    interventions = {}
    start = 0
    for p in params:
        shape = tuple(p.shape)

        def from_collector(value: Any, key: Any, start: int = start, p: Variable = p) -> Any:
            part = collector.slice(start, tuple(jnp.shape(value))).astype(value.dtype)
            rec = current_frame().recorder
            base = f"{p.path}:collected"
            if rec is not None and base in rec.counts:  # one variable however often it is read
                return part
            return annotate(part, p.name, (COLLECTED,), brick=p.brick, base=base)

        interventions[p.path] = Intervention(from_collector, replaces_parameter=True)
        start += int(np.prod(shape))
    return graph._with_interventions(interventions)
