"""Adapting a plain JAX cost function to the computation-graph protocol.

:class:`GradientDescent` and the monitoring extensions only use a small part
of :class:`bricks.graph.ComputationGraph` (``inputs``, ``outputs``,
``parameters``, ``parameter_values()``, ``set_parameter_values()``,
``evaluate()``, ``needs_key``, ``state_updates``). :class:`FunctionGraph`
offers that protocol for a function ``cost(params, **batch)``, so a plain JAX
user can train with the main loop and its extensions.

>>> import numpy as np
>>> graph = FunctionGraph(lambda p, x: (p["w"] * x).sum(), {"w": np.ones(2, np.float32)})
>>> graph.inputs, [v.name for v in graph.outputs], [v.path for v in graph.parameters]
(['x'], ['cost'], ['w'])
>>> outs, _ = graph.evaluate(graph.parameter_values(), {"x": np.array([1.0, 2.0])})
>>> float(outs[0])
3.0

A returned dict names the outputs (the first entry is the cost); the names
are learned from one batch, before any step, and values are read by key:

>>> graph = FunctionGraph(lambda p, x: {"cost": (p["w"] * x).sum(), "w_sum": p["w"].sum()},
...                       {"w": np.ones(2, np.float32)})
>>> graph.outputs_known
False
>>> graph.discover(graph.parameter_values(), {"x": np.ones(2, np.float32)})
>>> [(v.name, v.shape) for v in graph.outputs]
[('cost', ()), ('w_sum', ())]
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bricks.core.roles import COST, OUTPUT, PARAMETER
from bricks.core.tracing import Variable
from bricks.errors import AlgorithmError, CostShapeError

__all__ = ["FunctionGraph"]


class FunctionGraph:
    """A cost function and its parameter values, seen as a computation graph.

    Args:
        fn: ``fn(params, **inputs)`` returning the cost, or a tuple/dict of
            outputs whose first is the cost (name them with ``outputs``).
            A keyword parameter named ``key`` receives a fresh PRNG key each
            training step (``needs_key`` is then true).
        parameters: initial values, a flat ``{name: array}`` mapping.
        outputs: names of the outputs (default ``("cost",)``; taken from the
            keys, in the order returned, when ``fn`` returns a dict). The
            names of a returned dict are learned from the first batch (see
            :meth:`discover`) and its values are always read by key.
        inputs: names of the batch sources ``fn`` takes (default: its
            keyword parameters after ``params``, except ``key``).
    """

    state_updates: list = []

    def __init__(
        self,
        fn: Callable[..., Any],
        parameters: Mapping[str, Any],
        outputs: Sequence[str] | None = None,
        inputs: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(parameters, Mapping) or not parameters:
            raise AlgorithmError(
                "a cost function needs parameters= as a non-empty {name: initial value} dict, "
                f"got {type(parameters).__name__}"
            )
        self.fn = fn
        sig = inspect.signature(fn)
        names = list(sig.parameters)[1:]
        self.needs_key = "key" in names
        if inputs is None:
            inputs = [
                n
                for n in names
                if n != "key"
                and sig.parameters[n].kind not in (inspect.Parameter.VAR_POSITIONAL,)
                and sig.parameters[n].kind != inspect.Parameter.VAR_KEYWORD
            ]
        self.inputs = list(inputs)
        self._values = {str(k): jnp.asarray(v) for k, v in parameters.items()}
        self.parameters = [
            Variable(
                tag=f"param:{k}",
                name=k,
                roles=(PARAMETER,),
                path=k,
                shape=tuple(v.shape),
                dtype=v.dtype,
            )
            for k, v in self._values.items()
        ]
        self._output_names = list(outputs) if outputs is not None else None
        self._given_names = outputs is not None
        self._output_shapes: dict[str, tuple[tuple[int, ...], Any]] | None = None
        self.variables: list[Variable] = []

    @property
    def outputs_known(self) -> bool:
        """Whether the output names and shapes are known: given as ``outputs=``
        names, or seen by :meth:`discover` (or a first :meth:`evaluate`)."""
        return self._output_shapes is not None or (
            self._output_names is not None and self._given_names
        )

    @property
    def outputs(self) -> list[Variable]:
        """One Variable per output, the cost first; before the outputs are
        known, just ``cost`` (see :attr:`outputs_known`)."""
        names = self._output_names or ["cost"]
        shapes = self._output_shapes or {}
        return [
            Variable(
                tag=f"output:{n}",
                name=n,
                roles=(COST,) if i == 0 else (OUTPUT,),
                shape=shapes[n][0] if n in shapes else None,
                dtype=shapes[n][1] if n in shapes else None,
            )
            for i, n in enumerate(names)
        ]

    def describe_shape(self, shape: Sequence[Any]) -> str:
        """A shape as text (the sizes of the batch it was first seen with)."""
        return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"

    def discover(self, params: Mapping[str, Any], inputs: Mapping[str, Any]) -> None:
        """Learn the output names and shapes by tracing ``fn`` on one batch (no compute).

        :class:`GradientDescent` and the monitoring extensions call this with
        the first batch they see, before compiling anything, so outputs
        named by a returned dict can be monitored. Idempotent.

        Raises:
            CostShapeError: the cost (first output) is not a scalar.
        """
        if self._output_shapes is not None:
            return
        key = jax.random.key(0) if self.needs_key else None
        seen: dict[str, list[str]] = {}

        def run(params: Mapping[str, Any], inputs: Mapping[str, Any], key: Any) -> list:
            values, names = self._call(params, inputs, key)
            seen["names"] = names
            return values

        shapes = jax.eval_shape(run, dict(params), dict(inputs), key)
        self._output_names = seen["names"]
        self._output_shapes = {
            n: (tuple(s.shape), s.dtype) for n, s in zip(seen["names"], shapes, strict=True)
        }

    def parameter_values(self) -> dict[str, jax.Array]:
        return dict(self._values)

    def set_parameter_values(self, values: Mapping[str, Any]) -> None:
        for k, v in values.items():
            if k not in self._values:
                raise AlgorithmError(f"unknown parameter {k!r}; known: {sorted(self._values)}")
            self._values[k] = jnp.asarray(v)

    def _where(self) -> str:
        return f"the cost function {getattr(self.fn, '__name__', self.fn)!r}"

    def _call(
        self, params: Mapping[str, Any], inputs: Mapping[str, Any], key: Any
    ) -> tuple[list, list[str]]:
        """Call ``fn``; its outputs as a list paired with their names **by key**."""
        kwargs = dict(inputs)
        if self.needs_key:
            kwargs["key"] = key
        result = self.fn(dict(params), **kwargs)
        names = self._output_names
        if isinstance(result, Mapping):
            if names is None:
                names = list(result)
            missing = [n for n in names if n not in result]
            if missing or (not self._given_names and len(result) != len(names)):
                raise AlgorithmError(
                    f"{self._where()} returned the outputs {list(result)}, expected {names}; "
                    "it must return the same names every time"
                )
            values = [result[n] for n in names]
        elif isinstance(result, tuple | list):
            values = list(result)
            if names is None:
                names = ["cost"] + [f"output_{i}" for i in range(1, len(values))]
            if len(values) != len(names):
                raise AlgorithmError(
                    f"{self._where()} returned {len(values)} outputs, expected {len(names)} "
                    f"({names})"
                )
        else:
            values = [result]
            if names is None:
                names = ["cost"]
            elif len(names) != 1:
                raise AlgorithmError(
                    f"{self._where()} returned one value, expected {len(names)} outputs ({names})"
                )
        if not values:
            raise AlgorithmError(f"{self._where()} returned no outputs; the first is the cost")
        if np.ndim(values[0]) != 0:
            raise CostShapeError(
                f"the cost must be a scalar; got shape {self.describe_shape(np.shape(values[0]))} "
                f"for {names[0]!r}, the first output of {self._where()} — did you mean "
                "`.mean()` (or `.sum()`) of it?"
            )
        return values, names

    def evaluate(
        self,
        params: Mapping[str, Any],
        inputs: Mapping[str, Any],
        key: Any = None,
        extra: Sequence[Any] = (),
    ) -> tuple[list, list]:
        """Output values in the order of :attr:`outputs` (read from a returned
        dict by name), and no extras (a cost function has no intermediates)."""
        if extra:
            raise AlgorithmError(
                f"a FunctionGraph has no intermediate variables to return, asked for {list(extra)}"
            )
        values, names = self._call(params, inputs, key)
        self._output_names = names
        return values, []
