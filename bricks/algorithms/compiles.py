"""Counting compiled programs.

Each compiled program costs seconds (a recurrent training step: tens of
seconds on a CPU), so how many a run compiles is a figure worth a test. Two
counts, both public:

- ``GradientDescent.compilations`` and ``DatasetEvaluator.compilations``
  (also ``DataStreamMonitoring.compilations``): how many times that object's
  step or monitoring function was traced. jax traces a jitted function once
  per new input signature (shapes, dtypes) and compiles each trace into one
  program, so this is the number of programs of *that* function, unaffected
  by anything else the process compiles.
- :class:`CompileCounter`: every program lowered for XLA while it is active,
  by function name, from jax's own compilation events
  (``jax.monitoring``, the event ``/jax/core/compile/jaxpr_to_mlir_module_duration``
  that each new program records once, whether it is then compiled or loaded
  from the persistent compilation cache). It also sees the small programs of
  eager operations (``jit(broadcast_in_dim)``...), so count by name.

>>> import jax, jax.numpy as jnp
>>> def double(x):
...     return 2 * x
>>> f = jax.jit(double)
>>> with CompileCounter() as counter:
...     _ = f(jnp.ones(3)); _ = f(jnp.ones(3)); _ = f(jnp.ones(4))
>>> counter.count("double")
2
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from jax import monitoring

__all__ = ["CompileCounter"]

_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"


def _base_name(fun_name: str) -> str:
    """``'jit(single)'`` → ``'single'``."""
    name = fun_name
    while name.endswith(")") and "(" in name:
        name = name[name.index("(") + 1 : -1]
    return name


class CompileCounter:
    """Count the programs jax lowers (compiles) while the counter is active.

    Use as a context manager (or :meth:`start` / :meth:`stop`). Thread-safe;
    several counters may be active at once.

    Attributes:
        counts: ``{function name: programs}`` (names without ``jit(...)``).
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._active = False

    def _listen(self, event: str, duration: float, **kwargs: Any) -> None:
        if event == _EVENT:
            with self._lock:
                self.counts[_base_name(str(kwargs.get("fun_name", "?")))] += 1

    def start(self) -> CompileCounter:
        """Begin counting (again: the counts go on from where they were)."""
        if not self._active:
            monitoring.register_event_duration_secs_listener(self._listen)
            self._active = True
        return self

    def stop(self) -> None:
        """Stop counting; the counts stay readable."""
        if self._active:
            monitoring.unregister_event_duration_listener(self._listen)
            self._active = False

    def __enter__(self) -> CompileCounter:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def count(self, name: str | None = None) -> int:
        """Programs of functions named ``name`` (all programs for ``None``)."""
        with self._lock:
            if name is None:
                return sum(self.counts.values())
            return self.counts.get(name, 0)

    @property
    def total(self) -> int:
        """All programs counted."""
        return self.count()

    def __repr__(self) -> str:
        return f"CompileCounter({dict(self.counts)})"
