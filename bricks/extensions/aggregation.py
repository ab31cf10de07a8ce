"""Aggregation schemes for monitoring over a dataset, and user-defined quantities.

An :class:`Aggregation` is three pure functions, small like an optax
transform: ``init(value_shape, dtype) -> acc``, ``update(acc, value,
batch_size) -> acc`` (jitted, on device) and ``finalize(acc) -> value``.

bricks' default for a dataset is :data:`MEAN`, the **mean over examples**:
per-batch values weighted by batch size, so a per-example mean (a cost)
gives its exact mean over the dataset whatever the batch sizes. This differs
from Blocks: its ``DatasetEvaluator`` gave a variable without an aggregation
scheme ``Mean(variable, 1.0)``, the plain average of the per-batch values,
which differs when batches differ in size (a smaller last batch).
:data:`BATCH_MEAN` (``"batch_mean"``) is that average (``docs/porting.md``
lists the difference).

>>> import jax.numpy as jnp
>>> acc = MEAN.init((), jnp.float32)
>>> acc = MEAN.update(acc, jnp.float32(1.0), 3)
>>> acc = MEAN.update(acc, jnp.float32(3.0), 1)
>>> float(MEAN.finalize(acc))
1.5
>>> acc = BATCH_MEAN.update(BATCH_MEAN.init((), jnp.float32), jnp.float32(1.0), 3)
>>> float(BATCH_MEAN.finalize(BATCH_MEAN.update(acc, jnp.float32(3.0), 1)))
2.0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from bricks.errors import ExtensionError, did_you_mean

__all__ = [
    "Aggregation",
    "MEAN",
    "BATCH_MEAN",
    "MIN",
    "MAX",
    "CONCATENATE",
    "PERPLEXITY",
    "STACK",
    "MonitoredQuantity",
    "collects",
    "join",
    "get_aggregation",
]


class Aggregation(NamedTuple):
    """How per-batch values of one variable become one value for a dataset."""

    init: Callable[[tuple, Any], Any]
    update: Callable[[Any, Any, Any], Any]
    finalize: Callable[[Any], Any]
    name: str = "custom"


def _mean_update(acc, value, n):
    total, count = acc
    return total + jnp.asarray(value, jnp.float32) * n, count + n


MEAN = Aggregation(
    init=lambda shape, dtype: (jnp.zeros(shape, jnp.float32), jnp.zeros((), jnp.float32)),
    update=_mean_update,
    finalize=lambda acc: acc[0] / acc[1],
    name="mean",
)
#: The plain average of the per-batch values, each batch weighing 1 (Blocks'
#: ``Mean(variable, 1.0)``, its default for a dataset).
BATCH_MEAN = Aggregation(
    init=MEAN.init,
    update=lambda acc, value, n: (acc[0] + jnp.asarray(value, jnp.float32), acc[1] + 1.0),
    finalize=MEAN.finalize,
    name="batch_mean",
)
MIN = Aggregation(
    init=lambda shape, dtype: jnp.full(shape, jnp.inf, jnp.float32),
    update=lambda acc, value, n: jnp.minimum(acc, jnp.asarray(value, jnp.float32)),
    finalize=lambda acc: acc,
    name="min",
)
MAX = Aggregation(
    init=lambda shape, dtype: jnp.full(shape, -jnp.inf, jnp.float32),
    update=lambda acc, value, n: jnp.maximum(acc, jnp.asarray(value, jnp.float32)),
    finalize=lambda acc: acc,
    name="max",
)
#: ``exp(-mean over examples)`` (Blocks' ``Perplexity`` of a per-example log-likelihood).
PERPLEXITY = Aggregation(
    init=MEAN.init,
    update=_mean_update,
    finalize=lambda acc: jnp.exp(-acc[0] / acc[1]),
    name="perplexity",
)
#: Concatenate per-batch values along axis 0 (kept on device until the end):
#: per-example values of shape ``(batch, ...)`` become ``(examples, ...)``.
CONCATENATE = Aggregation(init=None, update=None, finalize=None, name="concatenate")  # type: ignore[arg-type]
#: Stack per-batch values along a new axis 0: ``(batches, ...)``. This is what
#: Blocks' ``Concatenate`` aggregation returned.
STACK = Aggregation(init=None, update=None, finalize=None, name="stack")  # type: ignore[arg-type]

_BY_NAME = {
    "mean": MEAN,
    "batch_mean": BATCH_MEAN,
    "min": MIN,
    "max": MAX,
    "perplexity": PERPLEXITY,
    "concatenate": CONCATENATE,
    "stack": STACK,
}


def collects(scheme: Aggregation) -> bool:
    """Whether ``scheme`` keeps every batch's value (``CONCATENATE``, ``STACK``)."""
    return scheme is CONCATENATE or scheme is STACK


def join(scheme: Aggregation, values: Sequence[Any]) -> Any:
    """The final value of a collecting scheme from the per-batch values."""
    if scheme is STACK:
        return jnp.stack([jnp.asarray(v) for v in values])
    return jnp.concatenate([jnp.atleast_1d(v) for v in values])


def get_aggregation(scheme: str | Aggregation) -> Aggregation:
    """An :class:`Aggregation` from itself or its name (see ``_BY_NAME``)."""
    if isinstance(scheme, Aggregation):
        return scheme
    if scheme not in _BY_NAME:
        raise ExtensionError(
            f"unknown aggregation {scheme!r}{did_you_mean(scheme, _BY_NAME)}; "
            f"known: {sorted(_BY_NAME)} or an Aggregation(init, update, finalize)"
        )
    return _BY_NAME[scheme]


class MonitoredQuantity:
    """A user-defined quantity computed on the host from per-batch values (Blocks).

    Subclass it: ``requires`` lists the Variables (or names) whose per-batch
    values :meth:`aggregate` receives as numpy arrays; :meth:`initialize`
    resets; :meth:`get_aggregated_value` returns the result. Unlike the
    on-device schemes this reads values back every batch.

    >>> class ExampleCount(MonitoredQuantity):
    ...     def initialize(self): self.n = 0
    ...     def aggregate(self, cost): self.n += 1
    ...     def get_aggregated_value(self): return self.n
    >>> ExampleCount(requires=["cost"], name="batches").name
    'batches'
    """

    def __init__(self, requires: Sequence[Any], name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ExtensionError(
                f"monitored quantities must have names (they become log records); "
                f"{type(self).__name__} got name={name!r}"
            )
        self.requires = list(requires)
        self.name = name

    def initialize(self) -> None:
        raise NotImplementedError

    def aggregate(self, *values: np.ndarray) -> None:
        raise NotImplementedError

    def get_aggregated_value(self) -> Any:
        raise NotImplementedError
