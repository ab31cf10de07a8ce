"""Ctrl-C through the runner, then ``--resume``: the same parameters as a run never stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from bricks.checkpoint import load_parameters

from ._helpers import REPO, check_run_dir, env, read_json, run, runner_command

ARGS = ["--set", "num_batches=1000", "--set", "plot=False", "--set", "checkpoint_every_n_epochs=0"]


def _iterations_logged(log: Path) -> int:
    if not log.is_file():
        return 0
    done = 0
    for line in log.read_text(encoding="utf8").splitlines():
        try:
            done = max(done, json.loads(line).get("iteration", 0))
        except ValueError:  # a line being written
            pass
    return done


def _run_until_interrupted(run_dir: Path, after: int) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(
        runner_command("sqrt", run_dir, *ARGS),
        cwd=REPO,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while _iterations_logged(run_dir / "log.jsonl") < after:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run did not start training"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)  # Ctrl-C: finish the epoch, checkpoint, stop
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.slow
def test_interrupt_and_resume_match_an_uninterrupted_run(tmp_path):
    straight = tmp_path / "straight"
    run("sqrt", straight, *ARGS)
    expected = load_parameters(straight / "checkpoints")

    resumed = tmp_path / "resumed"
    stopped = _run_until_interrupted(resumed, after=10)
    assert stopped.returncode == 75, stopped.stdout + stopped.stderr
    summary = check_run_dir(resumed, status="interrupted")
    assert 10 <= summary["iterations_done"] < 1000
    assert summary["iterations_done"] % 5 == 0  # Ctrl-C finishes the epoch (5 batches)

    proc = run("sqrt", resumed, "--resume")
    assert "resuming from" in proc.stdout
    summary = check_run_dir(resumed)
    assert summary["iterations_done"] == 1000 and summary["resumed_from_checkpoint"]
    assert summary["total_wall_time_s"] > summary["wall_time_s"]
    got = load_parameters(resumed / "checkpoints")
    assert sorted(got) == sorted(expected)
    for path in expected:
        np.testing.assert_array_equal(got[path], expected[path], err_msg=path)
    assert read_json(resumed / "config.json") == read_json(straight / "config.json")


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"seed": 1}))
    proc = run("sqrt", run_dir, "--resume", check=False)
    assert proc.returncode == 2 and "no checkpoint" in proc.stderr.lower()
