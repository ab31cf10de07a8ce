"""Where the training state and the batches live: the state replicated or sharded, batches split.

Under ``jax.jit`` an array's sharding only decides where the work is done:
the compiled program computes the same global function, so a step over a
batch split on ``n`` devices gives the single-device result (up to the
order of float sums). The mean of a cost over the batch, the gradients and
every monitored quantity are therefore over the *global* batch.

With ``shard_parameters=True`` (FSDP-style) each large parameter, and every
optimizer-state array of the same shape (Adam's moments ...), is split along
one axis over the ``"data"`` mesh axis instead of replicated: each device
holds ``1/n`` of it, and XLA gathers it for the forward pass and
reduce-scatters its gradient inside the same compiled step. Which axis
follows from the shape alone (:meth:`DataParallel.shard_axis`), so a
parameter and its moments are always split alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bricks.errors import BatchShardingError, ShardingError

from ._mesh import DATA_AXIS, data_mesh

__all__ = ["MIN_SHARD_SIZE", "DataParallel", "host_copy"]

#: Arrays with fewer elements stay replicated under ``shard_parameters=True``
#: (64 KiB of float32): gathering them costs more than it saves.
MIN_SHARD_SIZE = 2**14


class DataParallel:
    """Data parallelism over a mesh: state replicated, batch split along its batch axis.

    Args:
        mesh: a :class:`jax.sharding.Mesh` with a ``"data"`` axis, or what
            :func:`~bricks.distributed.data_mesh` takes (``None``: all
            devices; ``n``: the first ``n`` local devices).
        batch_axes: the batch axis of every source (``0``), or
            ``{source: axis}`` (e.g. ``1`` for time-major sequences; sources
            not named use ``0``).
        shard_parameters: split each parameter and optimizer-state array
            of at least ``min_shard_size`` elements along its largest axis
            that divides by the device count (FSDP-style) instead of
            replicating it; arrays with no such axis stay replicated. See
            :meth:`describe`.
        min_shard_size: the size threshold of ``shard_parameters``, in elements.

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

    def __init__(
        self,
        mesh: Mesh | int | Any = None,
        batch_axes: int | Mapping[str, int] = 0,
        shard_parameters: bool = False,
        min_shard_size: int = MIN_SHARD_SIZE,
    ) -> None:
        self.mesh = mesh if isinstance(mesh, Mesh) else data_mesh(mesh)
        if DATA_AXIS not in self.mesh.axis_names:
            raise BatchShardingError(
                f"DataParallel: expected a mesh with a {DATA_AXIS!r} axis, got axes "
                f"{self.mesh.axis_names}; build it with bricks.distributed.data_mesh"
            )
        if not isinstance(shard_parameters, (bool, np.bool_)):
            raise ShardingError(
                f"DataParallel: shard_parameters must be True or False, got {shard_parameters!r}"
            )
        if isinstance(min_shard_size, bool) or not isinstance(min_shard_size, (int, np.integer)) \
                or min_shard_size < 0:
            raise ShardingError(
                "DataParallel: min_shard_size must be a number of elements >= 0, got "
                f"{min_shard_size!r}"
            )
        self.batch_axes = batch_axes
        self.shard_parameters = bool(shard_parameters)
        self.min_shard_size = int(min_shard_size)
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

    def shard_axis(self, shape: tuple[int, ...]) -> int | None:
        """The axis an array of ``shape`` is split along, or ``None``: replicated.

        ``None`` unless ``shard_parameters`` is on, the mesh has several
        devices and the array has at least ``min_shard_size`` elements;
        then the largest axis whose length divides by the device count (the
        first of equal ones), or ``None`` when no axis divides.
        """
        shape = tuple(int(n) for n in shape)
        if not self.shard_parameters or self.size == 1 or math.prod(shape) < self.min_shard_size:
            return None
        fitting = [i for i, n in enumerate(shape) if n >= self.size and n % self.size == 0]
        if not fitting:
            return None
        return max(fitting, key=lambda i: (shape[i], -i))

    def sharding_of(self, shape: tuple[int, ...]) -> NamedSharding:
        """Where an array of ``shape`` of the training state lives (see :meth:`shard_axis`)."""
        axis = self.shard_axis(shape)
        if axis is None:
            return self.replicated
        return NamedSharding(self.mesh, PartitionSpec(*([None] * axis), DATA_AXIS))

    def shardings(self, tree: Any) -> Any:
        """The sharding of every leaf of ``tree`` (arrays or ``jax.ShapeDtypeStruct``)."""
        return jax.tree_util.tree_map(lambda leaf: self.sharding_of(np.shape(leaf)), tree)

    def describe(self, tree: Mapping[str, Any]) -> dict[str, str]:
        """How each array of ``{name: array or shape}`` is placed, in words.

        >>> parallel = DataParallel(1, shard_parameters=True)
        >>> parallel.describe({"W": (4, 6)})
        {'W': 'replicated (one device)'}
        """
        out = {}
        for name, value in tree.items():
            shape = tuple(value) if isinstance(value, tuple) else tuple(np.shape(value))
            axis = self.shard_axis(shape)
            if axis is not None:
                per = shape[:axis] + (shape[axis] // self.size,) + shape[axis + 1 :]
                out[name] = f"sharded on axis {axis} of {shape}: {per} per device"
            elif not self.shard_parameters:
                out[name] = "replicated"
            elif self.size == 1:
                out[name] = "replicated (one device)"
            elif math.prod(shape) < self.min_shard_size:
                n = math.prod(shape)
                out[name] = (
                    f"replicated ({n} element{'s' * (n != 1)} < min_shard_size "
                    f"{self.min_shard_size})"
                )
            else:
                out[name] = f"replicated (no axis of {shape} divides by {self.size})"
        return out

    def summary(self, tree: Mapping[str, Any]) -> str:
        """One line on how ``{name: array or shape}`` is placed (the runner's ``summary.json``).

        >>> DataParallel(1).summary({"W": (4, 6), "b": (6,)})
        'parameters replicated'
        """
        if not self.shard_parameters:
            return "parameters replicated"
        shapes = [tuple(v) if isinstance(v, tuple) else np.shape(v) for v in tree.values()]
        split = [s for s in shapes if self.shard_axis(s) is not None]
        total = sum(math.prod(s) for s in shapes)
        share = sum(math.prod(s) for s in split) / max(total, 1)
        return (
            f"parameters and optimizer state sharded FSDP-style: {len(split)} of "
            f"{len(shapes)} arrays ({share:.1%} of {total} elements; min_shard_size "
            f"{self.min_shard_size})"
        )

    def place_state(self, tree: Any, shardings: Any = None) -> Any:
        """``tree`` (parameters, optimizer state ...) on the mesh.

        Args:
            tree: a pytree of arrays (device or host).
            shardings: a sharding per leaf (a pytree of the same structure),
                default every leaf replicated on every device.
        """
        if shardings is None:
            shardings = jax.tree_util.tree_map(lambda _: self.replicated, tree)
        if jax.process_count() == 1:
            return jax.device_put(tree, shardings)
        host = host_copy(tree)

        def put(value: Any, sharding: NamedSharding) -> jax.Array:
            value = np.asarray(value)
            return jax.make_array_from_callback(value.shape, sharding, lambda i: value[i])

        return jax.tree_util.tree_map(put, host, shardings)

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


def host_copy(tree: Any) -> Any:
    """Host (numpy) copies of every leaf of ``tree``, whatever its sharding.

    Arrays this process holds whole (one device, replicated, or split over
    local devices only) are read directly. An array split over the devices
    of several processes is gathered with ``process_allgather``: a
    collective, so with such arrays every process must call this at the
    same point, with the same tree.
    """
    from jax.experimental import multihost_utils

    def one(leaf: Any) -> Any:
        if isinstance(leaf, jax.Array) and not (
            leaf.is_fully_addressable or leaf.is_fully_replicated
        ):
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return jax.device_get(leaf)

    return jax.tree_util.tree_map(one, tree)
