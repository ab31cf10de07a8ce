"""SIGKILL at every write step of a save and at random moments: the newest
complete checkpoint always loads, leftovers are ignored and then cleaned.

The writer is a small subprocess that imports only numpy and
``bricks.checkpoint`` (no jax), so each kill costs a fraction of a second.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bricks.checkpoint import WRITE_STEPS, CheckpointManager, find_checkpoint, read_checkpoint

ROOT = Path(__file__).resolve().parents[2]
WRITER = """
import sys
import numpy as np
from bricks.checkpoint import CheckpointManager
directory, start, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
manager = CheckpointManager(directory, keep_last=2)
manager.acquire()
print("ready", flush=True)
for step in range(start, start + count):
    arrays = {f"w{i}": np.full(size, step, np.float32) for i in range(4)}
    manager.save(step, {"step": step}, arrays)
"""


def _writer(directory: Path, start: int, count: int, size: int, fault: str | None = None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("BRICKS_CHECKPOINT_FAULT", None)
    if fault:
        env["BRICKS_CHECKPOINT_FAULT"] = fault
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(directory), str(start), str(count), str(size)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _check_consistent(directory: Path) -> int:
    """The newest complete checkpoint loads and is internally consistent; return its step."""
    path, skipped = find_checkpoint(directory)
    assert skipped == []  # a kill never leaves a *committed* damaged checkpoint
    state, arrays, meta = read_checkpoint(path)
    step = state["step"]
    assert meta["step"] == step and path.name.startswith(f"ckpt-{step:09d}")
    assert sorted(arrays) == ["w0", "w1", "w2", "w3"]
    for value in arrays.values():
        assert np.all(value == step)
    return step


def _seed(directory: Path) -> None:
    with CheckpointManager(directory, keep_last=2) as manager:
        manager.save(1, {"step": 1}, {f"w{i}": np.full(1000, 1, np.float32) for i in range(4)})


@pytest.mark.parametrize("step", WRITE_STEPS)
def test_sigkill_at_each_write_step(tmp_path: Path, step: str) -> None:
    _seed(tmp_path)
    proc = _writer(tmp_path, 2, 1, 1000, fault=step)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    committed = step in ("rename", "committed")
    assert _check_consistent(tmp_path) == (2 if committed else 1)
    leftovers = [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert bool(leftovers) == (not committed)
    with CheckpointManager(tmp_path, keep_last=2) as manager:  # the next run cleans up
        assert manager.leftovers() == []
        manager.save(3, {"step": 3}, {f"w{i}": np.full(10, 3, np.float32) for i in range(4)})
    assert _check_consistent(tmp_path) == 3


@pytest.mark.parametrize("trial", range(12))
def test_sigkill_at_random_moments(tmp_path: Path, trial: int) -> None:
    rng = random.Random(trial)
    _seed(tmp_path)
    proc = _writer(tmp_path, 2, 10_000, 200_000)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(rng.uniform(0.0, 0.25))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    step = _check_consistent(tmp_path)
    assert step >= 1
    kept = CheckpointManager(tmp_path, lock=False).checkpoints()
    assert 1 <= len(kept) <= 3  # keep_last=2, plus at most one committed before retention ran
    with CheckpointManager(tmp_path) as manager:
        assert manager.leftovers() == []
