"""Resuming into another step rule is refused unless asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bricks.algorithms import Adam, GradientDescent, Scale
from bricks.checkpoint import restore_main_loop
from bricks.data import DataStream, IndexableDataset, SequentialScheme
from bricks.errors import CheckpointMismatchError
from bricks.extensions import FinishAfter
from bricks.extensions.checkpoint import Checkpoint
from bricks.main_loop import MainLoop


def _loop(path: Path, rule) -> MainLoop:
    x = np.arange(24, dtype=np.float32).reshape(8, 3)
    return MainLoop(
        GradientDescent(
            cost=lambda p, x: ((p["w"][None, :] - x) ** 2).mean(),
            parameters={"w": np.zeros(3, np.float32)},
            step_rule=rule,
        ),
        DataStream(IndexableDataset({"x": x}), iteration_scheme=SequentialScheme(8, 2)),
        extensions=[FinishAfter(after_n_batches=4), Checkpoint(path)],
    )


def test_an_adam_checkpoint_is_not_resumed_into_scale(tmp_path: Path) -> None:
    _loop(tmp_path, Adam(0.1)).run()
    with pytest.raises(CheckpointMismatchError, match="another step rule"):
        restore_main_loop(_loop(tmp_path, Scale(0.1)), tmp_path)
    with pytest.raises(CheckpointMismatchError, match="another step rule"):
        _loop(tmp_path, Scale(0.1)).run(resume=tmp_path)
    loop = _loop(tmp_path, Scale(0.1))
    restore_main_loop(loop, tmp_path, allow_step_rule_change=True)
    assert loop.status["iterations_done"] == 4
    restore_main_loop(_loop(tmp_path, Adam(0.1)), tmp_path)  # the same rule: fine
