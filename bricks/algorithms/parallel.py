"""Data parallelism of the training step (``GradientDescent(parallel=...)``).

The step stays one compiled function: its state (parameters, optimizer
state, monitoring sums, counters) is replicated over the mesh of a
:class:`~bricks.distributed.DataParallel` and the batch is split along its
batch axis. XLA inserts the all-reduce of the gradients; every mean is over
the global batch, so results equal the single-device run up to the order of
float sums.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax

from bricks.distributed import DataParallel

__all__ = ["as_parallel", "jit_step"]


def as_parallel(parallel: Any, batch_axes: int | Mapping[str, int] = 0) -> DataParallel | None:
    """``None`` (one device, as before), or a :class:`DataParallel` for ``parallel``.

    ``parallel`` is a :class:`DataParallel`, a ``jax.sharding.Mesh``, a
    number of local devices, or ``"all"`` (every device of every process).
    """
    if parallel is None or isinstance(parallel, DataParallel):
        return parallel
    return DataParallel(None if parallel == "all" else parallel, batch_axes)


def jit_step(fn: Callable, parallel: DataParallel | None) -> Callable:
    """``jax.jit(fn)`` with the state (argument 0) donated; on a mesh the state and
    the key are replicated and the outputs too, the batch keeps its sharding."""
    if parallel is None:
        return jax.jit(fn, donate_argnums=(0,))
    rep = parallel.replicated
    return jax.jit(
        fn, donate_argnums=(0,), in_shardings=(rep, None, rep), out_shardings=(rep, rep)
    )
