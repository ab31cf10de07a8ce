"""One committed checkpoint per save in a multi-process run: the commit protocol.

Every process of a run reaches each save at the same step (they agree on
steps, see :class:`~bricks.distributed.Agreement`); process 0 alone writes,
and it commits only once every process has reached the save. One save of a
:class:`SaveCommit` goes:

1. **begin** (every process): publish the step and a digest of the data
   position in ``jax.distributed``'s key-value store, wait at a barrier,
   compare. Processes that disagree all raise
   :class:`~bricks.errors.CheckpointCommitError` naming each one's step and
   position, and nothing is written.
2. **write** (process 0): the checkpoint goes to a temporary name (the
   other processes write nothing).
3. **commit** (every process): process 0 says whether its write succeeded,
   then every process waits at a second barrier; only after it does process
   0 rename the temporary directory into place. A process lost before the
   barrier makes it fail, so nothing is renamed: the previous checkpoint
   stays the newest complete one, and the temporary leftover is removed by
   the next run that takes the directory's lock.

The barriers are those of ``jax.distributed``'s coordination service (the
distributed client's ``wait_at_barrier``), not compiled collectives, so a
checkpoint writer thread can wait at them while the training thread runs
compiled steps; a lost process fails them (heartbeat) and a timeout bounds
them.

For fault-injection tests, ``BRICKS_CHECKPOINT_COMMIT_DELAY=<seconds>`` makes
every process sleep that long before the commit barrier (a slow save that a
test can interrupt).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

import jax

from bricks.errors import CheckpointCommitError, CheckpointWriteError, DistributedError

__all__ = ["SaveCommit", "every_process", "is_multi_process"]

#: How long a process waits at a barrier of a save (the others may still be
#: writing a large checkpoint); a lost process fails the barrier sooner.
DEFAULT_TIMEOUT_S = 3600.0
#: The environment variable of the fault tests' slow commit.
DELAY_VARIABLE = "BRICKS_CHECKPOINT_COMMIT_DELAY"


def is_multi_process() -> bool:
    """Whether this process is one of several joined by ``jax.distributed``.

    Does not start jax's backend in a single process (nothing joined).
    """
    return bool(jax.distributed.is_initialized()) and jax.process_count() > 1


def _client() -> Any:
    from jax._src import distributed  # the client of jax.distributed's coordination service

    client = getattr(distributed.global_state, "client", None)
    if client is None:
        raise DistributedError(
            "a multi-process checkpoint needs jax.distributed's client, but this process "
            "has none; join the group with bricks.distributed.initialize first"
        )
    return client


def _wait(barrier: str, timeout_ms: int) -> None:
    try:
        _client().wait_at_barrier(barrier, timeout_ms)
    except DistributedError:
        raise
    except Exception as error:  # jax raises XlaRuntimeError (DEADLINE_EXCEEDED, a lost task)
        raise DistributedError(
            f"process {jax.process_index()} of {jax.process_count()} waited at barrier "
            f"{barrier!r} and not every process came within {timeout_ms / 1000:g} s "
            f"(lost or stuck?): {error}"
        ) from error


def every_process(key: str, value: Any, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Any]:
    """Every process's JSON-able ``value``, in process order (all must call it with ``key``).

    Each value goes into ``jax.distributed``'s key-value store under
    ``key``, unique to this call; a barrier waits for all of them. Safe from
    any thread (no compiled collective); one process returns ``[value]``.

    Raises:
        DistributedError: a process did not come within ``timeout_s`` (or was lost).
    """
    if not is_multi_process():
        return [value]
    timeout_ms = max(1, int(float(timeout_s) * 1000))
    client = _client()
    client.key_value_set(f"{key}/{jax.process_index()}", json.dumps(value))
    _wait(f"{key}/barrier", timeout_ms)
    return [
        json.loads(client.blocking_key_value_get(f"{key}/{i}", timeout_ms))
        for i in range(jax.process_count())
    ]


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SaveCommit:
    """The commit protocol of the saves into one checkpoint directory, on every process.

    Args:
        name: names the directory's saves in the coordination service: the
            same on every process (the directory's base name; the directory
            itself may differ between processes).
        timeout_s: how long a barrier waits for the other processes.

    Each process calls :meth:`begin` then :meth:`commit` for every save, in
    the same order. :attr:`writes` says whether this process writes (only
    process 0 does).

    Raises (from :meth:`begin` and :meth:`commit`):
        CheckpointCommitError: the processes disagree on the step or the data
            position; a process did not reach a barrier within ``timeout_s``
            or was lost; or (on the other processes) process 0's write failed.
    """

    _made: dict[str, int] = {}

    def __init__(self, name: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.name = str(name)
        self.timeout_ms = max(1, int(float(timeout_s) * 1000))
        self.index, self.count = jax.process_index(), jax.process_count()
        # directories of one name are told apart by the order they are made in,
        # the same on every process (every process builds the same extensions)
        SaveCommit._made[self.name] = SaveCommit._made.get(self.name, 0) + 1
        self.instance = SaveCommit._made[self.name]
        self.saves = 0
        self._step: int | None = None

    @property
    def writes(self) -> bool:
        """Whether this process writes the checkpoint (process 0)."""
        return self.index == 0

    def _key(self, *parts: Any, save: int | None = None) -> str:
        save = self.saves if save is None else save
        names = ["bricks-checkpoint", self.name, self.instance, save, *parts]
        return "/".join(map(str, names))

    def _barrier(self, what: str) -> None:
        try:
            _wait(self._key(what), self.timeout_ms)
        except DistributedError as error:
            raise CheckpointCommitError(
                f"checkpoint of iteration {self._step} into {self.name!r} not committed: "
                f"{error}; the previous checkpoint stays the newest complete one"
            ) from error

    def begin(self, step: int, position: Any = None) -> dict[str, Any]:
        """Start a save of ``step``: check that every process is at it with the same data position.

        Args:
            step: the iteration of the save.
            position: this process's data position (the data stream's state,
                JSON-able); with a global iteration state it is the same on
                every process.

        Returns:
            what the checkpoint records of the processes:
            ``{"process_count": P, "data_position": digest}``.
        """
        self.saves += 1
        self._step = int(step)
        mine = {"step": int(step), "position": _digest(position)}
        try:
            seen = every_process(self._key("begin"), mine, self.timeout_ms / 1000)
        except DistributedError as error:
            raise CheckpointCommitError(
                f"checkpoint of iteration {step} into {self.name!r} not begun: {error}"
            ) from error
        if self.writes and self.saves > 1:  # every process read the last save's outcome
            _client().key_value_delete(self._key("outcome", save=self.saves - 1))
        if any(s != seen[0] for s in seen):
            described = "; ".join(
                f"process {i} at iteration {s['step']}, data position {s['position']}"
                for i, s in enumerate(seen)
            )
            raise CheckpointCommitError(
                f"checkpoint save #{self.saves} into {self.name!r}: expected every process at "
                f"the same iteration with the same global data position, got: {described}; "
                "nothing was written (did a process skip a save, or read another stream?)"
            )
        return {"process_count": self.count, "data_position": mine["position"]}

    def commit(self, failure: str | None = None) -> None:
        """Wait until every process reached the commit point of this save.

        Process 0 calls it between writing and renaming, with ``failure``
        (what went wrong) when its write failed; the other processes call
        it with nothing to write and raise
        :class:`~bricks.errors.CheckpointWriteError` if process 0's write failed.
        """
        delay = os.environ.get(DELAY_VARIABLE)
        if delay:
            time.sleep(float(delay))
        client = _client()
        if self.writes:
            client.key_value_set(self._key("outcome"), failure or "")
        self._barrier("commit")
        # every process read every begin key before this barrier: the store keeps nothing
        client.key_value_delete(self._key("begin", self.index))
        if not self.writes:
            outcome = client.blocking_key_value_get(self._key("outcome"), self.timeout_ms)
            if outcome:  # as on process 0, so that Checkpoint(on_error=...) acts alike
                raise CheckpointWriteError(
                    f"checkpoint of iteration {self._step} into {self.name!r} not committed: "
                    f"process 0 could not write it: {outcome}"
                )
