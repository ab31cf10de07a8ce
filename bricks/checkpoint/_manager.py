"""A directory of checkpoints: naming, locking, retention, verification and fallback.

>>> import tempfile, numpy as np
>>> with tempfile.TemporaryDirectory() as d:
...     with CheckpointManager(d, keep_last=2) as manager:
...         for step in (10, 20, 30):
...             _ = manager.save(step, {"note": step}, {"w": np.full(3, step, np.float32)})
...         [p.name for p in manager.checkpoints()]
...         state, arrays, path = manager.restore()
...     state["note"], arrays["w"].tolist(), path.name
['ckpt-000000020', 'ckpt-000000030']
(30, [30.0, 30.0, 30.0], 'ckpt-000000030')
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import re
import shutil
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bricks.distributed import SaveCommit, is_coordinator, is_multi_process
from bricks.errors import (
    CheckpointCorruptError,
    CheckpointError,
    CheckpointLockedError,
    CheckpointNotFoundError,
)

from ._format import TMP_MARK, read_checkpoint, read_metadata, verify_checkpoint, write_checkpoint

__all__ = ["CheckpointManager", "find_checkpoint", "lock_holder", "LOCK_FILE", "DAMAGED_MARK"]

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
#: prefix of a damaged checkpoint moved aside (never counted as kept, never resumed)
DAMAGED_MARK = "damaged-"
_NAME = re.compile(r"^ckpt-(\d{9,})(?:-(\d+))?$")


def _order(path: Path) -> tuple[int, int]:
    m = _NAME.match(path.name)
    assert m is not None
    return int(m.group(1)), int(m.group(2) or 0)


def _list(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _NAME.match(p.name) and p.is_dir()]
    return sorted(found, key=_order)


def find_checkpoint(path: str | os.PathLike, strict: bool = False) -> tuple[Path, list[str]]:
    """Resolve ``path`` to one complete, verified checkpoint.

    Args:
        path: a checkpoint (``.../ckpt-000000123``) or a directory of them
            (then the newest one that verifies is chosen).
        strict: fail instead of falling back to an older checkpoint.

    Returns:
        ``(checkpoint path, problems)``: what was wrong with the newer
        checkpoints that were skipped (each names its file).

    Raises:
        CheckpointNotFoundError: nothing complete is there.
        CheckpointCorruptError: the checkpoint (or, with ``strict``, the
            newest one) is damaged, or every one is.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError(f"no checkpoint at {path}: it does not exist")
    if (
        (path / "manifest.json").exists()
        or (path / "state.json").exists()
        or _NAME.match(path.name)
    ):
        problems = verify_checkpoint(path)
        if problems:
            raise CheckpointCorruptError(f"checkpoint {path} is damaged: " + "; ".join(problems))
        return path, []
    candidates = _list(path)
    if not candidates:
        leftovers = [p.name for p in path.iterdir() if TMP_MARK in p.name] if path.is_dir() else []
        extra = f" (only incomplete leftovers: {leftovers})" if leftovers else ""
        raise CheckpointNotFoundError(f"no complete checkpoint in {path}{extra}")
    skipped: list[str] = []
    for candidate in reversed(candidates):
        problems = verify_checkpoint(candidate)
        if not problems:
            for problem in skipped:
                logger.warning("skipped a damaged checkpoint: %s", problem)
            if skipped:
                logger.warning("falling back to %s", candidate)
            return candidate, skipped
        skipped.extend(problems)
        if strict:
            raise CheckpointCorruptError(
                f"the newest checkpoint {candidate} is damaged (strict=True, no fallback): "
                + "; ".join(problems)
            )
    raise CheckpointCorruptError(f"every checkpoint in {path} is damaged: " + "; ".join(skipped))


#: locks this process holds: lock file path -> [fd, managers holding it, shareable]
_HELD: dict[str, list[int]] = {}
_HELD_MUTEX = threading.Lock()


def lock_holder(directory: str | os.PathLike) -> str | None:
    """``"pid N on host H"`` of the live holder of ``directory``'s lock, or ``None``.

    Opens nothing for writing and creates nothing: safe on any run.
    """
    lock_path = Path(directory) / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _describe(os.pread(fd, 256, 0))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _describe(content: bytes) -> str:
    pid, host = _parse_holder(content)
    return f"pid {pid if pid is not None else 'unknown'} on host {host or 'unknown'}"


