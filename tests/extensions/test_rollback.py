"""RollbackOnNonFinite: a NaN at step 120, checkpoints every 50 = a run without those batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bricks.algorithms import Adam, GradientDescent
from bricks.data import DataStream, IndexableDataset, SequentialScheme
from bricks.errors import RollbackLimitError
from bricks.extensions import FinishAfter, TrainingDataMonitoring
from bricks.extensions.checkpoint import Checkpoint
from bricks.extensions.rollback import RollbackOnNonFinite
from bricks.main_loop import MainLoop

BATCH, EXAMPLES, STEPS, POISONED = 4, 800, 160, 120  # batch 120 (1-based) holds a NaN


def _data() -> np.ndarray:
    x = np.random.default_rng(0).normal(size=(EXAMPLES, 3)).astype(np.float32)
    x[(POISONED - 1) * BATCH] = np.nan
    return x


def _algorithm() -> GradientDescent:
    return GradientDescent(
        cost=lambda p, x: ((p["w"][None, :] - x) ** 2).mean(),
        parameters={"w": np.zeros(3, np.float32)},
        step_rule=Adam(0.01),
    )


def _rollback_run(tmp_path: Path, skip: int, max_rollbacks: int = 3) -> MainLoop:
    stream = DataStream(
        IndexableDataset({"x": _data()}), iteration_scheme=SequentialScheme(EXAMPLES, BATCH)
    )
    return MainLoop(
        _algorithm(),
        stream,
        extensions=[
            FinishAfter(after_n_batches=STEPS),
            TrainingDataMonitoring(["cost"], every_n_batches=10),
            Checkpoint(tmp_path / "ckpt", every_n_batches=50),
            RollbackOnNonFinite(max_rollbacks=max_rollbacks, skip_batches=skip),
        ],
    )


def test_rollback_equals_a_run_that_excludes_the_skipped_batches(tmp_path: Path) -> None:
    loop = _rollback_run(tmp_path, skip=20)
    loop.run()
    (rollback,) = loop.find_extension("RollbackOnNonFinite").rollbacks
    assert rollback["to"] == 100 and POISONED - 1 <= rollback["at"] + 1 <= 150
    skipped = rollback["skipped"]  # where each left-out batch began in the stream
    assert len(skipped) == 20 and len({repr(state) for state in skipped}) == 20
    assert loop.status["iterations_done"] == STEPS
    assert any("rollback" in row for _, row in loop.log)

    x = _data()
    batches = [{"x": x[i * BATCH : (i + 1) * BATCH]} for i in range(EXAMPLES // BATCH)]
    kept = batches[:100] + batches[120:]  # leave out batches 101..120
    reference = MainLoop(_algorithm(), kept, extensions=[FinishAfter(after_n_batches=STEPS)])
    reference.run()
    got = np.asarray(loop.algorithm.parameter_values()["w"])
    want = np.asarray(reference.algorithm.parameter_values()["w"])
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got, want)  # bitwise, on CPU


def test_the_rollback_after_max_rollbacks_stops_the_run(tmp_path: Path) -> None:
    loop = _rollback_run(tmp_path, skip=0, max_rollbacks=3)  # the NaN batch comes back
    with pytest.raises(RollbackLimitError, match="after 3 rollbacks"):
        loop.run()
    assert len(loop.find_extension("RollbackOnNonFinite").rollbacks) == 3


def test_a_cost_spike_rolls_back_too(tmp_path: Path) -> None:
    x = np.random.default_rng(1).normal(size=(EXAMPLES, 3)).astype(np.float32)
    x[(POISONED - 1) * BATCH : POISONED * BATCH] = 1e4  # finite, but the cost jumps
    stream = DataStream(
        IndexableDataset({"x": x}), iteration_scheme=SequentialScheme(EXAMPLES, BATCH)
    )
    loop = MainLoop(
        _algorithm(),
        stream,
        extensions=[
            FinishAfter(after_n_batches=STEPS),
            TrainingDataMonitoring(["cost"], after_batch=True),
            Checkpoint(tmp_path / "ckpt", every_n_batches=50),
            RollbackOnNonFinite(skip_batches=20, spike_factor=100.0, lr_scale=0.5),
        ],
    )
    loop.run()
    (rollback,) = loop.find_extension("RollbackOnNonFinite").rollbacks
    assert rollback["at"] == POISONED and rollback["to"] == 100
    assert "CostSpikeError" in rollback["reason"]
    assert rollback["learning_rate"] == pytest.approx(0.005)
    assert loop.algorithm.get_hyperparameter("learning_rate") == pytest.approx(0.005)
    assert loop.status["iterations_done"] == STEPS
