"""Flags that every process agrees on: one stops only when all stop, at the same step.

A signal reaches one process; if only that one stopped after its batch, the
others would wait in the next step's all-reduce for ever. :class:`Agreement`
all-reduces (max) a few host flags once per step with a tiny compiled
collective, and hands back the *previous* step's agreed flags, which every
process reads at the same step: so all of them act at one agreed step, and
the host waits at most one step behind the device.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from ._mesh import DATA_AXIS, data_mesh

__all__ = ["Agreement"]


class Agreement:
    """Per-step agreement of ``size`` boolean flags over every process (max, i.e. any).

    >>> agreement = Agreement(2)
    >>> agreement.step([True, False]), agreement.step([False, False])
    ((False, False), (True, False))
    """

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self.mesh = data_mesh()
        self._sharding = NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))
        replicated = NamedSharding(self.mesh, PartitionSpec())
        self._reduce = jax.jit(lambda x: jnp.max(x, axis=0), out_shardings=replicated)
        self._pending: jax.Array | None = None

    def step(self, flags: Sequence[bool]) -> tuple[bool, ...]:
        """Contribute this step's ``flags``; returns the flags agreed at the previous step."""
        local = np.array([[bool(f) for f in flags]] * len(jax.local_devices()), np.int32)
        rows = local.shape[0] * jax.process_count()
        array = jax.make_array_from_process_local_data(
            self._sharding, local, (rows, self.size)
        )
        previous, self._pending = self._pending, self._reduce(array)
        if previous is None:
            return (False,) * self.size
        return tuple(bool(v) for v in np.asarray(previous))

    def flush(self) -> tuple[bool, ...]:
        """The flags agreed at the last step (waits for it)."""
        if self._pending is None:
            return (False,) * self.size
        return tuple(bool(v) for v in np.asarray(self._pending))