def _parse_holder(content: bytes) -> tuple[int | None, str | None]:
    parts = content.decode(errors="replace").split()
    pid = int(parts[0]) if parts and parts[0].isdigit() else None
    return pid, (parts[1] if len(parts) > 1 else None)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _take_lock(directory: Path, shareable: bool) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    lock_path = directory / LOCK_FILE
    key = os.path.realpath(lock_path)
    with _HELD_MUTEX:
        if key in _HELD and _HELD[key][2]:
            _HELD[key][1] += 1
            return key
        for attempt in range(2):
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                content = os.pread(fd, 256, 0)
                os.close(fd)
                pid, host = _parse_holder(content)
                if (
                    attempt == 0
                    and pid is not None
                    and host == socket.gethostname()
                    and not _pid_alive(pid)
                ):
                    # the holder died; processes it forked keep the flock alive
                    logger.warning(
                        "breaking the stale lock %s of pid %d on %s: that process is gone "
                        "(its lock lives on in processes it started)",
                        lock_path,
                        pid,
                        host,
                    )
                    lock_path.unlink(missing_ok=True)
                    continue
                raise CheckpointLockedError(
                    f"checkpoint directory {directory} is in use by another run "
                    f"({_describe(content)}, lock file {lock_path}); two runs must not write the "
                    "same directory — give this run its own directory, or stop the other run "
                    "first"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
            os.fsync(fd)
            _HELD[key] = [fd, 1, int(shareable)]
            return key
    raise AssertionError("unreachable")  # pragma: no cover


def _forget_locks_in_child() -> None:
    """A forked child (a data worker) must neither hold nor release its parent's locks.

    Closing the inherited descriptors drops the child's reference without
    unlocking (the parent's reference keeps the ``flock``), so a worker that
    outlives a killed trainer does not keep the run locked.
    """
    for fd, _count, _shareable in _HELD.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_locks_in_child)


def _drop_lock(key: str) -> None:
    with _HELD_MUTEX:
        entry = _HELD.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _HELD[key]
        fd = entry[0]
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


