"""Checkpoints store where the log file stands, not the log: their size does not grow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bricks.algorithms import Adam, GradientDescent
from bricks.checkpoint import CheckpointManager, read_checkpoint
from bricks.data import DataStream, IndexableDataset, ShuffledScheme
from bricks.errors import LogError
from bricks.extensions import FinishAfter, TrainingDataMonitoring
from bricks.extensions.checkpoint import Checkpoint
from bricks.log import TrainingLog
from bricks.log.follow import read_log
from bricks.main_loop import MainLoop


def _loop(run: Path, steps: int, every: int) -> MainLoop:
    x = np.arange(72, dtype=np.float32).reshape(24, 3) / 10.0
    stream = DataStream(IndexableDataset({"x": x}), iteration_scheme=ShuffledScheme(24, 4, seed=1))
    algorithm = GradientDescent(
        cost=lambda p, x: ((p["w"][None, :] - x) ** 2).mean(),
        parameters={"w": np.zeros(3, np.float32)},
        step_rule=Adam(0.1),
    )
    return MainLoop(
        algorithm,
        stream,
        extensions=[
            TrainingDataMonitoring(["cost"], after_batch=True),
            FinishAfter(after_n_batches=steps),
            Checkpoint(run / "ckpt", every_n_batches=every),
        ],
        log_path=str(run / "log.jsonl"),
    )


def _state_size(run: Path, step: int) -> int:
    return (run / "ckpt" / f"ckpt-{step:09d}" / "state.json").stat().st_size


def test_checkpoint_size_does_not_grow_with_the_run(tmp_path: Path) -> None:
    _loop(tmp_path, 300, every=30).run()
    small, large = _state_size(tmp_path, 30), _state_size(tmp_path, 300)
    # only the numbers grow (iteration counts, epoch ends: 4 bytes an epoch); the
    # 300 rows of the log live in log.jsonl
    assert large <= small * 1.05, (small, large)
    assert len(read_log(tmp_path / "log.jsonl")) >= 300


def test_resume_truncates_the_log_and_continues_exactly(tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    reference = _loop(straight, 30, every=10)
    reference.run()

    cut = tmp_path / "cut"
    _loop(cut, 25, every=10).run()  # logged up to 25; resume from the checkpoint at 20
    first = cut / "ckpt" / "ckpt-000000020"
    state, _, _ = read_checkpoint(first)
    assert "rows" not in state["log"] and state["log"]["file"]["offset"] > 0
    resumed = _loop(cut, 30, every=10)
    resumed.run(resume=first)

    want, got = read_log(straight / "log.jsonl"), read_log(cut / "log.jsonl")
    assert sorted(got) == sorted(want)
    path_dependent = ("resumed_from", "saved_to")  # saved_to names each run's directory
    for i in want:
        assert {k: v for k, v in got[i].items() if k not in path_dependent} == {
            k: v for k, v in want[i].items() if k not in path_dependent
        }, i
    np.testing.assert_array_equal(
        np.asarray(resumed.algorithm.parameter_values()["w"]),
        np.asarray(reference.algorithm.parameter_values()["w"]),
    )
    assert [i for i, _ in resumed.log] == [i for i, _ in reference.log]
    assert resumed.log.status["epoch_ends"] == reference.log.status["epoch_ends"]


def test_a_log_file_shorter_than_the_checkpoint_says_is_an_error(tmp_path: Path) -> None:
    _loop(tmp_path, 10, every=10).run()
    state, _, _ = read_checkpoint(CheckpointManager(tmp_path / "ckpt", lock=False).latest())
    log_file = tmp_path / "log.jsonl"
    log_file.write_bytes(log_file.read_bytes()[: state["log"]["file"]["offset"] // 2])
    with pytest.raises(LogError, match="truncated or replaced"):
        TrainingLog(log_file).set_state(state["log"])
