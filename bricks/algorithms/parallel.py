"""Data parallelism of the training step (``GradientDescent(parallel=...)``).

The step stays one compiled function: its state (parameters, optimizer
state, monitoring sums, counters) lives on the mesh of a
:class:`~bricks.distributed.DataParallel` and the batch is split along its
batch axis. By default the state is replicated and XLA inserts the
all-reduce of the gradients. With ``shard_parameters=True`` the parameters
and the optimizer-state arrays shaped like them are split FSDP-style (see
:meth:`DataParallel.shard_axis`); the step is jitted with these shardings
in and out, so XLA inserts the all-gathers and reduce-scatters and the
donated buffers are reused. The monitoring sums, counters and the key stay
replicated. Every mean is over the global batch, so results equal the
single-device run up to the order of float sums.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax

from bricks.distributed import DataParallel
from bricks.errors import ShardingError

__all__ = ["as_parallel", "gathered", "jit_step", "place", "state_shardings"]

#: The parts of GradientDescent's state tree that ``shard_parameters`` splits.
_SHARDED_PARTS = ("params", "opt")


def as_parallel(
    parallel: Any, batch_axes: int | Mapping[str, int] = 0, shard_parameters: bool = False
) -> DataParallel | None:
    """``None`` (one device, as before), or a :class:`DataParallel` for ``parallel``.

    ``parallel`` is a :class:`DataParallel`, a ``jax.sharding.Mesh``, a
    number of local devices, or ``"all"`` (every device of every process).

    Raises:
        ShardingError: ``shard_parameters`` without ``parallel``, or with a
            :class:`DataParallel` built without it (give it there).
    """
    if parallel is None:
        if shard_parameters:
            raise ShardingError(
                "shard_parameters=True needs a mesh to shard over: give parallel= "
                "(a number of devices, 'all', a Mesh or a DataParallel)"
            )
        return None
    if isinstance(parallel, DataParallel):
        if shard_parameters and not parallel.shard_parameters:
            raise ShardingError(
                "shard_parameters=True with a DataParallel built without it: write "
                "DataParallel(..., shard_parameters=True) instead"
            )
        return parallel
    return DataParallel(None if parallel == "all" else parallel, batch_axes, shard_parameters)


def state_shardings(parallel: DataParallel, state: Mapping[str, Any]) -> dict[str, Any]:
    """The sharding of every leaf of GradientDescent's state tree: parameters and
    optimizer state as :meth:`DataParallel.shardings` says, everything else replicated."""
    return {
        part: parallel.shardings(tree)
        if part in _SHARDED_PARTS
        else jax.tree_util.tree_map(lambda _: parallel.replicated, tree)
        for part, tree in state.items()
    }


def place(parallel: DataParallel, state: Mapping[str, Any], base_key: Any) -> tuple[Any, Any]:
    """``(state, base_key)`` moved onto the mesh: the state as :func:`state_shardings`
    says, the key replicated."""
    return parallel.place_state(
        (state, base_key), (state_shardings(parallel, state), parallel.replicated)
    )


def jit_step(fn: Callable, parallel: DataParallel | None, state: Any = None) -> Callable:
    """``jax.jit(fn)`` with the state (argument 0) donated; on a mesh the state is
    placed as :func:`state_shardings` says (of ``state``, the current state tree) in
    and out, the key and the flags are replicated, the batch keeps its sharding."""
    if parallel is None:
        return jax.jit(fn, donate_argnums=(0,))
    rep = parallel.replicated
    where = rep if state is None else state_shardings(parallel, state)
    return jax.jit(
        fn, donate_argnums=(0,), in_shardings=(where, None, rep), out_shardings=(where, rep)
    )


def gathered(parallel: DataParallel | None, tree: Any) -> Any:
    """A fresh device copy of ``tree`` replicated on the mesh, when some leaf of it is
    split over several processes (else ``None``: it can be read as it is).

    Every process must call this at the same point (it is a compiled all-gather);
    a snapshot taken so can then be read from any thread, on every process.
    """
    if parallel is None or all(
        leaf.is_fully_addressable or leaf.is_fully_replicated
        for leaf in jax.tree_util.tree_leaves(tree)
        if isinstance(leaf, jax.Array)
    ):
        return None
    return _replicator(parallel.replicated)(tree)


@functools.lru_cache(maxsize=8)
def _replicator(replicated: Any) -> Callable[[Any], Any]:
    return jax.jit(
        lambda tree: jax.tree_util.tree_map(lambda x: x.copy(), tree), out_shardings=replicated
    )
