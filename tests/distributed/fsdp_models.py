"""An MLP and a small LSTM language model trained with Adam, for the sharded-state tests.

Shapes are chosen so that sharding over 2 and over 4 devices meets every
case: arrays split along their largest divisible axis, arrays too small for
``MIN`` and arrays with no axis that divides (also run in subprocesses).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bricks.algorithms import Adam, GradientDescent
from bricks.core import (
    MLP,
    CategoricalCrossEntropy,
    Constant,
    IsotropicGaussian,
    Linear,
    LookupTable,
    Softmax,
    Tanh,
)
from bricks.data import DataStream, IndexableDataset, SequentialScheme
from bricks.distributed import DataParallel
from bricks.extensions import FinishAfter, TrainingDataMonitoring
from bricks.graph import ComputationGraph
from bricks.main_loop import MainLoop

STEPS = 50
BATCH = 8
#: the size threshold of the tests: the 8-element bias stays replicated
MIN = 10
VOCAB, TIME, DIM = 12, 6, 8


def mlp_graph() -> tuple[ComputationGraph, MLP]:
    """W0 (6, 8) splits on axis 1, W1 (8, 3) on axis 0; b0 (8,) is under MIN; b1 (3,)
    has no axis that divides."""
    mlp = MLP([Tanh(), Softmax()], [6, 8, 3], weights_init=IsotropicGaussian(0.5),
              biases_init=Constant(0.1))
    mlp.initialize(seed=3)

    def cost(features, targets):
        return CategoricalCrossEntropy().apply(targets, mlp.apply(features))

    return ComputationGraph(cost, features=(None, 6), targets=(None,)), mlp


def lm_graph() -> tuple[ComputationGraph, Any]:
    """Embedding (12, 8), a Linear to the LSTM's 32 gate inputs, an LSTM of 8, a readout to
    12 characters; batch-major ``(batch, time)`` windows."""
    from bricks.recurrent import LSTM

    w = IsotropicGaussian(0.3)
    lookup = LookupTable(VOCAB, DIM, weights_init=w, name="embed")
    lstm = LSTM(dim=DIM, weights_init=w, biases_init=Constant(0.0), name="lstm")
    to_gates = Linear(DIM, 4 * DIM, weights_init=w, biases_init=Constant(0.05), name="gates")
    readout = Linear(DIM, VOCAB, weights_init=w, biases_init=Constant(0.0), name="readout")
    for i, brick in enumerate((lookup, lstm, to_gates, readout)):
        brick.initialize(seed=10 + i)

    def cost(chars, targets):
        states, _ = lstm.apply(to_gates.apply(lookup.apply(chars.T)))
        logits = readout.apply(states)
        return CategoricalCrossEntropy(from_logits=True).apply(targets.T, logits)

    spec = ((None, TIME), np.int32)
    return ComputationGraph(cost, chars=spec, targets=spec), readout


def mlp_batches(n: int = STEPS, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.RandomState(seed)
    return [
        {
            "features": rng.randn(BATCH, 6).astype(np.float32),
            "targets": rng.randint(0, 3, size=BATCH).astype(np.int32),
        }
        for _ in range(n)
    ]


def lm_batches(n: int = STEPS, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(n):
        text = rng.randint(0, VOCAB, size=(BATCH, TIME + 1)).astype(np.int32)
        out.append({"chars": text[:, :-1], "targets": text[:, 1:]})
    return out


MODELS = {"mlp": (mlp_graph, mlp_batches), "lm": (lm_graph, lm_batches)}


def sharded(devices: Any) -> DataParallel:
    """``devices`` with parameters and optimizer state sharded (threshold ``MIN``)."""
    return DataParallel(devices, shard_parameters=True, min_shard_size=MIN)


def algorithm(model: str, parallel: Any = None, **kwargs: Any) -> GradientDescent:
    """GradientDescent of a fresh ``model`` with Adam (or ``step_rule=``)."""
    graph, _ = MODELS[model][0]()
    kwargs.setdefault("step_rule", Adam(0.01))
    return GradientDescent(cost=graph, parallel=parallel, **kwargs)


def stream(model: str, steps: int = STEPS) -> DataStream:
    """The batches of ``model`` as a resumable stream (its state counts the batches)."""
    data = MODELS[model][1](steps)
    dataset = IndexableDataset({k: np.concatenate([b[k] for b in data]) for k in data[0]})
    return DataStream(dataset, iteration_scheme=SequentialScheme(steps * BATCH, BATCH))


def train(
    model: str, parallel: Any = None, steps_per_call: int = 1, steps: int = STEPS
) -> tuple[dict[str, np.ndarray], list[float]]:
    """Parameters after ``steps`` Adam steps and the logged per-batch costs."""
    trained = algorithm(model, parallel)
    loop = MainLoop(
        trained,
        MODELS[model][1](steps),
        extensions=[
            TrainingDataMonitoring(["cost"], prefix="batch", after_batch=True),
            FinishAfter(after_n_batches=steps),
        ],
        steps_per_call=steps_per_call,
    )
    loop.run()
    costs = [float(v) for _, v in loop.log.records("batch_cost")]
    return trained.parameter_values(), costs


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray], rtol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=1e-6, err_msg=k)
