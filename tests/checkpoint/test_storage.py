"""The checkpoint storage layer: round trips, atomicity, corruption, locks, retention."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from bricks.checkpoint import (
    CheckpointManager,
    find_checkpoint,
    load_parameters,
    read_checkpoint,
    verify_checkpoint,
    write_checkpoint,
)
from bricks.errors import (
    CheckpointCorruptError,
    CheckpointLockedError,
    CheckpointNotFoundError,
    CheckpointWriteError,
)


def _arrays(step: int) -> dict[str, np.ndarray]:
    return {
        "algorithm/params//mlp/linear_0.W": np.full((3, 2), step, np.float32),
        "algorithm/rng_key": np.array([0, step], np.uint32),
        "scalar": np.float64(step),
    }


def test_round_trip_keeps_values_dtypes_and_shapes(tmp_path: Path) -> None:
    arrays = {
        "a/b//c.W": np.arange(6, dtype=np.float32).reshape(2, 3),
        "half": np.array([1.5, -2.0], np.float16),
        "bf16": np.array([1.0, 2.5, -3.0], ml_dtypes.bfloat16),
        "key": np.array([1, 2], np.uint32),
        "flag": np.array(True),
        "empty": np.zeros((0, 4), np.int64),
        "c": np.array([1 + 2j], np.complex64),
    }
    state = {"log": {"rows": {"1": {"cost": float("nan")}}}, "epoch": 3, "x": None}
    path = write_checkpoint(tmp_path, "ckpt-000000001", state, arrays, {"step": 1})
    assert path.name == "ckpt-000000001" and verify_checkpoint(path) == []
    got_state, got, meta = read_checkpoint(path)
    assert meta == {"step": 1}
    assert got_state["epoch"] == 3 and np.isnan(got_state["log"]["rows"]["1"]["cost"])
    assert set(got) == set(arrays)
    for name, value in arrays.items():
        assert got[name].dtype == value.dtype, name
        assert got[name].shape == value.shape, name
        np.testing.assert_array_equal(got[name].view(np.uint8), np.asarray(value).view(np.uint8))
    assert sorted(os.listdir(path)) == ["arrays.bin", "manifest.json", "state.json"]


def test_object_arrays_and_non_json_state_are_refused_on_write(tmp_path: Path) -> None:
    with pytest.raises(CheckpointWriteError, match="'bad'.*object"):
        write_checkpoint(tmp_path, "ckpt-000000001", {}, {"bad": np.array([{}, 1], object)})
    with pytest.raises(CheckpointWriteError, match="JSON"):
        write_checkpoint(tmp_path, "ckpt-000000001", {"f": object()}, {})
    assert not any(tmp_path.iterdir())  # nothing half-written


def _three(tmp_path: Path) -> CheckpointManager:
    manager = CheckpointManager(tmp_path)
    for step in (10, 20, 30):
        manager.save(step, {"step": step}, _arrays(step))
    return manager


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "delete_manifest", "state"])
def test_damaged_newest_is_reported_and_previous_used(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    manager = _three(tmp_path)
    newest = tmp_path / "ckpt-000000030"
    target = newest / ("state.json" if damage == "state" else "arrays.bin")
    if damage == "truncate":
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])
    elif damage in ("flip", "state"):
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x40
        target.write_bytes(bytes(data))
    elif damage == "delete":
        target.unlink()
    else:
        (newest / "manifest.json").unlink()
    problems = verify_checkpoint(newest)
    expected_file = "manifest.json" if damage == "delete_manifest" else target.name
    assert problems and expected_file in problems[0]
    with caplog.at_level("WARNING"):
        state, arrays, path = manager.restore()
    assert path.name == "ckpt-000000020" and state["step"] == 20
    assert arrays["algorithm/params//mlp/linear_0.W"][0, 0] == 20
    assert expected_file in caplog.text and manager.skipped
    with pytest.raises(CheckpointCorruptError, match=expected_file):
        manager.restore(strict=True)
    with pytest.raises(CheckpointCorruptError, match=expected_file):
        read_checkpoint(newest)
    assert load_parameters(tmp_path)["/mlp/linear_0.W"][0, 0] == 20


def test_every_checkpoint_damaged_or_none(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError):
        find_checkpoint(tmp_path / "nothing")
    with pytest.raises(CheckpointNotFoundError, match="no complete checkpoint"):
        find_checkpoint(tmp_path)
    manager = _three(tmp_path)
    for path in manager.checkpoints():
        (path / "arrays.bin").write_bytes(b"garbage")
    with pytest.raises(CheckpointCorruptError, match="every checkpoint"):
        manager.restore()


def test_leftovers_are_ignored_and_cleaned_by_the_lock_holder(tmp_path: Path) -> None:
    manager = _three(tmp_path)
    manager.release()
    leftover = tmp_path / "ckpt-000000040.tmp-999-abcd"
    leftover.mkdir()
    (leftover / "arrays.bin").write_bytes(b"half")
    assert CheckpointManager(tmp_path, lock=False).latest().name == "ckpt-000000030"
    assert leftover.exists()  # a reader never deletes: it might be a live write
    with CheckpointManager(tmp_path) as writer:
        assert not leftover.exists()
        assert writer.latest().name == "ckpt-000000030"


def test_keep_last_and_keep_best(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_last=2, keep_best=1, metric="valid_cost")
    costs = {1: 5.0, 2: 1.0, 3: 4.0, 4: 3.0, 5: 2.0}
    for step, cost in costs.items():
        manager.save(step, {}, {"w": np.zeros(1)}, metrics={"valid_cost": cost})
    assert [p.name for p in manager.checkpoints()] == [
        "ckpt-000000002",  # the best one
        "ckpt-000000004",
        "ckpt-000000005",
    ]
    again = manager.save(5, {"again": True}, {"w": np.ones(1)})
    assert again.name == "ckpt-000000005-1"
    assert manager.restore()[0] == {"again": True}
    manager.release()


def test_a_second_writer_is_refused_with_the_pid(tmp_path: Path) -> None:
    first = CheckpointManager(tmp_path)
    first.acquire()
    with pytest.raises(CheckpointLockedError, match=f"pid {os.getpid()}"):
        CheckpointManager(tmp_path).acquire()
    code = (
        "import sys; from bricks.checkpoint import CheckpointManager\n"
        "from bricks.errors import CheckpointLockedError\n"
        "try:\n    CheckpointManager(sys.argv[1]).acquire()\n"
        "except CheckpointLockedError as e:\n    print(e); sys.exit(3)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 3 and f"pid {os.getpid()}" in out.stdout
    first.release()
    CheckpointManager(tmp_path).acquire()  # free again


def test_manifest_lists_sizes_and_sha256(tmp_path: Path) -> None:
    import hashlib

    path = write_checkpoint(tmp_path, "ckpt-000000007", {}, _arrays(7))
    manifest = json.loads((path / "manifest.json").read_text())
    for name in ("arrays.bin", "state.json"):
        data = (path / name).read_bytes()
        assert manifest["files"][name] == {
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
