"""``python -m experiments.run CONFIG --devices N / --processes P`` on a tiny config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from experiments.run import main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(Path(__file__).with_name("dp_config.py"))


def _run(*args: str, devices: int = 1, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    return subprocess.run(
        [sys.executable, "-m", "experiments.run", CONFIG, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


def _results(run_dir: Path) -> tuple[dict, list[float]]:
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    costs = [r["records"]["train_cost"] for r in rows if "train_cost" in r.get("records", {})]
    return summary, costs


def test_more_devices_than_there_are_is_refused(tmp_path, capsys):
    assert main([CONFIG, "--output-dir", str(tmp_path / "r"), "--devices", "3"]) == 2
    assert "--devices 3: data_mesh: expected 1 to 2 devices" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_equal_two_devices_and_one(tmp_path):
    runs = {
        "processes": _run("--output-dir", str(tmp_path / "p"), "--processes", "2"),
        "devices": _run("--output-dir", str(tmp_path / "d"), "--devices", "2", devices=2),
        "one": _run("--output-dir", str(tmp_path / "o"), "--devices", "1", devices=2),
    }
    for name, done in runs.items():
        assert done.returncode == 0, f"{name}:\n{done.stdout}\n{done.stderr}"
    p, d, o = (_results(tmp_path / k) for k in "pdo")
    assert p[0]["parallel"] == "data-parallel over 2 devices, 2 process(es)"
    assert d[0]["parallel"] == "data-parallel over 2 devices, 1 process(es)"
    assert o[0]["parallel"] == "one device"
    assert len(p[1]) == 20
    for other in (d, o):
        np.testing.assert_allclose(p[1], other[1], rtol=1e-5)
        for k, v in other[0]["results"]["params"].items():
            np.testing.assert_allclose(p[0]["results"]["params"][k], v, rtol=1e-5, atol=1e-6)
    # process 0 prints and writes the run directory; process 1 keeps to its own folder
    assert "finished after 20 iterations" in runs["processes"].stdout
    side = tmp_path / "p" / "process-1"
    assert "finished after 20 iterations" in (side / "output.txt").read_text()
    assert sorted(x.name for x in (tmp_path / "p" / "checkpoints").iterdir() if
                  x.name.startswith("ckpt-"))


@pytest.mark.slow
def test_a_lost_process_stops_the_run_and_is_named(tmp_path):
    start = time.monotonic()
    done = _run("--output-dir", str(tmp_path / "p"), "--processes", "2",
                "--set", "die_process=1", "--set", "die_after=5")
    assert done.returncode == 3, done.stderr
    assert "process 1 of 2 exited with status 3" in done.stderr
    assert "process-1/output.txt" in done.stderr
    assert time.monotonic() - start < 120


@pytest.mark.slow
def test_two_process_run_resumes_on_one_process(tmp_path):
    """Topology change: 10 steps on 2 processes, checkpoint, resume on 1 process to step 20."""
    first = _run("--output-dir", str(tmp_path / "p"), "--processes", "2",
                 "--set", "num_batches=10")
    assert first.returncode == 0, first.stderr
    resumed = _run("--output-dir", str(tmp_path / "p"), "--resume", "--set", "num_batches=20",
                   "--allow-config-change")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout and "ckpt-000000010" in resumed.stdout
    whole = _run("--output-dir", str(tmp_path / "o"))
    assert whole.returncode == 0, whole.stderr
    (p_summary, p_costs), (o_summary, o_costs) = _results(tmp_path / "p"), _results(tmp_path / "o")
    assert p_summary["iterations_done"] == o_summary["iterations_done"] == 20
    assert p_summary["parallel"] == "one device"  # the resumed start says how it ran
    np.testing.assert_allclose(p_costs[-20:], o_costs, rtol=1e-5)
    for k, v in o_summary["results"]["params"].items():
        np.testing.assert_allclose(p_summary["results"]["params"][k], v, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_sigterm_to_one_process_stops_all_at_one_agreed_step(tmp_path):
    import signal

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    run = tmp_path / "p"
    parent = subprocess.Popen(
        [sys.executable, "-m", "experiments.run", CONFIG, "--output-dir", str(run),
         "--processes", "2", "--set", "num_batches=400", "--set", "pace_s=0.05"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        side = run / "process-1"
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline:  # wait until process 1 trains
            log = side / "log.jsonl"
            if log.is_file() and log.read_text().count("train_cost") >= 3:
                break
            time.sleep(0.2)
        pid = json.loads((side / "summary.json").read_text())["pid"]
        os.kill(pid, signal.SIGTERM)
        out = parent.communicate(timeout=200)[0]
    finally:
        parent.kill()
    assert parent.returncode == 75, out
    summaries = [json.loads((d / "summary.json").read_text()) for d in (run, side)]
    assert [s["status"] for s in summaries] == ["interrupted", "interrupted"]
    steps = {s["iterations_done"] for s in summaries}
    assert len(steps) == 1 and 3 <= min(steps) < 400
    # one checkpoint of the agreed step, committed by process 0 for both
    newest = sorted(x.name for x in (run / "checkpoints").iterdir() if x.name.startswith("ckpt-"))
    assert newest[-1] == f"ckpt-{min(steps):09d}"
    assert not (side / "checkpoints").exists()