class CheckpointManager:
    """Save numbered checkpoints into one directory and find the newest good one.

    Args:
        directory: where the ``ckpt-NNNNNNNNN`` directories go.
        keep_last: keep this many newest checkpoints (``None``: all).
        keep_best: also keep this many best ones by ``metric``.
        metric: the name of the value in each save's ``metrics`` that ranks
            checkpoints for ``keep_best``.
        mode: ``"min"`` (lower is better) or ``"max"``.
        lock: take the directory's lock file (pid + ``fcntl.flock``) so a
            second run writing the same directory is refused. Readers pass
            ``False``.

    The lock is taken by :meth:`acquire` (or the ``with`` statement, or the
    first :meth:`save`) and released by :meth:`release` (or when the process
    dies: ``flock`` locks do not outlive their process).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        keep_last: int | None = None,
        keep_best: int | None = None,
        metric: str | None = None,
        mode: str = "min",
        lock: bool = True,
    ) -> None:
        if keep_last is not None and int(keep_last) < 1:
            raise CheckpointError(f"keep_last must be >= 1 or None, got {keep_last!r}")
        if keep_best is not None and (int(keep_best) < 1 or metric is None):
            raise CheckpointError(
                f"keep_best must be >= 1 and needs metric=<log record name>, got "
                f"keep_best={keep_best!r}, metric={metric!r}"
            )
        if mode not in ("min", "max"):
            raise CheckpointError(f"mode must be 'min' or 'max', got {mode!r}")
        self.directory = Path(directory)
        self.keep_last = None if keep_last is None else int(keep_last)
        self.keep_best = None if keep_best is None else int(keep_best)
        self.metric, self.mode, self.use_lock = metric, mode, lock
        self._lock_key: str | None = None
        self._save_commit: SaveCommit | None = None
        self._mutex = threading.Lock()
        self.skipped: list[str] = []

    # -- lock -----------------------------------------------------------------
    def acquire(self, cleanup: bool = True, shareable: bool = False) -> None:
        """Take the directory lock; clean up leftovers of dead writers.

        The lock file holds ``<pid> <host>`` of its holder. A lock whose
        holder died on this host while its ``flock`` lives on (in child
        processes that inherited it) is stale: it is broken and logged.

        Args:
            cleanup: also remove ``.tmp-`` leftovers and move damaged
                checkpoints newer than the newest good one aside (see
                :meth:`set_aside_damaged`). A caller that only reserves the
                directory before it decides to use it passes ``False``.
            shareable: let other managers *of this process* join the lock
                (the runner reserves a run's directory before the
                ``Checkpoint`` extension it builds takes it).

        In a multi-process run only process 0 takes the lock (the others
        never write into the directory).

        Raises:
            CheckpointLockedError: another live process holds it (host and pid named).
        """
        if not self.use_lock or self._lock_key is not None:
            return
        if is_multi_process() and not is_coordinator():
            return  # only process 0 writes (see save): the others leave the directory alone
        self._lock_key = _take_lock(self.directory, shareable)
        if cleanup:
            self.cleanup()
            self.set_aside_damaged()

    @property
    def _lock_fd(self) -> int | None:
        entry = None if self._lock_key is None else _HELD.get(self._lock_key)
        return None if entry is None else entry[0]

    def release(self) -> None:
        """Release the directory lock (idempotent)."""
        key, self._lock_key = self._lock_key, None
        if key is not None:
            _drop_lock(key)

    def __enter__(self) -> CheckpointManager:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # interpreter shutdown
            pass

    # -- listing --------------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        """Every committed checkpoint, oldest first (not verified)."""
        return _list(self.directory)

    def leftovers(self) -> list[Path]:
        """Incomplete ``.tmp-`` directories (writes that were killed)."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if TMP_MARK in p.name)

    def cleanup(self) -> list[Path]:
        """Delete incomplete leftovers; only while holding the lock (another
        process's write in progress looks the same). Returns what was removed."""
        if self._lock_fd is None:
            return []
        removed = self.leftovers()
        for path in removed:
            logger.info("removing incomplete checkpoint leftover %s", path)
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(
                missing_ok=True
            )
        return removed

    def set_aside_damaged(self) -> list[Path]:
        """Move damaged checkpoints newer than the newest good one aside.

        Each is renamed ``damaged-<name>`` (kept for inspection, reported in
        the log, never resumed and never counted by ``keep_last``); only
        while holding the lock, and only when a good checkpoint remains.
        Returns the new paths.
        """
        if self._lock_key is None:
            return []
        damaged: list[Path] = []
        for candidate in reversed(self.checkpoints()):
            if not verify_checkpoint(candidate):
                break
            damaged.append(candidate)
        else:
            return []  # nothing good to fall back to: leave everything as it is
        moved = []
        for path in damaged:
            target = path.with_name(DAMAGED_MARK + path.name)
            k = 1
            while target.exists():
                k += 1
                target = path.with_name(f"{DAMAGED_MARK}{path.name}-{k}")
            os.rename(path, target)
            logger.warning("damaged checkpoint %s moved aside to %s", path, target.name)
            moved.append(target)
        return moved

    def latest(self, strict: bool = False) -> Path:
        """The newest checkpoint that verifies (see :func:`find_checkpoint`).

        Damaged newer ones are logged and listed in :attr:`skipped`.
        """
        path, self.skipped = find_checkpoint(self.directory, strict=strict)
        return path

    # -- saving ---------------------------------------------------------------
    def _name_for(self, step: int) -> str:
        base = f"ckpt-{int(step):09d}"
        taken = {p.name for p in self.checkpoints()}
        if base not in taken:
            return base
        k = 1
        while f"{base}-{k}" in taken:
            k += 1
        return f"{base}-{k}"

    def save(
        self,
        step: int,
        state: Mapping[str, Any],
        arrays: Mapping[str, Any],
        meta: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
    ) -> Path | None:
        """Write a checkpoint for ``step``, then apply the retention rules.

        Older checkpoints are deleted only after the new one is committed.

        In a run of several processes joined by ``jax.distributed`` every
        process calls this at the same step and one checkpoint is committed:
        process 0 writes it, once every process has checked that all are at
        the same step and data position (``state["data_stream"]``), and
        renames it into place only after every process reached the commit
        barrier; the other processes write nothing and return ``None`` (see
        :class:`bricks.distributed.SaveCommit`).

        Args:
            step: the iteration number (names the directory).
            state: JSON-able state.
            arrays: ``{name: numeric array}``.
            meta: extra JSON-able metadata.
            metrics: values for ``keep_best`` (``{metric: value}``).

        Raises:
            CheckpointCommitError: (several processes) they disagree on the
                step or data position, or one was lost before the commit.
        """
        with self._mutex:
            commit = self._commit()
            full_meta = dict(meta or {})
            if commit is not None:
                position = state.get("data_stream") if isinstance(state, Mapping) else None
                full_meta["processes"] = commit.begin(step, position)
                if not commit.writes:
                    commit.commit()
                    return None
            self.acquire()
            full_meta["step"] = int(step)
            full_meta["metrics"] = {k: float(v) for k, v in (metrics or {}).items()}
            if commit is None:
                path = write_checkpoint(
                    self.directory, self._name_for(step), state, arrays, full_meta
                )
            else:
                path = self._write_committed(commit, step, state, arrays, full_meta)
            self._apply_retention(path)
            return path

    def _write_committed(
        self,
        commit: SaveCommit,
        step: int,
        state: Mapping[str, Any],
        arrays: Mapping[str, Any],
        meta: Mapping[str, Any],
    ) -> Path:
        """Process 0's write of a multi-process save: renamed once all reached the commit."""
        reached: list[str | None] = []

        def before_commit(failure: str | None) -> None:
            reached.append(failure)
            commit.commit(failure)

        try:
            return write_checkpoint(
                self.directory, self._name_for(step), state, arrays, meta, before_commit
            )
        except Exception as error:
            if not reached:  # failed before writing (a value that is not JSON ...): say so
                commit.commit(f"{type(error).__name__}: {error}")
            raise

    def _commit(self) -> SaveCommit | None:
        """The commit protocol of this directory's saves in a multi-process run."""
        if self._save_commit is None and is_multi_process():
            self._save_commit = SaveCommit(self.directory.name)
        return self._save_commit

    def _metric_of(self, path: Path) -> float | None:
        try:
            value = read_metadata(path)["meta"].get("metrics", {}).get(self.metric)
        except CheckpointError:
            return None
        if value is None or not math.isfinite(float(value)):
            return None
        return float(value)

    def _apply_retention(self, newest: Path) -> None:
        existing = []
        for path in self.checkpoints():  # one state per iteration: the newest supersedes
            if existing and _order(existing[-1])[0] == _order(path)[0] and path == newest:
                self.delete(existing.pop())
            existing.append(path)
        if self.keep_last is None and self.keep_best is None:
            return
        keep = {newest}
        if self.keep_last is not None:
            keep.update(existing[-self.keep_last :])
        else:
            keep.update(existing)
        if self.keep_best is not None:
            scored = [(m, p) for p in existing if (m := self._metric_of(p)) is not None]
            sign = 1.0 if self.mode == "min" else -1.0
            scored.sort(key=lambda mp: (sign * mp[0], -_order(mp[1])[0]))
            keep.update(p for _, p in scored[: self.keep_best])
        for path in existing:
            if path not in keep:
                self.delete(path)

    def delete(self, path: Path) -> None:
        """Remove one checkpoint: renamed to a ``.tmp-`` name first (atomic), then deleted."""
        doomed = path.with_name(f"{path.name}{TMP_MARK}deleted-{os.getpid()}")
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return
        shutil.rmtree(doomed, ignore_errors=True)

    # -- loading --------------------------------------------------------------
    def restore(
        self, path: str | os.PathLike | None = None, strict: bool = False
    ) -> tuple[dict[str, Any], dict[str, np.ndarray], Path]:
        """Read a checkpoint (default: the newest good one): ``(state, arrays, path)``."""
        chosen, self.skipped = find_checkpoint(path if path is not None else self.directory, strict)
        state, arrays, _ = read_checkpoint(chosen, verify=False)
        return state, arrays, chosen
