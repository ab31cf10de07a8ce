"""The runner never damages a run it does not own: locks, refusals, drift, finished runs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bricks.checkpoint import CheckpointManager, find_checkpoint

from ._helpers import REPO, env, read_json

CONFIG = Path(__file__).with_name("lifecycle_config.py")


def command(run_dir: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "experiments.run",
        str(CONFIG),
        "--output-dir",
        str(run_dir),
        *args,
    ]


def run(run_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(run_dir, *args),
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(run_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        command(run_dir, *args),
        cwd=REPO,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def hashes(run_dir: Path) -> dict[str, str]:
    """sha256 of every file under ``run_dir`` (the set of names included)."""
    return {
        os.fspath(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def wait_for(predicate, proc: subprocess.Popen | None = None, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def has_checkpoint(run_dir: Path) -> bool:
    return bool(CheckpointManager(run_dir / "checkpoints", lock=False).checkpoints())


@pytest.mark.slow
def test_a_refused_runner_on_a_live_run_changes_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "live"
    live = start(run_dir, "--set", "num_batches=100000", "--set", "batch_sleep_s=0.02")
    try:
        wait_for(lambda: has_checkpoint(run_dir), live)
        live.send_signal(signal.SIGSTOP)  # hold it still so that its files can be compared
        time.sleep(0.2)
        before = hashes(run_dir)
        for args in (["--resume"], ["--resume", "--set", "learning_rate=0.5"], []):
            proc = run(run_dir, *args)
            assert proc.returncode == 2, proc.stdout + proc.stderr
            assert hashes(run_dir) == before, args
        refused = run(run_dir, "--resume")
        assert f"pid {live.pid} on host" in refused.stderr and "locked" in refused.stderr
        live.send_signal(signal.SIGCONT)
        live.send_signal(signal.SIGTERM)
        out, err = live.communicate(timeout=60)
        assert live.returncode == 75, out + err
    finally:
        if live.poll() is None:
            live.send_signal(signal.SIGCONT)
            live.kill()
            live.communicate()


@pytest.mark.slow
def test_refused_resumes_leave_the_run_as_it_was_and_a_plain_resume_works(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    first = run(run_dir, "--set", "num_batches=12")
    assert first.returncode == 0, first.stdout + first.stderr
    before = hashes(run_dir)
    changed = run(run_dir, "--resume", "--set", "num_batches=30", "--set", "batch_size=20")
    assert changed.returncode == 2
    assert "num_batches: 12 -> 30" in changed.stderr and "batch_size: 10 -> 20" in changed.stderr
    assert "--allow-config-change" in changed.stderr
    optimizer = run(run_dir, "--resume", "--set", "step_rule=adam")
    assert optimizer.returncode == 2 and "step_rule: 'scale' -> 'adam'" in optimizer.stderr
    shape = run(run_dir, "--resume", "--set", "hidden_dim=4", "--allow-config-change")
    assert shape.returncode == 2, shape.stdout + shape.stderr
    assert "(1, 4)" in shape.stderr and "(1, 1)" in shape.stderr
    broken = run(run_dir, "--resume", "--set", "batch_size=0", "--allow-config-change")
    assert broken.returncode == 1, broken.stdout + broken.stderr  # build() fails
    assert hashes(run_dir) == before

    finished = run(run_dir, "--resume")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "already finished at iteration 12" in finished.stdout
    assert hashes(run_dir) == before  # not trained again: nothing rewritten

    more = run(run_dir, "--resume", "--set", "num_batches=16", "--allow-config-change")
    assert more.returncode == 0, more.stdout + more.stderr
    assert "resuming with a changed config: num_batches: 12 -> 16" in more.stderr
    summary = read_json(run_dir / "summary.json")
    assert summary["iterations_done"] == 16 and summary["config_changed"] == {
        "num_batches": [12, 16]
    }
    starts = read_json(run_dir / "provenance.json")["starts"]
    assert len(starts) == 2 and starts[1]["overrides"] == ["num_batches=16"]


def test_provenance_records_what_reproduces_the_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run(run_dir, "--set", "num_batches=3", "--set", "every_n_batches=0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (entry,) = read_json(run_dir / "provenance.json")["starts"]
    source = CONFIG.read_bytes()
    assert entry["config_source"] == source.decode()
    assert entry["config_sha256"] == hashlib.sha256(source).hexdigest()
    assert entry["overrides"] == ["num_batches=3", "every_n_batches=0"]
    assert entry["resolved_config"]["num_batches"] == 3
    assert entry["command"][1:3] == ["-m", "experiments.run"] or "experiments" in " ".join(
        entry["command"]
    )
    assert entry["host"] and entry["started"] and entry["pid"] > 0
    assert entry["jax"]["jax"] and entry["jax"]["devices"] and "xla_flags" in entry["jax"]
    assert "numpy" in {k.lower() for k in entry["packages"]}
    assert entry["git"] is None or len(entry["git"]["commit"]) == 40


def test_a_run_killed_after_its_last_checkpoint_is_finished_not_trained_further(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    assert run(run_dir, "--set", "num_batches=10").returncode == 0
    summary = read_json(run_dir / "summary.json")
    summary["status"] = "running"  # as if SIGKILLed right after the final checkpoint
    (run_dir / "summary.json").write_text(json.dumps(summary))
    log_before = (run_dir / "log.jsonl").read_bytes()
    proc = run(run_dir, "--resume")
    assert proc.returncode == 0 and "already finished at iteration 10" in proc.stdout
    assert read_json(run_dir / "summary.json")["status"] == "finished"
    assert (run_dir / "log.jsonl").read_bytes() == log_before
    path, _ = find_checkpoint(run_dir / "checkpoints")
    assert path.name == "ckpt-000000010"


@pytest.mark.slow
def test_a_killed_run_is_reported_as_died_and_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    live = start(run_dir, "--set", "num_batches=100000", "--set", "batch_sleep_s=0.02")
    try:
        wait_for(lambda: has_checkpoint(run_dir), live)
        shown = subprocess.run(
            [sys.executable, "-m", "bricks.checkpoint", "list", str(run_dir)],
            capture_output=True,
            text=True,
            env=env(),
            cwd=REPO,
            timeout=60,
        )
        assert f"running (pid {live.pid} on host" in shown.stdout, shown.stdout + shown.stderr
        live.kill()
        live.communicate()
    finally:
        if live.poll() is None:
            live.kill()
            live.communicate()
    for what in ("list", "show"):
        shown = subprocess.run(
            [sys.executable, "-m", "bricks.checkpoint", what, str(run_dir)],
            capture_output=True,
            text=True,
            env=env(),
            cwd=REPO,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "died" in shown.stdout and "ckpt-0000000" in shown.stdout, shown.stdout
    proc = run(run_dir, "--resume", "--set", "num_batches=30", "--allow-config-change")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "died without finishing" in proc.stdout
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "finished" and summary["previous_start"] == "died"


def test_a_config_with_a_syntax_error_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.py"
    bad.write_text(
        "def get_config():\n    return {'a': 1\n\ndef build(config, run_dir):\n    pass\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", str(bad), "--output-dir", str(tmp_path / "r")],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"{bad}', line 2" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "run.py" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_a_build_error_is_recorded_as_error(tmp_path: Path) -> None:
    proc = run(tmp_path / "r", "--set", "batch_size=0")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    summary = read_json(tmp_path / "r" / "summary.json")
    assert summary["status"] == "error" and "build()" in summary["error"], summary


def test_debug_nans_names_the_primitive(tmp_path: Path) -> None:
    plain = run(tmp_path / "plain", "--set", "poison=True", "--set", "every_n_batches=0")
    assert plain.returncode == 1 and "NonFiniteCostError" in plain.stderr
    debug = run(tmp_path / "debug", "--set", "poison=True", "--debug-nans")
    assert debug.returncode == 1
    assert "FloatingPointError" in debug.stderr and "nan" in debug.stderr.lower()
    assert "NonFiniteCostError" not in debug.stderr.splitlines()[-1]


def test_a_library_version_change_is_logged_as_a_warning(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert run(run_dir, "--set", "num_batches=5").returncode == 0
    ckpt, _ = find_checkpoint(run_dir / "checkpoints")
    doc = json.loads((ckpt / "state.json").read_text())
    doc["meta"]["versions"]["numpy"] = "0.0.1"
    data = json.dumps(doc).encode()
    (ckpt / "state.json").write_bytes(data)
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["files"]["state.json"] = {
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    proc = run(run_dir, "--resume", "--set", "num_batches=8", "--allow-config-change")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "numpy was 0.0.1 when the checkpoint was written, is " in proc.stderr
