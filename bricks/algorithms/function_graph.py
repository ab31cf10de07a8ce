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
from bricks.errors import AlgorithmError

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
            keys when ``fn`` returns a dict).
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
        self.variables: list[Variable] = []

    @property
    def outputs(self) -> list[Variable]:
        names = self._output_names or ["cost"]
        return [
            Variable(tag=f"output:{n}", name=n, roles=(COST,) if i == 0 else (OUTPUT,))
            for i, n in enumerate(names)
        ]

    def parameter_values(self) -> dict[str, jax.Array]:
        return dict(self._values)

    def set_parameter_values(self, values: Mapping[str, Any]) -> None:
        for k, v in values.items():
            if k not in self._values:
                raise AlgorithmError(f"unknown parameter {k!r}; known: {sorted(self._values)}")
            self._values[k] = jnp.asarray(v)

    def evaluate(
        self,
        params: Mapping[str, Any],
        inputs: Mapping[str, Any],
        key: Any = None,
        extra: Sequence[Any] = (),
    ) -> tuple[list, list]:
        if extra:
            raise AlgorithmError(
                f"a FunctionGraph has no intermediate variables to return, asked for {list(extra)}"
            )
        kwargs = dict(inputs)
        if self.needs_key:
            kwargs["key"] = key
        result = self.fn(dict(params), **kwargs)
        if isinstance(result, Mapping):
            if self._output_names is None:
                self._output_names = list(result)
            values = [result[n] for n in self._output_names]
        elif isinstance(result, tuple | list):
            values = list(result)
            if self._output_names is None:
                self._output_names = ["cost"] + [f"output_{i}" for i in range(1, len(values))]
            if len(values) != len(self._output_names):
                raise AlgorithmError(
                    f"the cost function returned {len(values)} outputs, "
                    f"expected {len(self._output_names)} ({self._output_names})"
                )
        else:
            values = [result]
        if np.ndim(values[0]) != 0:
            raise AlgorithmError(
                f"the cost (first output) must be a scalar, got shape {np.shape(values[0])}"
            )
        return values, []
