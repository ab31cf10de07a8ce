"""Checkpoints of a whole main loop: what goes in, how it comes back, exit codes.

A main-loop checkpoint holds ``main_loop.get_state()``: the log (status and
rows), the algorithm's parameters by path, optimizer state, RNG key and
monitoring accumulators, the data stream's iteration state (mid-epoch) and
every extension's state; plus metadata: the iteration count, a hash of the
parameter and optimizer-state structure (paths, shapes, dtypes) and the
library versions.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bricks.errors import CheckpointMismatchError

from ._format import read_checkpoint
from ._manager import find_checkpoint

__all__ = [
    "EXIT_INTERRUPTED",
    "exit_status",
    "main_loop_payload",
    "main_loop_snapshot",
    "PendingPayload",
    "restore_main_loop",
    "read_resume_state",
    "load_parameters",
    "config_hash",
    "library_versions",
]

logger = logging.getLogger(__name__)

#: Exit code of a run stopped by SIGTERM or Ctrl-C after its checkpoint was
#: written: 75 is ``EX_TEMPFAIL`` of sysexits.h, "temporary failure, retry",
#: so a scheduler can tell "resume me" from a crash (1) or a kill (137, 143).
EXIT_INTERRUPTED = 75

PARAMS_PREFIX = "algorithm/params/"
OPT_PREFIX = "algorithm/opt_state/"
_PACKAGES = ("bricks", "jax", "jaxlib", "numpy", "optax", "h5py")


def exit_status(main_loop: Any) -> int:
    """The process exit code for a finished :class:`~bricks.main_loop.MainLoop`.

    ``0`` when training ended on its own (an extension finished it, or the
    data ran out); :data:`EXIT_INTERRUPTED` (75) when SIGTERM or Ctrl-C
    stopped it, so the job should be resumed: ``sys.exit(exit_status(loop))``.
    """
    status = main_loop.status
    if status.get("batch_interrupt_received") or status.get("epoch_interrupt_received"):
        return EXIT_INTERRUPTED
    return 0


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that produced a checkpoint."""
    return dict(_library_versions())


@functools.cache
def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _spec(arrays: Mapping[str, Any]) -> list[tuple[str, list[int], str]]:
    return sorted(
        (k, list(np.shape(v)), str(np.asarray(v).dtype if not hasattr(v, "dtype") else v.dtype))
        for k, v in arrays.items()
        if k.startswith((PARAMS_PREFIX, OPT_PREFIX))
    )


