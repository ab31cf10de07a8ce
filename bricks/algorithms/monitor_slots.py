"""Host-side helpers of :class:`~bricks.algorithms.GradientDescent`'s monitoring
slots: the sizes of a slot's quantities, fresh zero accumulators made in bulk, and
the means of a slot's host sums."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bricks.algorithms.checks import flat_monitored
from bricks.core.tracing import Variable

__all__ = ["accumulate", "means", "on_host", "sizes_of", "zeros"]


def accumulate(
    accs: Sequence[jax.Array], values: dict[str, Any], monitors: Sequence[Sequence[Variable]]
) -> tuple[jax.Array, ...]:
    """Inside the compiled step: each slot's accumulator plus this step's values (and 1,
    the step count, last)."""
    return tuple(
        a
        + jnp.concatenate(
            [flat_monitored(values[v.tag], v) for v in slot] + [jnp.ones(1, jnp.float32)]
        )
        for a, slot in zip(accs, monitors, strict=True)
    )


@functools.lru_cache(maxsize=256)
def sizes_of(shapes: tuple[tuple[int, ...], ...]) -> list[int]:
    return [math.prod(shape) for shape in shapes]


_ZEROS_AT_ONCE = 64
_zero_pools: dict[int, list[jax.Array]] = {}


@functools.lru_cache(maxsize=64)
def zeros_maker(size: int) -> Callable[[], tuple[jax.Array, ...]]:
    return jax.jit(lambda: tuple(jnp.zeros(size, jnp.float32) for _ in range(_ZEROS_AT_ONCE)))


def zeros(size: int) -> jax.Array:
    """A fresh float32 zero vector: made 64 at a time by one compiled call, since every
    per-batch report needs one and a dispatch costs about half a small training step."""
    pool = _zero_pools.setdefault(size, [])
    if not pool:
        pool.extend(zeros_maker(size)())
    return pool.pop()


@functools.lru_cache(maxsize=1)
def on_host() -> bool:
    """Whether arrays live in host memory (CPU): reading one back needs no copy to start
    early (on CPU ``copy_to_host_async`` cost 12 us of a 150 us step and saved nothing)."""
    return jax.default_backend() == "cpu"


def means(acc: np.ndarray, variables: Sequence[Variable], sizes: Sequence[int]) -> dict:
    """``{name: mean}`` of a slot's host sums (the last element counts the steps)."""
    count = max(acc[-1], 1)
    means = acc[:-1] / count  # one division for all (a slice at a time cost 8 us a read)
    out: dict[str, Any] = {}
    offset = 0
    for var, size in zip(variables, sizes, strict=True):
        if var.shape:
            out[var.name] = means[offset : offset + size].reshape(var.shape)
        else:
            out[var.name] = float(means[offset])
        offset += size
    return out
