"""Blocks' ``UpdatesAlgorithm`` and the update functions it shares with GradientDescent.

Blocks trained shared variables with Theano updates: pairs ``(variable,
expression)`` evaluated together, each reading the values *before* the step.
In bricks a value is an entry of a flat ``{name: array}`` mapping and an
update is a pair ``(name, fn)`` with ``fn(values, **sources)`` returning the
new value; the batch sources ``fn`` reads are the keyword parameters after
``values``. All updates of one step read the old values, as in Theano.

>>> import numpy as np
>>> algorithm = UpdatesAlgorithm(updates=[("n", lambda v, m: v["n"] + m)],
...                              values={"n": np.float32(1)})
>>> algorithm.inputs
['m']
>>> algorithm.process_batch({"m": np.float32(2)})
>>> float(algorithm.parameter_values()["n"])
3.0
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bricks.algorithms.checks import check_batch_sources
from bricks.algorithms.function_graph import FunctionGraph
from bricks.core.roles import AUXILIARY
from bricks.core.tracing import Variable
from bricks.errors import AlgorithmError, did_you_mean

__all__ = [
    "UpdatesAlgorithm",
    "BlocksUpdates",
    "as_update_pairs",
    "function_inputs",
    "gradient_variables",
    "gradients_only_cost",
]

UpdatePair = tuple[str, Callable[..., Any]]


def function_inputs(fn: Callable[..., Any]) -> list[str]:
    """The batch sources ``fn(values, **sources)`` reads: its parameters after the first."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in params[1:]
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]


def as_update_pairs(updates: Any, what: str = "updates") -> list[UpdatePair]:
    """``[(name, fn), ...]`` from a mapping or a list of pairs (Blocks accepted both).

    Raises:
        AlgorithmError: for anything else, or a pair whose function is not callable.
    """
    if updates is None:
        return []
    if isinstance(updates, Mapping):
        pairs = list(updates.items())
    elif isinstance(updates, list | tuple) and all(
        isinstance(p, tuple | list) and len(p) == 2 for p in updates
    ):
        pairs = [tuple(p) for p in updates]
    else:
        raise AlgorithmError(
            f"{what} must be a mapping {{name: fn}} or a list of (name, fn) pairs, "
            f"got {type(updates).__name__}: {updates!r}"
        )
    out = []
    for name, fn in pairs:
        name = getattr(name, "path", name)
        if not callable(fn):
            raise AlgorithmError(
                f"{what}: the entry for {name!r} must be a function fn(values, **sources), "
                f"got {type(fn).__name__}"
            )
        out.append((str(name), fn))
    return out


def call_update(fn: Callable[..., Any], values: Mapping[str, Any], batch: Mapping[str, Any]) -> Any:
    """``fn(values, **the sources it reads)``."""
    return fn(dict(values), **{n: batch[n] for n in function_inputs(fn)})


def gradients_only_cost(
    cost: Any, parameters: Any, gradient_fns: Mapping[str, Callable[..., Any]]
) -> tuple[Any, Any]:
    """``(cost, parameters)`` for :class:`GradientDescent` given Blocks' ``gradients=``.

    Without a cost, the values come from ``parameters`` (a ``{name: initial
    value}`` mapping), the graph has no cost to monitor (its only output is
    named ``no_cost``) and the trained parameters are the gradients' keys.

    Raises:
        AlgorithmError: no cost and no gradients ("no cost"), a cost function
            or gradients without values ("no parameters"), or a gradient for
            a name without a value.
    """
    if cost is None and not gradient_fns:
        raise AlgorithmError(
            "no cost: give cost= (a ComputationGraph or a function cost(params, **batch)) "
            "or gradients= {parameter: fn(params, **batch)}"
        )
    if (cost is None or callable(cost)) and not hasattr(cost, "evaluate"):
        if not isinstance(parameters, Mapping) or not parameters:
            raise AlgorithmError(
                "no parameters: a cost function or gradients= without a graph need "
                "parameters= as a non-empty {name: initial value} dict, got "
                f"{type(parameters).__name__}"
            )
    if cost is not None:
        return cost, parameters
    unknown = [k for k in gradient_fns if k not in parameters]
    if unknown:
        raise AlgorithmError(
            f"gradients given for {unknown}, which have no value in parameters= "
            f"(names: {list(parameters)}){did_you_mean(unknown[0], parameters)}"
        )
    graph = FunctionGraph(
        lambda params: jnp.zeros((), jnp.float32), parameters, outputs=["no_cost"]
    )
    return graph, list(gradient_fns)


