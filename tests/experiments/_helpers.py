"""Run ``python -m experiments.run`` in a subprocess and read its run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "experiments" / "configs"


def runner_command(config: str, run_dir: Path | None, *args: str) -> list[str]:
    cmd = [sys.executable, "-m", "experiments.run", str(CONFIGS / f"{config}.py"), *args]
    if run_dir is not None:
        cmd += ["--output-dir", str(run_dir)]
    return cmd


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), e.get("PYTHONPATH")) if p)
    e.setdefault("JAX_PLATFORMS", "cpu")
    return e


def run(
    config: str,
    run_dir: Path | None,
    *args: str,
    timeout: float = 120,
    check: bool = True,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        runner_command(config, run_dir, *args),
        cwd=cwd or REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"runner failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf8"))


def check_run_dir(run_dir: Path, status: str = "finished") -> dict[str, Any]:
    """The run directory holds config, log and summary; returns the summary."""
    for name in ("config.json", "log.jsonl", "summary.json"):
        assert (run_dir / name).is_file(), f"{name} missing from {sorted(os.listdir(run_dir))}"
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == status, summary
    assert summary["iterations_done"] > 0
    assert summary["wall_time_s"] > 0
    lines = (run_dir / "log.jsonl").read_text(encoding="utf8").splitlines()
    assert lines and all(json.loads(line) for line in lines)
    return summary
