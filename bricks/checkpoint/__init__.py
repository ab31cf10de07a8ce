"""Complete, atomic checkpoints that are safe to open (DESIGN decision 7).

* :func:`write_checkpoint` / :func:`read_checkpoint`: one checkpoint
  directory (``arrays.bin`` raw arrays + ``state.json`` + ``manifest.json``
  with sha256 sums), written under a temporary name, fsynced and renamed
  into place; read without ever unpickling.
* :class:`CheckpointManager`: a directory of numbered checkpoints with a
  lock, ``keep_last``/``keep_best`` retention, verification and fallback to
  the previous good checkpoint.
* :func:`main_loop_snapshot`: a main loop's state taken without waiting for
  the device (asynchronous saves), read later by :class:`PendingPayload`.
* :func:`restore_main_loop`, :func:`load_parameters`, :func:`exit_status`:
  main-loop resumption, parameters for inference, the exit code of an
  interrupted run (:data:`EXIT_INTERRUPTED`).
* ``python -m bricks.checkpoint show PATH`` lists what a checkpoint holds.

The :class:`~bricks.extensions.checkpoint.Checkpoint` and
:class:`~bricks.extensions.checkpoint.Load` extensions build on this.
"""

from ._format import (
    FORMAT,
    WRITE_STEPS,
    read_checkpoint,
    read_metadata,
    safe_json_loads,
    verify_checkpoint,
    write_checkpoint,
)
from ._manager import CheckpointManager, find_checkpoint
from ._resume import (
    EXIT_INTERRUPTED,
    PendingPayload,
    config_hash,
    exit_status,
    library_versions,
    load_parameters,
    main_loop_payload,
    main_loop_snapshot,
    read_resume_state,
    restore_main_loop,
)

__all__ = [
    "FORMAT",
    "WRITE_STEPS",
    "EXIT_INTERRUPTED",
    "CheckpointManager",
    "config_hash",
    "exit_status",
    "find_checkpoint",
    "library_versions",
    "load_parameters",
    "main_loop_payload",
    "main_loop_snapshot",
    "PendingPayload",
    "read_checkpoint",
    "read_metadata",
    "read_resume_state",
    "restore_main_loop",
    "safe_json_loads",
    "verify_checkpoint",
    "write_checkpoint",
]
