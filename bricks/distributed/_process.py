"""The process group: several processes joined by ``jax.distributed``.

:func:`initialize` starts it from explicit arguments, from bricks' own
environment variables (``BRICKS_COORDINATOR``, ``BRICKS_NUM_PROCESSES``,
``BRICKS_PROCESS_ID``: what ``python -m experiments.run --processes P``
sets in the processes it starts), or from a launcher that
``jax.distributed`` recognizes by itself (SLURM, Open MPI, Kubernetes).
Without any of these, the run is one process and nothing is started.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import jax

from bricks.errors import DeviceAssignmentError, DistributedError

__all__ = [
    "ProcessGroup",
    "barrier",
    "initialize",
    "is_coordinator",
    "local_device_environments",
    "process_count",
    "process_index",
    "settings_from_environment",
]

#: The variables of launchers that ``jax.distributed.initialize()`` reads by itself.
LAUNCHER_VARIABLES = {
    "slurm": ("SLURM_JOB_ID", "SLURM_NTASKS"),
    "ompi": ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
    "k8s": ("KUBERNETES_SERVICE_HOST", "JOB_COMPLETION_INDEX"),
}


@attrs.frozen
class ProcessGroup:
    """Where this process stands: its index among ``count`` processes.

    Attributes:
        index: this process's index (0 is the coordinator, which writes logs).
        count: how many processes train together.
        launcher: ``"explicit"``, ``"environment"`` (``BRICKS_*``),
            ``"slurm"``, ``"ompi"``, ``"k8s"`` or ``"single"``.
    """

    index: int
    count: int
    launcher: str


def settings_from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The process-group settings that the environment gives.

    Returns ``{"coordinator", "num_processes", "process_id"}`` from the
    ``BRICKS_*`` variables, ``{"launcher": name}`` when a SLURM job of
    several tasks, an Open MPI job of several ranks or a Kubernetes indexed
    job is detected (``jax.distributed`` reads their variables itself), or
    ``{}`` for a single process.

    Raises:
        DistributedError: some ``BRICKS_*`` variables are set and others not,
            or they are not integers.

    >>> settings_from_environment({"BRICKS_COORDINATOR": "localhost:1234",
    ...     "BRICKS_NUM_PROCESSES": "2", "BRICKS_PROCESS_ID": "1"})
    {'coordinator': 'localhost:1234', 'num_processes': 2, 'process_id': 1}
    >>> settings_from_environment({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"})
    {'launcher': 'slurm'}
    >>> settings_from_environment({})
    {}
    """
    env = os.environ if environ is None else environ
    names = ("BRICKS_COORDINATOR", "BRICKS_NUM_PROCESSES", "BRICKS_PROCESS_ID")
    given = [n for n in names if env.get(n)]
    if given:
        if len(given) != len(names):
            missing = [n for n in names if n not in given]
            raise DistributedError(
                f"the environment sets {given} but not {missing}; set all three "
                "(coordinator host:port, number of processes, this process's id)"
            )
        try:
            count, index = int(env[names[1]]), int(env[names[2]])
        except ValueError:
            raise DistributedError(
                f"BRICKS_NUM_PROCESSES={env[names[1]]!r} and BRICKS_PROCESS_ID="
                f"{env[names[2]]!r}: expected integers"
            ) from None
        return {"coordinator": env[names[0]], "num_processes": count, "process_id": index}
    for launcher, variables in LAUNCHER_VARIABLES.items():
        if all(env.get(v) for v in variables):
            size = env.get("SLURM_NTASKS") if launcher == "slurm" else None
            size = env.get("OMPI_COMM_WORLD_SIZE") if launcher == "ompi" else size
            if size is not None and int(size) <= 1:
                continue
            return {"launcher": launcher}
    return {}


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: int | list[int] | None = None,
    heartbeat_timeout_s: int = 100,
) -> ProcessGroup:
    """Join the process group (``jax.distributed.initialize``), before any jax computation.

    Args:
        coordinator: ``"host:port"`` of process 0's coordination service.
        num_processes: how many processes take part.
        process_id: this process's index, ``0 <= process_id < num_processes``.
        local_device_ids: which local devices this process uses (default: all).
        heartbeat_timeout_s: after this long without a heartbeat a process
            counts as lost and the others stop with an error.

    Give all three of ``coordinator``, ``num_processes`` and ``process_id``,
    or none: then :func:`settings_from_environment` decides, and without
    any setting the run is one process (nothing is started).

    Returns:
        the :class:`ProcessGroup` of this process.

    Raises:
        DistributedError: some of the three arguments are given and others
            not, ``process_id`` is out of range, or ``jax.distributed`` could
            not start (its message is included).
    """
    explicit = {"coordinator": coordinator, "num_processes": num_processes,
                "process_id": process_id}
    given = [k for k, v in explicit.items() if v is not None]
    if given and len(given) != 3:
        raise DistributedError(
            f"initialize: got {given} but not {[k for k in explicit if k not in given]}; "
            "give coordinator, num_processes and process_id together, or none of them"
        )
    launcher = "explicit" if given else "single"
    settings: dict[str, Any] = dict(explicit) if given else settings_from_environment()
    if not given and settings:
        launcher = settings.pop("launcher", "environment")
    if not settings and launcher == "single":
        return ProcessGroup(0, 1, "single")
    if "num_processes" in settings:
        count, index = int(settings["num_processes"]), int(settings["process_id"])
        if count < 1 or not 0 <= index < count:
            raise DistributedError(
                f"initialize: expected 0 <= process_id < num_processes, got process_id="
                f"{index}, num_processes={count} ({launcher})"
            )
    if jax.distributed.is_initialized():
        return ProcessGroup(jax.process_index(), jax.process_count(), launcher)
    try:
        jax.distributed.initialize(
            coordinator_address=settings.get("coordinator"),
            num_processes=settings.get("num_processes"),
            process_id=settings.get("process_id"),
            local_device_ids=local_device_ids,
            heartbeat_timeout_seconds=int(heartbeat_timeout_s),
        )
    except Exception as error:  # jax raises RuntimeError/ValueError/XlaRuntimeError
        raise DistributedError(
            f"jax.distributed.initialize failed ({launcher}, settings {settings}): {error}"
        ) from error
    return ProcessGroup(jax.process_index(), jax.process_count(), launcher)


