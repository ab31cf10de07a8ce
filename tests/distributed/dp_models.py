"""A tiny MLP trained with Adam, for the data-parallel equality tests (also run in subprocesses)."""

from __future__ import annotations

import numpy as np

from bricks.algorithms import Adam, GradientDescent
from bricks.core import MLP, CategoricalCrossEntropy, Constant, IsotropicGaussian, Softmax, Tanh
from bricks.data import DataStream, IndexableDataset, ProcessSlice, SequentialScheme
from bricks.extensions import FinishAfter, TrainingDataMonitoring
from bricks.graph import ComputationGraph
from bricks.main_loop import MainLoop

BATCH = 8
STEPS = 50


def batches(n: int = STEPS, batch: int = BATCH, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.RandomState(seed)
    return [
        {
            "features": rng.randn(batch, 5).astype(np.float32),
            "targets": rng.randint(0, 3, size=batch).astype(np.int32),
        }
        for _ in range(n)
    ]


def stream(process_index: int = 0, process_count: int = 1) -> DataStream:
    """The global batches of :func:`batches`, this process's slice of each."""
    data = batches()
    dataset = IndexableDataset({k: np.concatenate([b[k] for b in data]) for k in data[0]})
    scheme = SequentialScheme(STEPS * BATCH, BATCH)
    if process_count > 1:
        scheme = ProcessSlice(scheme, process_index, process_count)
    return DataStream(dataset, iteration_scheme=scheme)


def mlp_algorithm(parallel=None) -> GradientDescent:
    mlp = MLP([Tanh(), Softmax()], [5, 7, 3], weights_init=IsotropicGaussian(0.5),
              biases_init=Constant(0.1))
    mlp.initialize(seed=3)

    def cost(features, targets):
        return CategoricalCrossEntropy().apply(targets, mlp.apply(features))

    graph = ComputationGraph(cost, features=(None, 5), targets=(None,))
    return GradientDescent(cost=graph, step_rule=Adam(0.01), parallel=parallel)


def train(
    parallel=None, steps_per_call: int = 1, data=None
) -> tuple[dict[str, np.ndarray], list[float]]:
    """Parameters after STEPS steps and the logged per-batch costs."""
    algorithm = mlp_algorithm(parallel)
    loop = MainLoop(
        algorithm,
        batches() if data is None else data,
        extensions=[
            TrainingDataMonitoring(["cost"], prefix="batch", after_batch=True),
            FinishAfter(after_n_batches=STEPS),
        ],
        steps_per_call=steps_per_call,
    )
    loop.run()
    costs = [float(v) for _, v in loop.log.records("batch_cost")]
    return algorithm.parameter_values(), costs
