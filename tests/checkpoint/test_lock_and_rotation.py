"""The directory lock (host, pid, stale locks) and rotation (superseded, damaged set aside)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bricks.checkpoint import CheckpointManager, find_checkpoint
from bricks.checkpoint._manager import DAMAGED_MARK, lock_holder
from bricks.errors import CheckpointLockedError

_ORPHAN = """
import os, sys, time
from bricks.checkpoint import CheckpointManager
manager = CheckpointManager(sys.argv[1])
manager.acquire()
if sys.argv[2] == "untracked":  # a copy of the descriptor that bricks does not know of
    os.dup2(manager._lock_fd, 100)
child = os.fork()
if child == 0:              # the child inherits the flock and outlives its parent
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    time.sleep(60)
    os._exit(0)
print(os.getpid(), child, flush=True)
os._exit(0)                 # the holder dies without releasing
"""


def test_the_lock_names_host_and_pid(tmp_path: Path) -> None:
    holder = CheckpointManager(tmp_path)
    holder.acquire()
    try:
        with pytest.raises(CheckpointLockedError) as info:
            CheckpointManager(tmp_path).acquire()
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in str(info.value)
        assert lock_holder(tmp_path) == f"pid {os.getpid()} on host {socket.gethostname()}"
    finally:
        holder.release()
    assert lock_holder(tmp_path) is None


def test_a_stale_lock_of_a_dead_holder_is_broken_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _ORPHAN, str(tmp_path), "untracked"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    dead, orphan = map(int, out.stdout.split())
    try:
        _break_stale_lock(tmp_path, dead, caplog)
    finally:
        os.kill(orphan, 9)


def _break_stale_lock(tmp_path: Path, dead: int, caplog: pytest.LogCaptureFixture) -> None:
    deadline = time.monotonic() + 10
    while True:  # the parent is gone (reaped by us via subprocess.run)
        try:
            os.kill(dead, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert lock_holder(tmp_path) is not None  # the orphan still holds the flock
    manager = CheckpointManager(tmp_path)
    with caplog.at_level(logging.WARNING, logger="bricks.checkpoint._manager"):
        manager.acquire()
    assert "stale lock" in caplog.text and f"pid {dead}" in caplog.text
    assert lock_holder(tmp_path) is not None
    manager.release()


def test_forked_children_do_not_keep_the_lock(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _ORPHAN, str(tmp_path), "tracked"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    dead, orphan = map(int, out.stdout.split())
    try:
        deadline = time.monotonic() + 10
        while lock_holder(tmp_path) is not None:  # gone with its holder, though the child lives
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(orphan, 0)  # the child is still alive
    finally:
        os.kill(orphan, 9)


def _save(manager: CheckpointManager, step: int) -> Path:
    return manager.save(step, {"step": step}, {"w": np.full(2, step, np.float32)})


def test_a_second_save_of_one_iteration_supersedes_the_first(tmp_path: Path) -> None:
    with CheckpointManager(tmp_path, keep_last=2) as manager:
        for step in (10, 20, 20):
            _save(manager, step)
        names = [p.name for p in manager.checkpoints()]
    assert names == ["ckpt-000000010", "ckpt-000000020-1"]  # two distinct states kept


def test_damaged_checkpoints_are_set_aside_and_not_counted(tmp_path: Path) -> None:
    with CheckpointManager(tmp_path, keep_last=2) as manager:
        for step in (10, 20, 30):
            _save(manager, step)
    newest = tmp_path / "ckpt-000000030" / "arrays.bin"
    data = bytearray(newest.read_bytes())
    data[-1] ^= 0xFF
    newest.write_bytes(bytes(data))
    path, skipped = find_checkpoint(tmp_path)
    assert path.name == "ckpt-000000020" and skipped
    with CheckpointManager(tmp_path, keep_last=2) as manager:  # a resumed run takes the lock
        assert [p.name for p in manager.checkpoints()] == ["ckpt-000000020"]
        _save(manager, 25)
        _save(manager, 30)
        kept = [p.name for p in manager.checkpoints()]
    assert kept == ["ckpt-000000025", "ckpt-000000030"]
    assert (tmp_path / f"{DAMAGED_MARK}ckpt-000000030").is_dir()
    listing = subprocess.run(
        [sys.executable, "-m", "bricks.checkpoint", "list", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "damaged-ckpt-000000030  (moved aside as damaged)" in listing.stdout


def test_saves_do_not_verify_the_previous_checkpoint_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bricks.checkpoint._manager as manager_module

    calls: list[Path] = []
    original = manager_module.verify_checkpoint
    monkeypatch.setattr(
        manager_module, "verify_checkpoint", lambda p: calls.append(p) or original(p)
    )
    with CheckpointManager(tmp_path, keep_last=2) as manager:
        for step in (10, 20, 30):
            _save(manager, step)
    assert calls == []  # only taking the lock checks for damaged ones, once
