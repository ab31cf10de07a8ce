"""One committed checkpoint per save in a multi-process run, and what a killed process leaves.

Process 0 writes the checkpoint under a temporary name and renames it into
place only after every process reached the commit barrier (issue 20), so a
process killed during a save leaves the previous checkpoint the newest
complete one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bricks.checkpoint import CheckpointManager, find_checkpoint, write_checkpoint
from bricks.distributed import every_process
from bricks.errors import CheckpointWriteError

from .test_multi_process import free_port

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("commit_worker.py")
CONFIG = str(Path(__file__).with_name("dp_config.py"))


# -- the commit hook of one write (one process) ----------------------------------------


def test_before_commit_is_called_before_the_rename_and_can_keep_it_uncommitted(tmp_path):
    seen = []

    def before_commit(failure):
        seen.append((failure, sorted(p.name for p in tmp_path.iterdir())))

    path = write_checkpoint(tmp_path, "ckpt-000000001", {"a": 1}, {"w": np.ones(2)},
                            before_commit=before_commit)
    assert path.name == "ckpt-000000001"
    assert len(seen) == 1 and seen[0][0] is None
    assert [n.startswith("ckpt-000000001.tmp-") for n in seen[0][1]] == [True]  # not renamed yet

    def refuse(failure):
        raise RuntimeError("a peer was lost")

    with pytest.raises(RuntimeError, match="a peer was lost"):
        write_checkpoint(tmp_path, "ckpt-000000002", {"a": 2}, {"w": np.ones(2)},
                         before_commit=refuse)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-000000001"]  # nothing left
    assert find_checkpoint(tmp_path)[0] == path


def test_before_commit_hears_of_a_failed_write(tmp_path, monkeypatch):
    import bricks.checkpoint._format as fmt

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fmt, "_write_bytes", full_disk)
    seen = []
    with pytest.raises(CheckpointWriteError, match="No space left") as error:
        write_checkpoint(tmp_path, "ckpt-000000001", {}, {"w": np.ones(2)},
                         before_commit=seen.append)
    assert seen == [str(error.value)]
    assert list(tmp_path.iterdir()) == []


def test_one_process_agrees_with_itself():
    assert every_process("bricks-test-key", {"step": 3}) == [{"step": 3}]


def test_the_runner_makes_asynchronous_saves_of_several_processes_wait(tmp_path):
    from types import SimpleNamespace

    from bricks.extensions.checkpoint import Checkpoint
    from experiments._distributed import wait_for_busy_saves

    saves = [Checkpoint(tmp_path / "a", async_save=True, name="skips"),
             Checkpoint(tmp_path / "b", name="synchronous"),
             Checkpoint(tmp_path / "c", async_save=True, if_busy="wait", name="waits")]
    assert wait_for_busy_saves(SimpleNamespace(extensions=saves)) == ["skips"]
    assert [s.if_busy for s in saves] == ["wait", "skip", "wait"]


# -- two processes (jax.distributed over loopback, gloo) -------------------------------


def _two_workers(base: Path, mode: str) -> list:
    """Run both processes of commit_worker.py; what each one's saves returned."""
    port = free_port()
    procs = {i: subprocess.Popen([sys.executable, str(WORKER), str(port), str(i), str(base),
                                  mode], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True) for i in range(2)}
    try:
        outputs = {i: p.communicate(timeout=300)[0] for i, p in procs.items()}
    finally:
        for p in procs.values():
            p.kill()
    assert {p.returncode for p in procs.values()} == {0}, outputs
    return [json.loads((base / f"result-{i}.json").read_text()) for i in range(2)]


@pytest.mark.slow
def test_process_0_alone_writes_one_checkpoint_per_save(tmp_path):
    first, second = _two_workers(tmp_path, "agree")
    assert first[:3] == ["ckpt-000000010", "ckpt-000000020", "ckpt-000000030"]
    assert second[:3] == [None, None, None]
    # jax.distributed's key-value store keeps only the last save's outcome
    assert first[3] == second[3] == ["bricks-checkpoint/checkpoints/1/3/outcome"]
    assert not (tmp_path / "process-1").exists()  # process 1 wrote nothing, not even a lock
    kept = CheckpointManager(tmp_path / "checkpoints", lock=False).checkpoints()
    assert [p.name for p in kept] == ["ckpt-000000020", "ckpt-000000030"]  # keep_last=2
    state, arrays, path = CheckpointManager(tmp_path / "checkpoints", lock=False).restore()
    assert arrays["w"].tolist() == [30.0] * 3 and state["note"] == 30
    meta = json.loads((path / "state.json").read_text())["meta"]
    assert meta["processes"]["process_count"] == 2


@pytest.mark.slow
def test_processes_at_different_steps_write_nothing_and_say_where_each_is(tmp_path):
    results = _two_workers(tmp_path, "disagree")
    for (message,) in results:
        assert message.startswith("CheckpointCommitError")
        assert "process 0 at iteration 10" in message and "process 1 at iteration 11" in message
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_a_failed_write_of_process_0_is_an_error_on_every_process(tmp_path):
    (first,), (second,) = _two_workers(tmp_path, "failure")
    assert first.startswith("CheckpointWriteError") and "not JSON-serializable" in first
    assert second.startswith("CheckpointWriteError")
    assert "process 0 could not write it" in second and "not JSON-serializable" in second
    assert CheckpointManager(tmp_path / "checkpoints", lock=False).checkpoints() == []


# -- a process killed during a save (the runner, --processes 2) ------------------------


def _runner(*args: str, delay: float | None = None, **popen) -> subprocess.Popen:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    if delay is not None:
        env["BRICKS_CHECKPOINT_COMMIT_DELAY"] = str(delay)
    return subprocess.Popen([sys.executable, "-m", "experiments.run", CONFIG, *args],
                            cwd=ROOT, env=env, text=True, **popen)


@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0])
def test_a_process_killed_during_a_save_leaves_the_previous_checkpoint_newest(tmp_path, victim):
    run = tmp_path / "run"
    ckpts = run / "checkpoints"
    # saves every 10 batches; each waits 4 s before its commit barrier
    parent = _runner("--output-dir", str(run), "--processes", "2", "--set", "num_batches=30",
                     delay=4, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # the second save is written, not committed
            if parent.poll() is not None:
                pytest.fail("the run ended before its second save:\n" + parent.stderr.read())
            names = [p.name for p in ckpts.iterdir()] if ckpts.is_dir() else []
            if "ckpt-000000010" in names and any(
                n.startswith("ckpt-000000020.tmp-") for n in names
            ):
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the second save never started: {names}")
        summary = run / ("summary.json" if victim == 0 else "process-1/summary.json")
        os.kill(json.loads(summary.read_text())["pid"], signal.SIGKILL)
        out, err = parent.communicate(timeout=200)
    finally:
        parent.kill()
    assert parent.returncode != 0
    assert f"process {victim} of 2" in err and ("-9" in err or "SIGKILL" in err), err
    assert [p.name for p in CheckpointManager(ckpts, lock=False).checkpoints()] == [
        "ckpt-000000010"
    ]
    assert find_checkpoint(ckpts)[0].name == "ckpt-000000010"
    # the partial save is ignored: the run resumes from the previous checkpoint
    resumed = _runner("--output-dir", str(run), "--resume",
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, log
    assert f"resuming from {ckpts / 'ckpt-000000010'}" in log
    assert "finished after 30 iterations" in log
    assert not any(".tmp-" in p.name for p in ckpts.iterdir())  # the leftover was removed
