"""A ragged last batch in the same compiled program: the example mask.

:class:`~bricks.data.PadBatch` pads a short batch to the full batch size by
repeating its examples and adds an ``example_mask`` source (1 for the real
examples, 0 for the repeats). The step and the monitoring function then see
one shape all epoch, so a ragged last batch compiles no second program.

The padded rows must not count, and no generic trick can make them not
count: a cost that is not a mean over examples (a batch-norm statistic, a
sum, a max) cannot be reweighted after the fact. So the mask is an input of
the cost graph, and the cost averages with it: :func:`example_mean` of the
per-example costs equals the unpadded batch's mean, and so do its gradients.
What cannot be checked to be exact is refused with
:class:`~bricks.errors.ExampleMaskError`, at trace time (no run-time cost):

- a batch has ``example_mask`` but the cost does not read it;
- the cost, a monitored quantity or a state update (batch-norm statistics)
  depends on the batch but not on ``example_mask`` (found by dead-code
  elimination of the traced program: that value ignores the mask);
- a monitoring scheme that keeps per-example rows (``concatenate``,
  ``stack``), or a host-side :class:`~bricks.extensions.MonitoredQuantity`
  that does not require ``example_mask``, would see the padded rows.

A value that reads the mask is trusted to honour it; :func:`example_mean`
does.

>>> import jax.numpy as jnp
>>> float(example_mean(jnp.array([1.0, 3.0, 1.0, 3.0]), jnp.array([1.0, 1.0, 0.0, 0.0])))
2.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.interpreters import partial_eval as pe

from bricks.data import EXAMPLE_MASK
from bricks.errors import ExampleMaskError

__all__ = [
    "EXAMPLE_MASK",
    "check_mask_is_read",
    "check_quantities_read_mask",
    "example_mean",
    "guard_example_mask",
    "mask_dependence",
    "padded_examples",
    "unmasked_values",
    "variable_dependence",
]

_HOW = (
    "average over examples with the mask, e.g. example_mean(costs_per_example, "
    f"{EXAMPLE_MASK}) from bricks.algorithms"
)


def example_mean(values: Any, example_mask: Any) -> jax.Array:
    """The mean over the real examples of per-example ``values`` ``(batch, ...)``.

    Args:
        values: per-example values, the batch axis first.
        example_mask: ``(batch,)``, 1 for real examples, 0 for padding (the
            ``example_mask`` source of :class:`~bricks.data.PadBatch`).

    Returns:
        ``sum(mask * values, axis=0) / sum(mask)``: the unpadded batch's mean.

    Raises:
        ExampleMaskError: the mask is not ``(batch,)`` for ``values``' batch axis.
    """
    values = jnp.asarray(values)
    if not jnp.issubdtype(values.dtype, jnp.inexact):
        values = values.astype(jnp.float32)
    mask = jnp.asarray(example_mask)
    if mask.ndim != 1 or values.ndim == 0 or values.shape[0] != mask.shape[0]:
        raise ExampleMaskError(
            f"example_mean: expected values (batch, ...) and a mask (batch,), found values "
            f"of shape {values.shape} and a mask of shape {mask.shape}. (A ComputationGraph "
            "gives a free size None one size per axis position, so a time-major (time, batch) "
            "input and example_mask=(None,) differ: PadBatch's batches all have one size, "
            "so declare it, e.g. words=((None, 64), 'int32'), example_mask=(64,))"
        )
    weights = mask.astype(values.dtype).reshape(mask.shape + (1,) * (values.ndim - 1))
    return jnp.sum(values * weights, axis=0) / jnp.sum(weights)


def check_mask_is_read(batch: Mapping[str, Any], inputs: Sequence[str], where: str) -> None:
    """A batch padded by ``PadBatch`` needs a graph that reads ``example_mask``.

    Raises:
        ExampleMaskError: the batch has ``example_mask`` and ``inputs`` lack it.
    """
    if EXAMPLE_MASK in batch and EXAMPLE_MASK not in inputs:
        raise ExampleMaskError(
            f"{where}: the batch has an {EXAMPLE_MASK!r} source (PadBatch padded a short "
            f"batch with repeated examples), but the cost reads only {list(inputs)}, so the "
            f"repeats would count. Give the cost an {EXAMPLE_MASK} input and {_HOW}; or drop "
            "the short batch instead (Batch(..., strictness=1))"
        )


def mask_dependence(
    fn: Callable[[Any, Mapping[str, Any]], Sequence[Any]],
    params: Any,
    inputs: Mapping[str, Any],
) -> list[tuple[bool, bool]]:
    """For each output of ``fn(params, inputs)``: (depends on the batch, on the mask).

    "Depends" is what is left after dead-code elimination of the traced
    program (``jax.make_jaxpr``), so a value computed without the mask is
    found whatever the model does; works inside a trace too.
    """
    closed = jax.make_jaxpr(fn)(params, dict(inputs))
    jaxpr = closed.jaxpr
    n_params = len(jax.tree_util.tree_leaves(params))
    names = [path[0].key for path, _ in jax.tree_util.tree_flatten_with_path(dict(inputs))[0]]
    n_out = len(jaxpr.outvars)
    found = []
    for i in range(n_out):
        _, used = pe.dce_jaxpr(jaxpr, [j == i for j in range(n_out)])
        read = {n for n, u in zip(names, used[n_params:], strict=True) if u}
        found.append((bool(read), EXAMPLE_MASK in read))
    return found


def variable_dependence(
    graph: Any,
    params: Any,
    inputs: Mapping[str, Any],
    variables: Sequence[Any],
    key: Any = None,
) -> list[tuple[bool, bool]]:
    """:func:`mask_dependence` of ``variables`` (outputs or intermediate
    Variables of ``graph``)."""
    outputs = {v.tag: i for i, v in enumerate(graph.outputs)}
    extra = [v for v in variables if v.tag not in outputs]

    def values(params, inputs):
        outs, extras = graph.evaluate(params, inputs, key=key, extra=extra)
        by_tag = {v.tag: x for v, x in zip(graph.outputs, outs, strict=True)}
        by_tag.update({v.tag: x for v, x in zip(extra, extras, strict=True)})
        return [by_tag[v.tag] for v in variables]

    return mask_dependence(values, params, inputs)


def unmasked_values(
    graph: Any,
    params: Any,
    inputs: Mapping[str, Any],
    variables: Sequence[Any],
    key: Any = None,
) -> list[Any]:
    """The ``variables`` (outputs or intermediate Variables of ``graph``) whose
    values depend on the batch but not on ``example_mask``."""
    found = variable_dependence(graph, params, inputs, variables, key)
    return [v for v, (batch, mask) in zip(variables, found, strict=True) if batch and not mask]


def _describe(variables: Sequence[Any]) -> str:
    return ", ".join(f"{v.name!r} ({v.tag})" for v in variables)


def guard_example_mask(algorithm: Any, step: Callable) -> Callable:
    """``step(state, batch, base_key)`` that first checks, at trace time, that the
    cost, the monitored quantities and the state updates honour ``example_mask``
    when the batch has one (nothing is added to the compiled program)."""

    def checked(state: Any, batch: Mapping[str, Any], base_key: Any) -> Any:
        if EXAMPLE_MASK in batch:
            graph = algorithm.graph
            wanted = [graph.outputs[0]]
            for slot in algorithm._monitors:
                wanted += [v for v in slot if not v.tag.startswith("algorithm:")]
            wanted += [v for _, v, _ in getattr(graph, "state_updates", [])]
            wanted = list({v.tag: v for v in wanted}.values())
            key = jax.random.key(0) if getattr(graph, "needs_key", False) else None
            inputs = {n: batch[n] for n in graph.inputs}
            bad = unmasked_values(graph, state["params"], inputs, wanted, key)
            if bad:
                raise ExampleMaskError(
                    f"GradientDescent: the batch is padded to full size ({EXAMPLE_MASK!r} "
                    f"source, from PadBatch), but {_describe(bad)} depend on the batch and "
                    f"not on {EXAMPLE_MASK}, so its repeated rows would count. For a cost or a "
                    f"monitored value: {_HOW}. A state update (batch-norm statistics) cannot "
                    "be reweighted: drop the short batch instead (Batch(..., strictness=1))"
                )
        return step(state, batch, base_key)

    return checked


def check_quantities_read_mask(
    batch: Mapping[str, Any], quantities: Sequence[Any], where: str
) -> None:
    """Host-side MonitoredQuantities see every row of a padded batch: each must
    require ``example_mask`` to tell the repeats apart.

    Raises:
        ExampleMaskError: a quantity does not require ``example_mask``.
    """
    if EXAMPLE_MASK not in batch:
        return
    blind = [
        q.name
        for q in quantities
        if EXAMPLE_MASK not in [getattr(r, "name", r) for r in q.requires]
    ]
    if blind:
        raise ExampleMaskError(
            f"{where}: the batch is padded to full size ({EXAMPLE_MASK!r} source, from "
            f"PadBatch), but the MonitoredQuantity {blind} does not require {EXAMPLE_MASK!r}, "
            f"so it would aggregate the repeated rows; add {EXAMPLE_MASK!r} to its requires "
            "and skip the rows where it is 0"
        )


def padded_examples(
    evaluator: Any, batch: Mapping[str, Any], n: int, params: Any, key: Any
) -> float:
    """How many real examples a padded batch holds (the sum of its ``example_mask``)
    for :class:`~bricks.extensions.DatasetEvaluator`'s weights, after checking (once
    per evaluator, at its first padded batch) that every monitored value honours
    the mask.

    Raises:
        ExampleMaskError: the graph does not read the mask, a monitored value
            depends on the batch but not on the mask (or keeps per-example
            rows: ``concatenate``/``stack``), a MonitoredQuantity does not
            require it, or the mask's length is not the batch's.
    """
    where = evaluator.where
    mask = np.asarray(batch[EXAMPLE_MASK])
    if mask.shape != (n,):
        raise ExampleMaskError(
            f"{where}: {EXAMPLE_MASK!r} has shape {mask.shape}; expected ({n},), one entry per "
            "example of the batch"
        )
    if not getattr(evaluator, "_mask_checked", False):
        graph = evaluator.graph
        check_mask_is_read(batch, list(graph.inputs), where)
        check_quantities_read_mask(batch, evaluator.quantities, where)
        inputs = {name: batch[name] for name in graph.inputs}
        found = variable_dependence(graph, params, inputs, evaluator.variables, key)
        bad = [
            f"{v.name!r} ({v.tag}, {scheme.name})"
            for v, scheme, (on_batch, on_mask) in zip(
                evaluator.variables, evaluator.schemes, found, strict=True
            )
            if on_batch and (not on_mask or scheme.name in ("concatenate", "stack"))
        ]
        if bad:
            raise ExampleMaskError(
                f"{where}: the batches are padded to full size ({EXAMPLE_MASK!r} source, from "
                f"PadBatch), but {', '.join(bad)} would count the repeated rows: it does not "
                f"depend on {EXAMPLE_MASK}, or its aggregation keeps per-example rows. {_HOW}; "
                "or monitor an unpadded stream"
            )
        evaluator._mask_checked = True
    return float(mask.sum())
