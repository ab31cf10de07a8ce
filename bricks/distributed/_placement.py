"""Where the training state and the batches live: replicated state, sharded batches.

Under ``jax.jit`` an array's sharding only decides where the work is done:
the compiled program computes the same global function, so a step over a
batch split on ``n`` devices gives the single-device result (up to the
order of float sums). The mean of a cost over the batch, the gradients and
every monitored quantity are therefore over the *global* batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bricks.errors import BatchShardingError

from ._mesh import DATA_AXIS, data_mesh

__all__ = ["DataParallel"]


class DataParallel:
    """Data parallelism over a mesh: state replicated, batch split along its batch axis.

    Args:
        mesh: a :class:`jax.sharding.Mesh` with a ``"data"`` axis, or what
            :func:`~bricks.distributed.data_mesh` takes (``None``: all
            devices; ``n``: the first ``n`` local devices).
        batch_axes: the batch axis of every source (``0``), or
            ``{source: axis}`` (e.g. ``1`` for time-major sequences; sources
            not named use ``0``).

    Each process passes its own slice of the global batch (the whole batch
    for a single process): with ``P`` processes, process ``i`` holds rows
    ``[i·B/P, (i+1)·B/P)`` of the global batch of ``B`` rows, which is what
    :class:`bricks.data.ProcessSlice` reads.

    >>> import numpy as np
    >>> parallel = DataParallel(1)
    >>> batch = parallel.shard_batch({"x": np.ones((4, 3), np.float32)})
    >>> batch["x"].shape, parallel.size
    ((4, 3), 1)
    """

    def __init__(self, mesh: Mesh | int | Any = None, batch_axes: int | Mapping[str, int] = 0):
        self.mesh = mesh if isinstance(mesh, Mesh) else data_mesh(mesh)
        if DATA_AXIS not in self.mesh.axis_names:
            raise BatchShardingError(
                f"DataParallel: expected a mesh with a {DATA_AXIS!r} axis, got axes "
                f"{self.mesh.axis_names}; build it with bricks.distributed.data_mesh"
            )
        self.batch_axes = batch_axes
        self.replicated = NamedSharding(self.mesh, PartitionSpec())

    @property
    def size(self) -> int:
        """How many devices the batch is split over."""
        return int(self.mesh.shape[DATA_AXIS])

    def axis_of(self, source: str) -> int:
        """The batch axis of ``source``."""
        if isinstance(self.batch_axes, Mapping):
            return int(self.batch_axes.get(source, 0))
        return int(self.batch_axes)

    def place_state(self, tree: Any) -> Any:
        """``tree`` (parameters, optimizer state ...) replicated on every device of the mesh."""
        if jax.process_count() == 1:
            return jax.device_put(tree, self.replicated)
        host = jax.device_get(tree)

        def put(value: Any) -> jax.Array:
            value = np.asarray(value)
            return jax.make_array_from_callback(value.shape, self.replicated, lambda i: value[i])

        return jax.tree_util.tree_map(put, host)

    def shard_batch(self, batch: Mapping[str, Any], stacked: bool = False) -> dict[str, jax.Array]:
        """Each source of this process's batch as a global array split over the mesh.

        Args:
            batch: ``{source: array}``, this process's rows of the global batch.
            stacked: the arrays hold several batches on a leading axis (the
                multi-step scan), so each batch axis is one further.

        Raises:
            BatchShardingError: a source has no batch axis, or its global
                batch does not divide by the number of devices.
        """
        processes = jax.process_count()
        out = {}
        for name, value in batch.items():
            value = np.asarray(value)
            axis = self.axis_of(name) + int(stacked)
            if value.ndim <= axis:
                raise BatchShardingError(
                    f"source {name!r} of shape {value.shape} has no batch axis {axis} to split "
                    f"over {self.size} devices; set DataParallel(batch_axes={{{name!r}: ...}})"
                )
            rows = value.shape[axis] * processes
            if rows % self.size:
                per = f" ({processes} processes x {value.shape[axis]})" if processes > 1 else ""
                raise BatchShardingError(
                    f"source {name!r}: a global batch of {rows} rows{per} along axis {axis} "
                    f"(shape {value.shape}) cannot be split evenly over {self.size} devices; "
                    f"use a batch size that divides by {self.size}"
                )
            spec = PartitionSpec(*([None] * axis), DATA_AXIS)
            shape = value.shape[:axis] + (rows,) + value.shape[axis + 1 :]
            out[name] = jax.make_array_from_process_local_data(
                NamedSharding(self.mesh, spec), value, shape
            )
        return out