def config_hash(arrays: Mapping[str, Any]) -> str:
    """sha256 of the parameter and optimizer-state structure: paths, shapes, dtypes."""
    text = json.dumps(_spec(arrays), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def main_loop_payload(
    main_loop: Any, copy: bool = False
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """``(state, arrays, meta)`` of a main loop, ready for a checkpoint.

    Args:
        main_loop: the :class:`~bricks.main_loop.MainLoop`.
        copy: copy every array and the JSON state now (for a write that
            happens later, in a background thread, while training goes on).
    """
    state, arrays = main_loop.get_state()
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    if copy:  # views (of device buffers on CPU) are copied; fresh host copies are kept
        arrays = {k: v if v.flags.owndata else v.copy() for k, v in arrays.items()}
    if copy:
        state = json.loads(json.dumps(state))
    return state, arrays, _meta(main_loop, arrays)


def _meta(main_loop: Any, arrays: Mapping[str, Any]) -> dict[str, Any]:
    status = main_loop.status
    return {
        "kind": "main_loop",
        "iterations_done": int(status.get("iterations_done", 0)),
        "epochs_done": int(status.get("epochs_done", 0)),
        "created": time.time(),
        "config_hash": config_hash(arrays),
        "versions": library_versions(),
        "pid": os.getpid(),
    }


class PendingPayload:
    """A main loop's checkpoint payload taken at a save call, read later.

    Made by :func:`main_loop_snapshot` without waiting for the device;
    :meth:`result` (called in a writer thread) waits for the device copies
    and returns ``(state, arrays, meta)`` as :func:`main_loop_payload`
    would have at the save call.

    Attributes:
        nonfinite_at: after :meth:`result`, the iteration whose cost was
            non-finite if training had hit one before the save call (the
            state is then frozen at the iteration before it and the
            checkpoint must not be written); ``None`` otherwise.
    """

    def __init__(self, main_loop: Any, snapshot: Any, state: dict[str, Any]) -> None:
        self._main_loop_meta = {
            "iterations_done": int(main_loop.status.get("iterations_done", 0)),
            "epochs_done": int(main_loop.status.get("epochs_done", 0)),
        }
        self._created = time.time()
        self._snapshot = snapshot
        self._state = state
        self.nonfinite_at: int | None = None

    def result(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
        """Wait for the device copies; ``(state, arrays, meta)`` of the save call."""
        snapshot, self._snapshot = self._snapshot, None  # freed with the host arrays
        algo_json, algo_arrays = snapshot.get_state()
        bad = algo_json.get("bad", -1) if isinstance(algo_json, dict) else -1
        if isinstance(bad, int) and bad >= 0:
            self.nonfinite_at = bad
        arrays = {f"algorithm/{k}": np.asarray(v) for k, v in algo_arrays.items()}
        state = dict(self._state, algorithm=algo_json)
        meta = {
            "kind": "main_loop",
            **self._main_loop_meta,
            "created": self._created,
            "config_hash": config_hash(arrays),
            "versions": library_versions(),
            "pid": os.getpid(),
        }
        return state, arrays, meta


def main_loop_snapshot(main_loop: Any) -> PendingPayload | None:
    """Take a main loop's checkpoint payload now without waiting for the device.

    The JSON part (log, data stream, extensions) is copied at once; the
    algorithm's arrays are copied *on the device* by one compiled call,
    queued behind the steps already dispatched (the writer thread moves them
    to the host). Nothing here waits for a GPU, so the training loop goes on
    at once; the snapshot is not donated by later steps. (On the CPU backend
    the copy, like every step, may wait for a free slot among the
    computations XLA:CPU lets be in flight: about one step.)

    Returns:
        a :class:`PendingPayload`, or ``None`` when the algorithm has no
        ``snapshot()`` method (as :meth:`GradientDescent.snapshot
        <bricks.algorithms.GradientDescent.snapshot>`: an object whose
        ``get_state()``, called later from another thread, returns the
        algorithm's ``get_state()`` of now); then use :func:`main_loop_payload`.
    """
    take = getattr(main_loop.algorithm, "snapshot", None)
    if not callable(take):
        return None
    snapshot = take()
    stream_state = None
    if hasattr(main_loop.data_stream, "get_state"):
        stream_state = main_loop.data_stream.get_state()
    state = {  # MainLoop.get_state's layout; the algorithm's part comes in result()
        "format": "bricks.main_loop/1",
        "log": main_loop.log.checkpoint_state(),
        "algorithm": None,
        "data_stream": stream_state,
        "extensions": {ext.name: ext.get_state() for ext in main_loop.extensions},
    }
    state = json.loads(json.dumps(state))  # a copy: training goes on changing the originals
    return PendingPayload(main_loop, snapshot, state)


def _check_shapes(main_loop: Any, arrays: Mapping[str, np.ndarray], where: Path) -> None:
    current = getattr(main_loop.algorithm, "current_parameters", None)
    if current is None:
        return
    now = {path: tuple(np.shape(v)) for path, v in current().items()}
    saved = {
        k[len(PARAMS_PREFIX) :]: tuple(v.shape)
        for k, v in arrays.items()
        if k.startswith(PARAMS_PREFIX)
    }
    for path, shape in now.items():
        if path not in saved:
            raise CheckpointMismatchError(
                f"checkpoint {where} has no value for parameter {path!r} of shape {shape}; "
                f"it holds {sorted(saved)[:10]}"
            )
        if saved[path] != shape:
            raise CheckpointMismatchError(
                f"parameter {path!r} has shape {shape} in the model but {saved[path]} in "
                f"checkpoint {where}; was the model configured differently?"
            )
    extra = sorted(set(saved) - set(now))
    if extra:
        raise CheckpointMismatchError(
            f"checkpoint {where} holds parameters the model lacks: {extra[:10]}"
        )


def _check_step_rule(main_loop: Any, arrays: Mapping[str, np.ndarray], where: Path) -> None:
    """The optimizer state's structure (names, shapes) must be the one saved."""
    get_state = getattr(main_loop.algorithm, "get_state", None)
    if get_state is None:
        return
    _, current = get_state()
    now = {k: tuple(np.shape(v)) for k, v in current.items() if k.startswith("opt_state/")}
    saved = {
        k[len("algorithm/") :]: tuple(v.shape)
        for k, v in arrays.items()
        if k.startswith(OPT_PREFIX)
    }
    if now != saved:
        missing, extra = sorted(set(now) - set(saved)), sorted(set(saved) - set(now))
        shapes = sorted(k for k in set(now) & set(saved) if now[k] != saved[k])
        raise CheckpointMismatchError(
            f"checkpoint {where} was written with another step rule: its optimizer state "
            f"differs (the model's step rule has {missing[:5]} that the checkpoint lacks, the "
            f"checkpoint has {extra[:5]} that it lacks, shapes differ at {shapes[:5]}); resume "
            "with the step rule it was saved with, or pass allow_step_rule_change=True"
        )


def read_resume_state(
    path: str | os.PathLike, strict: bool = False
) -> tuple[dict[str, Any], dict[str, np.ndarray], Path]:
    """Find and read the newest good main-loop checkpoint under ``path``.

    Returns:
        ``(state, arrays, checkpoint path)``.
    """
    chosen, _ = find_checkpoint(path, strict=strict)
    state, arrays, _meta = read_checkpoint(chosen, verify=False)
    return state, arrays, chosen


def restore_main_loop(
    main_loop: Any,
    path: str | os.PathLike,
    strict: bool = False,
    allow_step_rule_change: bool = False,
) -> Path:
    """Restore a main loop from a checkpoint (or the newest good one in a directory).

    The next :meth:`MainLoop.run` continues with the very next batch. A
    library-version change since the checkpoint is logged as a warning.

    Args:
        main_loop: the main loop to restore into.
        path: a checkpoint or a directory of them.
        strict: do not fall back to an older checkpoint when the newest is damaged.
        allow_step_rule_change: accept an optimizer state of another
            structure (another step rule); the model's step rule keeps what
            it can read.

    Raises:
        CheckpointMismatchError: a parameter's shape differs (both are named),
            or the optimizer state is another step rule's.
        CheckpointNotFoundError, CheckpointCorruptError: see :func:`find_checkpoint`.
    """
    state, arrays, chosen = read_resume_state(path, strict=strict)
    _check_shapes(main_loop, arrays, chosen)
    if not allow_step_rule_change:
        _check_step_rule(main_loop, arrays, chosen)
    main_loop.set_state(state, arrays)
    logger.info("resumed from %s at iteration %s", chosen, main_loop.status.get("iterations_done"))
    return chosen


def load_parameters(path: str | os.PathLike, strict: bool = False) -> dict[str, np.ndarray]:
    """Parameter values by path from a checkpoint, for inference or fine-tuning.

    Args:
        path: a checkpoint, or a directory of them (the newest good one is used).
        strict: do not fall back to an older checkpoint when the newest is damaged.

    Returns:
        ``{"/mlp/linear_0.W": array, ...}``; give it to
        ``brick.set_parameter_values`` or a graph's ``set_parameter_values``.
    """
    chosen, _ = find_checkpoint(path, strict=strict)
    _, arrays, _ = read_checkpoint(
        chosen, verify=False, names=lambda name: name.startswith(PARAMS_PREFIX)
    )
    if not arrays:  # a checkpoint of plain arrays (CheckpointManager.save)
        _, arrays, _ = read_checkpoint(chosen, verify=False)
        return arrays
    return {k[len(PARAMS_PREFIX) :]: v for k, v in arrays.items()}