def gradient_variables(
    graph: Any, trained: Sequence[str], gradient_fns: Mapping[str, Any]
) -> dict[str, Variable]:
    """``{path: Variable}`` of each trained parameter's gradient, to monitor.

    Raises:
        AlgorithmError: a gradient function was given for an untrained parameter.
    """
    untrained = [k for k in gradient_fns if k not in trained]
    if untrained:
        raise AlgorithmError(
            f"gradients given for {untrained}, which are not trained parameters "
            f"(trained: {list(trained)})"
        )
    shapes = {p.path: tuple(p.shape or ()) for p in graph.parameters}
    return {
        k: Variable(
            tag=f"algorithm:gradient:{k}",
            name=f"{k}_gradient",
            roles=(AUXILIARY,),
            shape=shapes.get(k, ()),
        )
        for k in trained
    }


class BlocksUpdates:
    """Blocks' ``parameters``, ``inputs``, ``updates`` and ``add_updates`` of a
    :class:`GradientDescent` (which sets ``graph``, ``parameter_paths``,
    ``step_rule``, ``_gradient_fns`` and ``_updates``)."""

    graph: Any
    parameter_paths: list[str]
    step_rule: Any
    _gradient_fns: dict[str, Callable[..., Any]]
    _updates: list[UpdatePair]

    @property
    def parameters(self) -> list[str]:
        """The paths of the trained parameters, in order (Blocks' ``parameters``)."""
        return list(self.parameter_paths)

    @property
    def inputs(self) -> list[str]:
        """The batch sources one step reads: the cost's, then the gradients' and updates'."""
        names = list(self.graph.inputs)
        for fn in list(self._gradient_fns.values()) + [fn for _, fn in self._updates]:
            names.extend(n for n in function_inputs(fn) if n not in names)
        return names

    @property
    def updates(self) -> list[tuple[str, Any]]:
        """What a step writes, as Blocks listed it: ``(path, step_rule)`` for each
        trained parameter, then the ``(name, fn)`` pairs of :meth:`add_updates`."""
        return [(k, self.step_rule) for k in self.parameter_paths] + list(self._updates)

    def add_updates(self, updates: Any) -> None:
        """Also set untrained values every step (Blocks' ``add_updates``).

        Args:
            updates: ``{name: fn}`` or ``[(name, fn)]``; ``fn(params,
                **sources)`` returns the new value of parameter ``name``,
                computed from the values before the step.

        Raises:
            AlgorithmError: for an unknown name or a trained parameter (its
                value is the step rule's to write).
        """
        pairs = as_update_pairs(updates)
        known = [p.path for p in self.graph.parameters]
        for name, _ in pairs:
            if name not in known:
                raise AlgorithmError(
                    f"an update writes {name!r}, which is not a parameter of the cost"
                    f"{did_you_mean(name, known)}; known: {known}"
                )
            if name in self.parameter_paths:
                raise AlgorithmError(
                    f"an update writes {name!r}, which is trained by the step rule; "
                    "leave it out of the trained parameters to update it by hand"
                )
        self._updates.extend(pairs)
        self._step_fn = self._multi_fn = None


