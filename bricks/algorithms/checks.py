"""Checks of what training and monitoring are given: a scalar cost, fixed shapes.

A graph traced with free (``None``) input sizes has *symbolic* output
shapes: a per-example cost has shape ``(d0,)``, where ``d0`` is the free
size of axis 0 of the inputs. Training needs a scalar cost, and averaging a
quantity over steps needs a shape that does not change with the batch, so
both are checked when they are set up, with a message that names the
quantity, its shape in terms of the inputs and the likely fix.

>>> describe_shape(None, (3, 4)), describe_shape(None, (5,))
('(3, 4)', '(5,)')
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from bricks.core.roles import OUTPUT
from bricks.core.tracing import Variable
from bricks.errors import AlgorithmError, CostShapeError, did_you_mean

__all__ = [
    "check_batch_sources",
    "describe_shape",
    "is_fixed_shape",
    "check_cost",
    "check_monitorable",
    "pending_output",
    "resolve_outputs",
    "flat_monitored",
    "find_by_name",
]


_logger = logging.getLogger("bricks.algorithms")


def check_batch_sources(
    batch: Mapping[str, Any], names: Sequence[str], on_unused: str, reader: str, owner: str
) -> None:
    """Refuse a batch that lacks a source ``reader`` reads; refuse (or warn of,
    as ``on_unused`` says) sources nothing reads. ``owner`` is the class whose
    ``on_unused_sources`` argument changes that."""
    missing = [n for n in names if n not in batch]
    if missing:
        raise AlgorithmError(
            f"the batch lacks source(s) {missing} that {reader} reads; "
            f"batch sources: {list(batch)}; {reader} inputs: {list(names)}"
        )
    unused = [k for k in batch if k not in names]
    if unused and on_unused == "raise":
        raise AlgorithmError(
            f"batch source(s) {unused} are not read by {reader} (inputs: {list(names)}); "
            f"select sources on the stream, or pass on_unused_sources='ignore' to {owner}"
        )
    if unused and on_unused == "warn":
        _logger.warning("batch sources %s are not read by %s", unused, reader)


def describe_shape(graph: Any, shape: Sequence[Any]) -> str:
    """``shape`` as text; a free size is named by the graph's input axis it comes from."""
    describe = getattr(graph, "describe_shape", None)
    if describe is not None:
        return describe(shape)
    parts = [str(d) for d in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def is_fixed_shape(shape: Sequence[Any] | None) -> bool:
    """Whether every size of ``shape`` is a plain integer (not a free input size)."""
    return shape is None or all(isinstance(d, int) for d in shape)


def _graph_name(graph: Any) -> str:
    where = getattr(graph, "_where", None)
    if where is not None:
        return where()
    fn = getattr(graph, "fn", None)
    return repr(getattr(fn, "__name__", fn)) if fn is not None else type(graph).__name__


def check_cost(graph: Any, where: str) -> None:
    """Refuse a graph whose cost (first output) is not a scalar.

    Graphs whose outputs are not known yet (a :class:`FunctionGraph` before
    its first batch) are checked when they are.

    Raises:
        CostShapeError: the cost has a shape other than ``()``.
        AlgorithmError: the first output is not the one named ``"cost"``.
    """
    if not getattr(graph, "outputs_known", True):
        return
    outputs = list(graph.outputs)
    if not outputs:
        raise AlgorithmError(f"{where}: the graph {_graph_name(graph)} has no outputs")
    cost = outputs[0]
    if cost.shape is not None and tuple(cost.shape) != ():
        raise CostShapeError(
            f"{where}: the cost must be a scalar; got shape {describe_shape(graph, cost.shape)} "
            f"for {cost.name!r}, the first output of {_graph_name(graph)} — did you mean "
            "`.mean()` (or `.sum()`) of it?"
        )
    names = [v.name for v in outputs]
    if "cost" in names[1:]:
        raise AlgorithmError(
            f"{where}: the cost is the first output of {_graph_name(graph)}, {names[0]!r}, but "
            f"output {names.index('cost') + 1} is named 'cost' (outputs: {names}); return the "
            "cost first"
        )


def check_monitorable(graph: Any, variables: Sequence[Any], where: str) -> None:
    """Refuse quantities whose shape changes with the batch (they cannot be averaged
    over steps or batches); the cost gets the scalar-cost message."""
    outputs = list(graph.outputs) if getattr(graph, "outputs_known", True) else []
    cost_tag = outputs[0].tag if outputs else None
    for v in variables:
        if is_fixed_shape(getattr(v, "shape", None)):
            continue
        shape = describe_shape(graph, v.shape)
        if v.tag == cost_tag:
            raise CostShapeError(
                f"{where}: the cost must be a scalar; got shape {shape} for {v.name!r}, the "
                f"first output of {_graph_name(graph)} — did you mean `.mean()` of it?"
            )
        raise CostShapeError(
            f"{where}: {v.name!r} ({v.tag}) has shape {shape}, which changes with the batch, "
            "so its values cannot be averaged over batches — monitor a reduction of it "
            "(e.g. `.mean()`) instead"
        )


def pending_output(name: str) -> Variable:
    """A stand-in for an output a cost function names only when first called
    (a key of the dict it returns); :func:`resolve_outputs` replaces it."""
    name = name.removeprefix("output:")
    return Variable(tag=f"output:{name}", name=name, roles=(OUTPUT,))


def resolve_outputs(graph: Any, variables: Sequence[Variable], known: Sequence[Any]) -> list:
    """``variables`` with each output replaced by the graph's own (with its shape);
    the monitored name is kept.

    Raises:
        AlgorithmError: an output the graph does not have (a stand-in for a
            name the cost function turned out not to return).
    """
    outputs = {v.tag: v for v in graph.outputs}
    resolved = []
    for v in variables:
        if v.tag.startswith("output:"):
            if v.tag not in outputs:
                names = [q.name for q in known]
                returned = [o.name for o in outputs.values()]
                raise AlgorithmError(
                    f"nothing named {v.name!r} to monitor{did_you_mean(v.name, names)}: "
                    f"{_graph_name(graph)} returned the outputs {returned}; "
                    f"known: {sorted(set(names))}"
                )
            v = dataclasses.replace(outputs[v.tag], name=v.name)
        resolved.append(v)
    check_monitorable(graph, resolved, "monitoring during training")
    return resolved


def flat_monitored(value: Any, variable: Variable) -> jax.Array:
    """A monitored value as a flat float32 vector for the step's accumulator;
    its shape must be the one the accumulator was sized for (checked at trace time)."""
    shape = tuple(jnp.shape(value))
    want = variable.shape
    if want is not None and is_fixed_shape(want) and shape != tuple(want):
        raise AlgorithmError(
            f"monitored {variable.name!r} ({variable.tag}) has shape {shape} in this step, but "
            f"{tuple(want)} when monitoring was set up; a value averaged over steps must keep "
            "one shape — if it depends on the batch size, monitor its `.mean()`"
        )
    return jnp.ravel(value).astype(jnp.float32)


def find_by_name(
    candidates: Sequence[Variable], name: str, error: type[Exception] = AlgorithmError
) -> Variable | None:
    """The variable a monitored name means: the one with that tag, else the graph
    output with that name, else the only variable with that name.

    Raises:
        error: several variables (none of them an output) have that name, so
            picking one would silently monitor an arbitrary one of them.
    """
    matches: dict[str, Variable] = {}
    for v in candidates:
        if v.tag == name:
            return v
        if v.name == name:
            matches.setdefault(v.tag, v)
    outputs = [v for tag, v in matches.items() if tag.startswith("output:")]
    if outputs:
        return outputs[0]
    if len(matches) > 1:
        raise error(
            f"the name {name!r} is ambiguous: it names {len(matches)} variables "
            f"({', '.join(matches)}); monitor the Variable itself (e.g. from VariableFilter) "
            "or pass its tag"
        )
    return next(iter(matches.values()), None)