def process_index() -> int:
    """This process's index (``0`` for a single process)."""
    return jax.process_index()


def process_count() -> int:
    """How many processes train together (``1`` for a single process)."""
    return jax.process_count()


def is_coordinator() -> bool:
    """Whether this is process 0: the one that writes logs, plots and summaries."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier called ``name`` (no-op for one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def local_device_environments(visible: Sequence[str], processes: int) -> list[dict[str, str]]:
    """Split this machine's GPUs evenly over ``processes`` local processes.

    Args:
        visible: the GPUs the launcher may hand out (``CUDA_VISIBLE_DEVICES``'s
            entries: indices or UUIDs); empty on a machine without GPUs.
        processes: how many local processes share them.

    Returns:
        one environment update per process: process ``i`` sees the ``i``-th
        block of ``len(visible) / processes`` GPUs as its own
        (``CUDA_VISIBLE_DEVICES``); ``{}`` each when there are no GPUs.

    Raises:
        DeviceAssignmentError: the GPUs do not divide evenly (or ``processes < 1``).

    >>> local_device_environments(["0", "1", "2", "3"], 2)
    [{'CUDA_VISIBLE_DEVICES': '0,1'}, {'CUDA_VISIBLE_DEVICES': '2,3'}]
    >>> local_device_environments([], 2)
    [{}, {}]
    """
    visible, count = [str(v).strip() for v in visible], int(processes)
    if count < 1:
        raise DeviceAssignmentError(f"expected at least 1 local process, got {processes!r}")
    if not visible:
        return [{} for _ in range(count)]
    if len(visible) % count:
        raise DeviceAssignmentError(
            f"--processes {count}: the {len(visible)} visible GPUs ({','.join(visible)}) do not "
            f"divide evenly over {count} processes; choose a number of processes that divides "
            f"{len(visible)}, or set CUDA_VISIBLE_DEVICES to a multiple of {count} GPUs"
        )
    per = len(visible) // count
    return [{"CUDA_VISIBLE_DEVICES": ",".join(visible[i * per:(i + 1) * per])}
            for i in range(count)]
