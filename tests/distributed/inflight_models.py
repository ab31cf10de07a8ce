"""A wide MLP whose steps take longer than their dispatch, for the steps-in-flight tests
(also run in the subprocesses of inflight_worker.py)."""

from __future__ import annotations

import numpy as np

from bricks.core import (
    MLP,
    CategoricalCrossEntropy,
    Constant,
    IsotropicGaussian,
    Rectifier,
    Softmax,
)
from bricks.graph import ComputationGraph


def wide_mlp(dims: list[int], batch: int) -> tuple[ComputationGraph, list[dict[str, np.ndarray]]]:
    """The cost graph of an MLP of ``dims`` (rectifiers, a softmax) and 4 batches of ``batch``."""
    mlp = MLP([Rectifier() for _ in dims[2:]] + [Softmax()], dims,
              weights_init=IsotropicGaussian(0.05), biases_init=Constant(0.0))
    mlp.initialize(seed=1)

    def cost(features, targets):
        return CategoricalCrossEntropy().apply(targets, mlp.apply(features))

    rng = np.random.RandomState(0)
    data = [{"features": rng.randn(batch, dims[0]).astype(np.float32),
             "targets": rng.randint(0, dims[-1], batch).astype(np.int32)} for _ in range(4)]
    return ComputationGraph(cost, features=(None, dims[0]), targets=(None,)), data
