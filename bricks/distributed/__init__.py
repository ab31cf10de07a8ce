"""Data-parallel training over devices and processes, on ``jax.sharding`` and ``jax.distributed``.

A :func:`data_mesh` lays the devices on one ``"data"`` axis; a
:class:`DataParallel` places the training state replicated over it (or, with
``shard_parameters=True``, its large arrays split FSDP-style) and each batch
sharded along its batch axis, so the compiled training step runs as one SPMD
program whose results equal the single-device run; :func:`host_copy` reads
a state back whatever its sharding. The process
group (:func:`initialize`, :func:`process_index`, :func:`process_count`,
:func:`barrier`) joins several processes with ``jax.distributed``; the
:class:`StepWatchdog` stops them all, naming the stuck one, when a step
overruns its deadline. See
``docs/distributed.md``.
"""

from ._agreement import Agreement
from ._checkpoint import SaveCommit, every_process, is_multi_process
from ._mesh import DATA_AXIS, data_mesh
from ._placement import MIN_SHARD_SIZE, DataParallel, host_copy
from ._process import (
    ProcessGroup,
    barrier,
    initialize,
    is_coordinator,
    local_device_environments,
    process_count,
    process_index,
    settings_from_environment,
)
from ._watchdog import EXIT_STUCK, LocalStore, StepWatchdog

__all__ = [
    "DATA_AXIS",
    "EXIT_STUCK",
    "MIN_SHARD_SIZE",
    "Agreement",
    "DataParallel",
    "LocalStore",
    "ProcessGroup",
    "StepWatchdog",
    "SaveCommit",
    "barrier",
    "data_mesh",
    "every_process",
    "host_copy",
    "initialize",
    "is_coordinator",
    "local_device_environments",
    "is_multi_process",
    "process_count",
    "process_index",
    "settings_from_environment",
]
