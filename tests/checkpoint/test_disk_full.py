"""A full disk: CheckpointWriteError naming the directory and free space, nothing left behind."""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import bricks.checkpoint._format as fmt
from bricks.checkpoint import CheckpointManager, find_checkpoint, write_checkpoint
from bricks.errors import CheckpointWriteError

from .test_size import _loop


def _disk_full_after(monkeypatch: pytest.MonkeyPatch, allowed: int) -> None:
    """``os.write`` of checkpoint arrays fails with ENOSPC after ``allowed`` calls."""
    original = fmt._write_all
    calls = {"n": 0}

    def write_all(fd: int, data: memoryview) -> None:
        calls["n"] += 1
        if calls["n"] > allowed:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(fd, data)

    monkeypatch.setattr(fmt, "_write_all", write_all)


def test_a_failed_write_names_directory_and_free_space_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_checkpoint(tmp_path, "ckpt-000000001", {}, {"w": np.ones(4, np.float32)})
    _disk_full_after(monkeypatch, 0)
    with pytest.raises(CheckpointWriteError) as info:
        write_checkpoint(tmp_path, "ckpt-000000002", {}, {"w": np.ones(4, np.float32)})
    message = str(info.value)
    assert str(tmp_path) in message and "free there" in message and "No space left" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-000000001"]
    assert find_checkpoint(tmp_path)[0].name == "ckpt-000000001"


@pytest.mark.parametrize("async_save", [False, True])
def test_on_error_stop_raises_and_warn_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, async_save: bool
) -> None:
    _disk_full_after(monkeypatch, 0)
    loop = _loop(tmp_path / "stop", 12, every=4)
    loop.extensions[-1].async_save = async_save
    with pytest.raises(CheckpointWriteError, match="free there"):
        loop.run()
    if not async_save:  # an asynchronous write's error comes at the next save or the end
        assert loop.status["iterations_done"] < 12

    loop = _loop(tmp_path / "warn", 12, every=4)
    checkpoint = loop.extensions[-1]
    checkpoint.async_save, checkpoint.on_error = async_save, "warn"
    loop.run()
    assert loop.status["iterations_done"] == 12
    assert checkpoint.failures and "free there" in checkpoint.failures[0]
    assert not CheckpointManager(tmp_path / "warn" / "ckpt", lock=False).leftovers()


def test_a_real_full_tmpfs(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a small tmpfs is not allowed here: {done.stderr.strip()}")
    try:
        with pytest.raises(CheckpointWriteError, match="free there"):
            write_checkpoint(mount, "ckpt-000000001", {}, {"w": np.ones(1 << 17, np.float32)})
        assert list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
