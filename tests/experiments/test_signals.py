"""Real signals at the moments that used to lose a checkpoint: final save, exit wait, start-up."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from bricks.checkpoint import find_checkpoint, verify_checkpoint

from ._helpers import read_json
from .test_lifecycle import has_checkpoint, start, wait_for


def _writing(run_dir: Path) -> bool:
    directory = run_dir / "checkpoints"
    return directory.is_dir() and any(".tmp-" in p.name for p in directory.iterdir())


def _iterations(run_dir: Path) -> int:
    log = run_dir / "log.jsonl"
    done = 0
    if log.is_file():
        for line in log.read_text(encoding="utf8").splitlines():
            try:
                done = max(done, json.loads(line).get("iteration", 0))
            except ValueError:
                pass
    return done


def _finish(proc, timeout: float = 90) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_final_save_or_exit_wait_lets_the_save_commit(
    tmp_path: Path, mode: str, signum: int
) -> None:
    run_dir = tmp_path / "run"
    proc = start(
        run_dir,
        *("--set", "num_batches=5", "--set", "every_n_batches=0", "--set", "save_delay_s=3"),
        *("--set", f"async_save={mode == 'async'}"),
    )
    try:
        wait_for(lambda: _writing(run_dir), proc)  # the final save (or its exit wait) is on
        proc.send_signal(signum)
        code, output = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert code == 75, output
    path, skipped = find_checkpoint(run_dir / "checkpoints")
    assert path.name == "ckpt-000000005" and not skipped and verify_checkpoint(path) == []
    assert read_json(run_dir / "summary.json")["status"] == "interrupted"


@pytest.mark.slow
def test_the_exit_wait_is_bounded_and_has_its_own_exit_code(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(
        run_dir,
        *("--set", "num_batches=10", "--set", "every_n_batches=5", "--set", "async_save=True"),
        *("--set", "save_delay_s=4", "--set", "exit_wait_s=0.5"),
    )
    try:
        code, output = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert code == 74, output
    assert "did not finish within exit_wait_s=0.5 s" in output
    assert "waiting for bricks-checkpoint-10" in output
    path, _ = find_checkpoint(run_dir / "checkpoints")  # the previous one is valid
    assert path.name == "ckpt-000000005" and verify_checkpoint(path) == []


@pytest.mark.slow
def test_a_third_ctrl_c_exits_at_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(
        run_dir,
        *("--set", "num_batches=100000", "--set", "batch_sleep_s=0.01"),
        *("--set", "every_n_batches=5", "--set", "save_delay_s=1"),
    )
    try:
        wait_for(lambda: has_checkpoint(run_dir), proc)
        for _ in range(3):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.1)
        code, output = _finish(proc, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert code == 130, output
    path, _ = find_checkpoint(run_dir / "checkpoints")
    assert verify_checkpoint(path) == []


@pytest.mark.slow
def test_sigusr1_checkpoints_now_and_training_goes_on(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(
        run_dir,
        *("--set", "num_batches=100000", "--set", "batch_sleep_s=0.01"),
        *("--set", "every_n_batches=0"),
    )
    try:
        wait_for(lambda: _iterations(run_dir) >= 5, proc)
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: has_checkpoint(run_dir), proc)
        path, _ = find_checkpoint(run_dir / "checkpoints")
        step = int(path.name.split("-")[1])
        wait_for(lambda: _iterations(run_dir) >= step + 10, proc)  # still training
        proc.send_signal(signal.SIGTERM)
        code, output = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert code == 75, output
    assert "SIGUSR1" in output


def test_sigterm_during_start_up_exits_cleanly(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(run_dir, "--set", "startup_sleep_s=60")
    try:
        wait_for(lambda: (run_dir / "summary.json").is_file(), proc)
        proc.send_signal(signal.SIGTERM)
        code, output = _finish(proc, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert code == 75, output
    assert "nothing was trained yet" in output and "Traceback" not in output
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "interrupted" and "nothing trained" in summary["note"]
