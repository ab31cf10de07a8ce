"""Exact resume across processes: stopped by a clean stop, SIGTERM or SIGKILL
(also in the middle of a checkpoint write), resumed in a new process, the
run ends bitwise equal to an uninterrupted reference run (CPU).

The run (``_train.py``): 6 batches an epoch, shuffling, dropout, Adam with a
schedule, monitoring every 5 batches and every epoch, 200 steps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from bricks.checkpoint import EXIT_INTERRUPTED, find_checkpoint

SCRIPT = Path(__file__).with_name("_train.py")
ROOT = Path(__file__).resolve().parents[2]

# (cut iteration, how the run is stopped, checkpoint every N batches, expected resume point)
CUTS = [
    (1, "stop", None, 1),
    (37, "term", None, 37),
    (6, "kill", None, 6),  # last batch of epoch 1
    (7, "term", None, 7),  # first batch of epoch 2
    (199, "kill", None, 199),
    (38, "fault:manifest", 10, 30),  # killed while writing: the previous one is used
]


def _run(out: Path, ckpt: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    env.pop("BRICKS_CHECKPOINT_FAULT", None)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(out), str(ckpt), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def _load(out: Path) -> tuple[dict[str, np.ndarray], dict]:
    info = json.loads((out / "log.json").read_text())
    with np.load(out / "result.npz", allow_pickle=False) as npz:
        arrays = {name: npz[f"a{i}"] for i, name in enumerate(info["names"])}
    return arrays, info


def _cut_and_resume(tmp: Path, cut: int, how: str, every: int | None) -> tuple[int, Path]:
    name = f"{how.replace(':', '_')}{cut}"
    ckpt = tmp / f"ckpt_{name}"
    args = ["--cut", str(cut), "--how", how] + (["--every", str(every)] if every else [])
    first = _run(tmp / f"first_{name}", ckpt, *args)
    expected_rc = {
        "stop": 0,
        "term": EXIT_INTERRUPTED,
        "kill": -signal.SIGKILL,
    }.get(how, -signal.SIGKILL)
    assert first.returncode == expected_rc, first.stderr[-3000:]
    resumed = _run(
        tmp / f"resumed_{name}", ckpt, "--resume", *(["--every", str(every)] if every else [])
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return first.returncode, tmp / f"resumed_{name}"


@pytest.mark.slow
def test_resumed_runs_equal_the_reference_bitwise(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        reference = pool.submit(_run, tmp_path / "ref", tmp_path / "ref_ckpt")
        results = {
            (cut, how): pool.submit(_cut_and_resume, tmp_path, cut, how, every)
            for cut, how, every, _ in CUTS
        }
        ref = reference.result()
        assert ref.returncode == 0, ref.stderr[-3000:]
        ref_arrays, ref_info = _load(tmp_path / "ref")
        assert "algorithm/rng_key" in ref_arrays
        assert any(k.startswith("algorithm/opt_state/") for k in ref_arrays)
        for cut, how, _, resume_point in CUTS:
            _, out = results[(cut, how)].result()
            arrays, info = _load(out)
            assert set(arrays) == set(ref_arrays)
            for key, value in ref_arrays.items():
                assert arrays[key].dtype == value.dtype, (cut, how, key)
                np.testing.assert_array_equal(
                    np.atleast_1d(arrays[key]).view(np.uint8),
                    np.atleast_1d(value).view(np.uint8),
                    err_msg=f"{cut} {how} {key}",
                )
            rows = {int(k): _same_place(v) for k, v in info["rows"].items()}
            ref_rows = {int(k): _same_place(v) for k, v in ref_info["rows"].items()}
            after = sorted(k for k in ref_rows if k > resume_point)
            assert after and after[-1] == 200
            for k in after:
                assert rows.get(k) == ref_rows[k], (cut, how, k)
            assert info["stream"] == ref_info["stream"]


def _same_place(row: dict) -> dict:
    """A row without ``saved_to``: the checkpoint directory differs between the runs."""
    return {k: v for k, v in row.items() if k != "saved_to"}


@pytest.mark.slow
def test_the_fault_case_really_fell_back(tmp_path: Path) -> None:
    """``fault:manifest`` leaves a leftover; the newest complete checkpoint is the one before."""
    ckpt = tmp_path / "ckpt"
    first = _run(tmp_path / "first", ckpt, "--cut", "12", "--how", "fault:manifest", "--every", "5")
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    assert [p.name for p in ckpt.iterdir() if ".tmp-" in p.name]
    path, skipped = find_checkpoint(ckpt)
    assert path.name == "ckpt-000000010" and skipped == []
