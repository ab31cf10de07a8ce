"""Dataset means: bricks' default weighs batches by size, "batch_mean" is Blocks'
plain average of minibatch values (issue 14, item 15: the docstring said the
weighted mean was Blocks' default)."""

from __future__ import annotations

import numpy as np
import pytest

from bricks.algorithms import GradientDescent, Scale
from bricks.data import DataStream, IndexableDataset, SequentialScheme
from bricks.errors import ExtensionError
from bricks.extensions import BATCH_MEAN, MEAN, DataStreamMonitoring, FinishAfter
from bricks.extensions.aggregation import get_aggregation
from bricks.main_loop import MainLoop

N, BATCH = 10, 4  # batches of 4, 4 and 2 examples


def _cost(params, x, y):
    return ((x @ params["w"] - y) ** 2).mean()


def test_dataset_mean_is_over_examples_and_batch_mean_over_batches():
    rng = np.random.RandomState(3)
    x = rng.randn(N, 3).astype(np.float32)
    y = rng.randn(N).astype(np.float32)
    w = rng.randn(3).astype(np.float32)
    stream = DataStream(
        IndexableDataset({"x": x, "y": y}), iteration_scheme=SequentialScheme(N, BATCH)
    )
    by_example = DataStreamMonitoring(["cost"], stream, prefix="examples", name="examples")
    by_batch = DataStreamMonitoring(
        ["cost"], stream, prefix="batches", aggregation={"cost": "batch_mean"}, name="batches"
    )
    algorithm = GradientDescent(cost=_cost, parameters={"w": w}, step_rule=Scale(0.0))
    loop = MainLoop(
        algorithm, stream, extensions=[by_example, by_batch, FinishAfter(after_n_epochs=1)]
    )
    loop.run()
    errors = (x.astype(np.float64) @ w - y) ** 2
    batch_means = [errors[i : i + BATCH].mean() for i in range(0, N, BATCH)]
    row = loop.log.current_row
    assert row["examples_cost"] == pytest.approx(errors.mean(), rel=1e-5)
    assert row["batches_cost"] == pytest.approx(np.mean(batch_means), rel=1e-5)
    assert abs(errors.mean() - np.mean(batch_means)) > 1e-3  # the two differ here


def test_schemes_by_name():
    assert get_aggregation("mean") is MEAN
    assert get_aggregation("batch_mean") is BATCH_MEAN
    with pytest.raises(ExtensionError, match="did you mean 'batch_mean'"):
        get_aggregation("batch_means")
