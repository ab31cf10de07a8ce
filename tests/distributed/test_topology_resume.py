"""Resume on any topology: a run checkpointed on P processes continues on P' (issue 20).

50 steps on 2 processes, resumed to step 100 on 1 process and on 1 process x 4
devices; 50 steps on 1 process, resumed on 2 processes; 50 steps on 2 processes x 2
devices with sharded parameters, resumed on 1 process. Each consumes the same
global batches (the example ids logged by ``topology_config.RecordIds``) as
100 uninterrupted steps on 1 process, and ends with the same parameters.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(Path(__file__).with_name("topology_config.py"))
RESUME = ("--resume", "--set", "num_batches=100", "--allow-config-change")


def _run(run_dir: Path, *args: str, devices: int = 1) -> str:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    done = subprocess.run(
        [sys.executable, "-m", "experiments.run", CONFIG, "--output-dir", str(run_dir), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def ids_by_iteration(run_dir: Path) -> dict[int, list[int]]:
    """The ids of each iteration's global batch, from the run's log (every start of it)."""
    found: dict[int, list[int]] = {}
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        row = json.loads(line)
        ids = row.get("records", {}).get("ids")
        if ids is not None:
            assert found.setdefault(row["iteration"], ids) == ids, row
    return found


def _params(run_dir: Path) -> dict[str, list]:
    return json.loads((run_dir / "summary.json").read_text())["results"]["params"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("topology")
    _run(base / "whole", "--set", "num_batches=100")
    _run(base / "two", "--processes", "2")
    _run(base / "one", "--devices", "1")
    # parameters and Adam's moments split over the 4 devices of 2 processes (FSDP-style):
    # gathered with process_allgather by every process, written by process 0
    _run(base / "sharded", "--processes", "2", "--devices", "2", "--shard-parameters",
         "--min-shard-size", "1")
    return base


@pytest.mark.slow
@pytest.mark.parametrize(
    "written, resumed, devices",
    [("two", (), 1), ("two", ("--devices", "4"), 4), ("one", ("--processes", "2"), 1),
     ("sharded", (), 1)],
    ids=["2-processes-to-1", "2-processes-to-4-devices", "1-process-to-2-processes",
         "2-processes-sharded-to-1"],
)
def test_resume_on_another_topology_consumes_the_same_batches(runs, written, resumed, devices):
    run_dir = runs / f"{written}-resumed-{'-'.join(resumed) or 'plain'}"
    shutil.copytree(runs / written, run_dir)
    out = _run(run_dir, *RESUME, *resumed, devices=devices)
    assert f"resuming from {run_dir / 'checkpoints' / 'ckpt-000000050'}" in out
    side = run_dir / "process-1"
    if "--processes" in resumed:  # process 1 resumed from the run's one checkpoint directory
        note = (side / "output.txt").read_text()
        assert f"resuming from {run_dir / 'checkpoints' / 'ckpt-000000050'}" in note
    assert not (side / "checkpoints").exists()  # only process 0 writes checkpoints
    whole, got = ids_by_iteration(runs / "whole"), ids_by_iteration(run_dir)
    assert sorted(whole) == sorted(got) == list(range(1, 101))
    assert got == whole
    epoch = [i for it in range(1, 13) for i in whole[it]]
    assert sorted(epoch) == list(range(96))  # an epoch covers every example once
    for name, value in _params(runs / "whole").items():
        np.testing.assert_allclose(_params(run_dir)[name], value, rtol=1e-5, atol=1e-6)
