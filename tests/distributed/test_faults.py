"""Faults of a two-process run on loopback: a process stopped, killed, or the coordinator killed.

Each fault is tried through the ``--processes`` launcher and with two processes started
separately (``--coordinator/--num-processes/--process-id``: nobody watches them from outside).
The survivors must exit non-zero, in bounded time, with a message that names the lost or
stuck process. Deadlines are short here (``--step-deadline 5``, heartbeat 20 s) so that the
tests end quickly; the bounds asserted are generous for a loaded machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(Path(__file__).with_name("dp_config.py"))
HEARTBEAT_S, STEP_DEADLINE_S = 20, 5
ARGS = ["--set", "num_batches=100000", "--set", "pace_s=0.05",
        "--step-deadline", str(STEP_DEADLINE_S), "--extension-deadline", "15",
        "--heartbeat-timeout", str(HEARTBEAT_S)]
ENV = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}


class _Run:
    """Two processes of dp_config, from the launcher or started one by one."""

    def __init__(self, tmp_path: Path, launcher: bool) -> None:
        self.launcher, self.root = launcher, tmp_path / "run"
        self.dirs = ([self.root, self.root / "process-1"] if launcher
                     else [tmp_path / "run-0", tmp_path / "run-1"])
        self.outputs = [tmp_path / "out-0.txt", tmp_path / "out-1.txt"]
        command = [sys.executable, "-m", "experiments.run", CONFIG, *ARGS]
        if launcher:
            commands = [command + ["--output-dir", str(self.root), "--processes", "2"]]
        else:
            with socket.socket() as s:
                s.bind(("localhost", 0))
                port = s.getsockname()[1]
            commands = [command + ["--output-dir", str(d), "--coordinator", f"localhost:{port}",
                                   "--num-processes", "2", "--process-id", str(i)]
                        for i, d in enumerate(self.dirs)]
        self.procs = []
        for cmd, out in zip(commands, self.outputs, strict=False):
            with open(out, "wb") as f:
                self.procs.append(subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=f,
                                                   stderr=subprocess.STDOUT))

    def wait_training(self, timeout: float = 240) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            logs = [d / "log.jsonl" for d in self.dirs]
            if all(p.is_file() and p.read_text().count("train_cost") >= 5 for p in logs):
                return
            assert all(p.poll() is None for p in self.procs), self.text()
            time.sleep(0.2)
        raise AssertionError(f"the processes did not train within {timeout} s:\n{self.text()}")

    def pid(self, index: int) -> int:
        return int(json.loads((self.dirs[index] / "summary.json").read_text())["pid"])

    def text(self, index: int | None = None) -> str:
        files = list(self.outputs) if index is None else [self.outputs[index]]
        if self.launcher and index in (None, 1):
            files.append(self.dirs[1] / "output.txt")
        return "\n".join(f.read_text(errors="replace") for f in files if f.is_file())

    def wait(self, proc: subprocess.Popen, timeout: float) -> tuple[int, float]:
        start = time.monotonic()
        try:
            return proc.wait(timeout=timeout), time.monotonic() - start
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout} s:\n{self.text()}") from None

    def close(self) -> None:
        running = [p for p in self.procs if p.poll() is None]
        for p in running:
            p.kill()
            p.wait()
        if not (self.launcher and running):
            return
        for index in (0, 1):  # the launcher's children, if it was killed before them
            try:
                os.kill(self.pid(index), signal.SIGKILL)
            except (OSError, ValueError, KeyError):
                pass


@pytest.fixture(params=["launcher", "separate"])
def run(request, tmp_path):
    handle = _Run(tmp_path, request.param == "launcher")
    yield handle
    handle.close()


@pytest.mark.slow
def test_a_stopped_process_is_caught_by_the_step_watchdog(run):
    run.wait_training()
    os.kill(run.pid(1), signal.SIGSTOP)
    try:
        code, took = run.wait(run.procs[0], timeout=STEP_DEADLINE_S + 60)
    finally:
        if not run.launcher:
            os.kill(run.pid(1), signal.SIGCONT)
    text = run.text(0)
    assert code == 70, text  # the step watchdog's status
    assert "step watchdog: process 0 of 2 waited" in text
    assert "process 1 did not reach step" in text and "no sign of life" in text
    assert took < STEP_DEADLINE_S + 40  # well before jax's heartbeat would notice (20 s)
    summary = json.loads((run.dirs[0] / "summary.json").read_text())
    assert summary["status"] == "error"  # says why it ended, not "running"
    assert summary["error"].startswith("step watchdog: process 0 of 2 waited")
    if run.launcher:
        assert "process 0 of 2 (the coordinator) exited with status 70" in text
    else:  # the stopped one, once continued, stops too: its coordinator is gone
        code, _ = run.wait(run.procs[1], timeout=60)
        assert code != 0


@pytest.mark.slow
def test_a_killed_process_is_named(run):
    run.wait_training()
    os.kill(run.pid(1), signal.SIGKILL)
    code, took = run.wait(run.procs[0], timeout=HEARTBEAT_S + 60)
    text = run.text(0)
    assert code != 0, text
    assert took < HEARTBEAT_S + 30, text
    if run.launcher:
        assert "process 1 of 2 was lost: killed by signal 9 (SIGKILL)" in text
    else:  # the collective failed: process 0 names the peer that went silent
        assert "process 1 did not reach step" in text and "no sign of life" in text, text


@pytest.mark.slow
def test_a_killed_coordinator_is_named(run):
    run.wait_training()
    os.kill(run.pid(0), signal.SIGKILL)
    proc = run.procs[0] if run.launcher else run.procs[1]
    code, took = run.wait(proc, timeout=HEARTBEAT_S + 60)
    text = run.text()
    assert code != 0, text
    assert took < HEARTBEAT_S + 30, text
    if run.launcher:
        assert "process 0 of 2 (the coordinator) was lost: killed by signal 9" in text
    else:  # jax's client stops the process at once; its message says the leader died
        assert ("lost the coordinator" in text
                or "the leader task was preempted/died" in text), text


@pytest.mark.slow
def test_a_process_hung_while_alive_is_named(tmp_path):
    """Its watchdog thread still ticks: it is named as alive but hung, says itself that it is
    the one behind, or (same step everywhere) the message shows where its thread hangs."""
    config = str(Path(__file__).with_name("hang_config.py"))
    command = [sys.executable, "-m", "experiments.run", config, *ARGS, "--set", "hang_process=1",
               "--set", "hang_after=5", "--output-dir", str(tmp_path / "run"), "--processes", "2"]
    done = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300)
    text = done.stdout + done.stderr + (tmp_path / "run/process-1/output.txt").read_text()
    assert done.returncode == 70, text
    # process 0 waits in step 6's collective, process 1 never entered it: both are at step 5,
    # so the message says where each training thread is, and process 1's is in the hang
    assert ("process 1 did not reach step 7: alive but hung at step 5" in text
            or "process 1 of 2 waited" in text and "this process is the one behind" in text
            or "every process is alive at step 5" in text
            and "process 1 at distributed/hang_config.py" in text), text
    for run_dir in (tmp_path / "run", tmp_path / "run/process-1"):
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "error" and "step watchdog" in summary["error"], summary
