"""The device mesh of data-parallel training: every device on one ``"data"`` axis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from bricks.errors import MeshError

__all__ = ["DATA_AXIS", "data_mesh"]

#: The name of the mesh axis that the batch is split over.
DATA_AXIS = "data"


def data_mesh(devices: int | Sequence[Any] | None = None) -> Mesh:
    """A one-axis mesh named ``"data"`` over ``devices``.

    Args:
        devices: ``None`` for every device of every process
            (``jax.devices()``), an ``int`` ``n`` for the first ``n`` local
            devices of a single process, or a sequence of ``jax.Device``.

    Returns:
        a :class:`jax.sharding.Mesh` of shape ``(len(devices),)``.

    Raises:
        MeshError: ``n`` is not between 1 and the number of local devices
            (with several processes an ``int`` is refused: the mesh must
            hold every process's devices), or the sequence is empty.

    >>> mesh = data_mesh(1)
    >>> mesh.axis_names, mesh.devices.shape
    (('data',), (1,))
    """
    if devices is None:
        chosen = _by_process(jax.devices())
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        local = jax.local_devices()
        if jax.process_count() > 1 and int(devices) != len(local):
            raise MeshError(
                f"data_mesh({devices}): with {jax.process_count()} processes the mesh holds "
                f"all of them; give devices=None (all {len(jax.devices())} devices)"
            )
        if not 1 <= int(devices) <= len(local):
            raise MeshError(
                f"data_mesh: expected 1 to {len(local)} devices (this process has "
                f"{len(local)} {local[0].platform} devices), got {devices}; on CPU, "
                "XLA_FLAGS=--xla_force_host_platform_device_count=N before jax starts "
                "gives N devices"
            )
        chosen = _by_process(jax.devices()) if jax.process_count() > 1 else local[: int(devices)]
    else:
        chosen = list(devices)
        if not chosen:
            raise MeshError("data_mesh: expected at least one device, got an empty sequence")
    return Mesh(np.array(chosen, dtype=object), (DATA_AXIS,))


def _by_process(devices: Sequence[Any]) -> list[Any]:
    """Devices ordered by process, then id: process ``i`` holds the ``i``-th block of a batch,
    which is the slice :class:`bricks.data.ProcessSlice` gives it."""
    return sorted(devices, key=lambda d: (d.process_index, d.id))
