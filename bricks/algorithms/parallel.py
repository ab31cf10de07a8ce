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

On a mesh of several CPU devices the compiled step is paced
(:class:`StepPacer`): at most :data:`CPU_STEPS_IN_FLIGHT` steps are in
flight, because XLA's CPU client deadlocks when the host runs far ahead of
its collectives (see :class:`StepPacer`). One device and GPUs are not paced.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import jax

from bricks.algorithms.compiled_step import jit_local, step_compiler_options
from bricks.distributed import DataParallel
from bricks.errors import ShardingError

__all__ = [
    "CPU_STEPS_IN_FLIGHT",
    "StepPacer",
    "as_parallel",
    "gathered",
    "jit_step",
    "paced",
    "place",
    "state_shardings",
]

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
        return jit_local(fn)
    rep = parallel.replicated
    where = rep if state is None else state_shardings(parallel, state)
    jitted = jax.jit(
        fn,
        donate_argnums=(0,),
        in_shardings=(where, None, rep),
        out_shardings=(where, rep),
        compiler_options=step_compiler_options(),
    )
    return paced(jitted, parallel)


#: The most training steps in flight on a mesh of several CPU devices: step
#: ``n + 1`` is dispatched once step ``n + 1 - CPU_STEPS_IN_FLIGHT`` has finished.
CPU_STEPS_IN_FLIGHT = 2


class StepPacer:
    """Bounds how many compiled steps are in flight (dispatched, not finished).

    Why: XLA's CPU client runs each device's part of a multi-device program
    on one thread pool of ``max(cores, devices)`` threads and launches the
    parts of the next program asynchronously on the same pool. A launch
    waits (holding its thread) while its device already has 32 programs
    queued. When the host dispatches steps faster than the devices run them,
    such waiting launches hold pool threads that the devices of an earlier
    step need to reach its all-reduce or all-gather; the devices already
    there wait for them forever, and XLA aborts the process after 40 s
    ("Termination timeout for `all reduce RendezvousKey...` ... Expected 4
    threads to join the rendezvous, but only 3 of them arrived"). A few steps
    in flight keep every device's queue far below 32, so launches never wait.

    One pacer serves every paced step function of the process (the queues
    are the CPU client's, whichever algorithm fills them).

    Args:
        limit: the most steps in flight, the one being dispatched included.
    """

    def __init__(self, limit: int = CPU_STEPS_IN_FLIGHT) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ShardingError(f"StepPacer: limit must be an int >= 1, got {limit!r}")
        self.limit = limit
        self._pending: deque = deque()

    def wait(self) -> None:
        """Block until fewer than ``limit`` steps are in flight."""
        while len(self._pending) >= self.limit:
            self._pending.popleft().block_until_ready()

    def dispatched(self, marker: Any) -> None:
        """Count a step just dispatched; ``marker``: an output it computes last."""
        self._pending.append(marker)

    def in_flight(self) -> int:
        """How many counted steps have not finished yet (a test hook: it does not wait)."""
        return sum(not marker.is_ready() for marker in self._pending)


#: The pacer of every paced step (see :func:`paced`).
CPU_PACER = StepPacer()


def paced(step: Callable, parallel: DataParallel, pacer: StepPacer | None = None) -> Callable:
    """``step`` (a jitted ``(state, ...) -> (state, flags)``), paced by ``pacer``
    (default :data:`CPU_PACER`) when ``parallel``'s mesh has several devices, some
    of them CPUs; else ``step`` itself: one device and GPUs pay nothing."""
    devices = parallel.mesh.devices.flat
    if parallel.size == 1 or all(d.platform != "cpu" for d in devices):
        return step
    return _Paced(step, CPU_PACER if pacer is None else pacer)


class _Paced:
    """A step function that waits for its pacer before each dispatch."""

    def __init__(self, step: Callable, pacer: StepPacer) -> None:
        self.step, self.pacer = step, pacer

    def __call__(self, *args: Any) -> Any:
        self.pacer.wait()
        out = self.step(*args)
        self.pacer.dispatched(out[1])  # the flags: ready when the step has finished
        return out

    def __getattr__(self, name: str) -> Any:  # lower, _cache_size ... of the jitted step
        return getattr(self.step, name)


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