class UpdatesAlgorithm:
    """Apply updates to named values at every batch (Blocks' ``UpdatesAlgorithm``).

    Args:
        updates: ``[(name, fn), ...]`` or ``{name: fn}``; ``fn(values,
            **sources)`` returns the new value of ``name``.
        values: initial values ``{name: array}`` of everything updates write
            or read (Blocks' shared variables).
        outputs: ``{name: fn(values, **sources)}``: more quantities to
            monitor (with :class:`~bricks.extensions.TrainingDataMonitoring`).
        on_unused_sources: ``"raise"`` (default) or ``"ignore"`` when a
            batch has sources nothing reads.

    Every step runs as one jitted function; monitored quantities are
    accumulated on the device and read by ``read_monitor``.
    """

    def __init__(
        self,
        updates: Any = None,
        values: Mapping[str, Any] | None = None,
        outputs: Mapping[str, Callable[..., Any]] | None = None,
        on_unused_sources: str = "raise",
    ) -> None:
        if on_unused_sources not in ("raise", "ignore"):
            raise AlgorithmError(
                f"on_unused_sources must be 'raise' or 'ignore', got {on_unused_sources!r}"
            )
        self.on_unused_sources = on_unused_sources
        self._initial = {str(k): np.asarray(v) for k, v in (values or {}).items()}
        self._updates: list[UpdatePair] = []
        self.outputs = {str(k): fn for k, fn in as_update_pairs(outputs, "outputs")}
        self._monitors: list[list[str]] = []
        self._values: dict[str, jax.Array] | None = None
        self._acc: list[jax.Array] = []
        self._step_fn: Callable | None = None
        self.compilations = 0
        self.add_updates(updates if updates is not None else [])

    # -- configuration -------------------------------------------------------
    @property
    def updates(self) -> list[UpdatePair]:
        """The ``(name, fn)`` pairs applied at every step."""
        return list(self._updates)

    def add_updates(self, updates: Any) -> None:
        """Also apply ``updates`` (a mapping or a list of ``(name, fn)`` pairs)."""
        pairs = as_update_pairs(updates)
        for name, _ in pairs:
            if name not in self._initial:
                raise AlgorithmError(
                    f"an update writes {name!r}, which has no initial value"
                    f"{did_you_mean(name, self._initial)}; give it in values="
                )
        self._updates.extend(pairs)
        self._step_fn = None

    @property
    def inputs(self) -> list[str]:
        """The batch sources the updates and outputs read, in order of appearance."""
        names: list[str] = []
        for fn in [fn for _, fn in self._updates] + list(self.outputs.values()):
            names.extend(n for n in function_inputs(fn) if n not in names)
        return names

    # -- monitoring ----------------------------------------------------------
    @property
    def quantities(self) -> list[Variable]:
        """What can be monitored: the outputs and the values."""
        names = list(self.outputs) + [n for n in self._initial if n not in self.outputs]
        return [Variable(tag=f"updates:{n}", name=n, roles=(AUXILIARY,)) for n in names]

    def resolve(self, variable: Any) -> Variable:
        """The monitorable Variable named ``variable`` (or ``variable`` itself)."""
        name = getattr(variable, "name", variable)
        for v in self.quantities:
            if v.name == name:
                return v
        known = [v.name for v in self.quantities]
        raise AlgorithmError(
            f"nothing named {name!r} to monitor{did_you_mean(str(name), known)}; known: {known}"
        )

    def add_monitor(self, variables: Sequence[Any]) -> int:
        """Accumulate ``variables`` (names) at every step; returns a slot id."""
        self._monitors.append([self.resolve(v).name for v in variables])
        self._acc.append(None)  # type: ignore[arg-type]
        self._step_fn = None
        return len(self._monitors) - 1

    def read_monitor(self, slot: int, log: Any = None) -> dict[str, Any]:
        """Means of the slot's quantities over the steps since its last read; resets it."""
        acc = self._acc[slot]
        self._acc[slot] = None  # type: ignore[call-overload]
        if acc is None:
            return {}
        sums, count = jax.device_get(acc)
        out = {}
        for name, total in zip(self._monitors[slot], sums, strict=True):
            value = np.asarray(total) / max(float(count), 1.0)
            out[name] = value.item() if value.ndim == 0 else value
        return out

    # -- training ------------------------------------------------------------
    def initialize(self) -> None:
        """Read the initial values onto the device (once)."""
        if self._values is None:
            self._values = jax.device_put(dict(self._initial))

    def _compile(self) -> None:
        updates, outputs, monitors = list(self._updates), dict(self.outputs), self._monitors

        def step(values, accs, batch):
            self.compilations += 1
            new = dict(values)
            for name, fn in updates:
                new[name] = jnp.asarray(call_update(fn, values, batch), values[name].dtype)
            seen = dict(values)
            seen.update({n: call_update(fn, values, batch) for n, fn in outputs.items()})
            new_accs = []
            for acc, names in zip(accs, monitors, strict=True):
                current = [jnp.asarray(seen[n], jnp.float32) for n in names]
                if acc is None:
                    new_accs.append((current, jnp.float32(1)))
                else:
                    new_accs.append(
                        ([a + c for a, c in zip(acc[0], current, strict=True)], acc[1] + 1)
                    )
            return new, new_accs

        self._step_fn = jax.jit(step)

    def process_batch(self, batch: Mapping[str, Any]) -> None:
        """Apply every update once, reading ``batch``'s sources."""
        self.initialize()
        names = self.inputs
        check_batch_sources(
            batch, names, self.on_unused_sources, "the updates", "UpdatesAlgorithm"
        )
        if self._step_fn is None:
            self._compile()
        inputs = {n: np.asarray(batch[n]) for n in names}  # jit moves them: no eager op
        self._values, self._acc = self._step_fn(self._values, list(self._acc), inputs)

    def parameter_values(self) -> dict[str, np.ndarray]:
        """Host copies of the current values."""
        self.initialize()
        return jax.device_get(dict(self._values))  # type: ignore[arg-type]

    def current_parameters(self) -> dict[str, jax.Array]:
        """The device arrays of the current values."""
        self.initialize()
        return dict(self._values)  # type: ignore[arg-type]

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(json, arrays)`` for a checkpoint: the current values."""
        return {"names": list(self._initial)}, {
            f"values/{k}": np.asarray(v) for k, v in self.parameter_values().items()
        }

    def set_state(self, meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
        """Restore :meth:`get_state`'s output."""
        self.initialize()
        values = {}
        for name, old in self._values.items():  # type: ignore[union-attr]
            if f"values/{name}" not in arrays:
                raise AlgorithmError(f"the saved state lacks value {name!r}")
            values[name] = jnp.asarray(arrays[f"values/{name}"], old.dtype)
        self._values = values
