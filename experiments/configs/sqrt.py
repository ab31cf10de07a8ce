"""Blocks' sqrt example: an MLP (1-10-1, tanh) learns ``sqrt(x)``.

Trained on the numbers 0..99 and tested on 100..199, both scaled by
``1/scale`` so that the targets stay near 1.

    python -m experiments.run experiments/configs/sqrt.py
    python -m experiments.run experiments/configs/sqrt.py --set num_batches=50
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from bricks.algorithms import Adam, GradientDescent, Scale
from bricks.core import MLP, Constant, Identity, IsotropicGaussian, SquaredError, Tanh
from bricks.data import DataStream, IndexableDataset, SequentialScheme, ShuffledScheme
from bricks.extensions import (
    DataStreamMonitoring,
    FinishAfter,
    Printing,
    Timing,
    TrainingDataMonitoring,
)
from bricks.graph import ComputationGraph
from bricks.main_loop import MainLoop
from experiments.common import checkpoint_and_plot


def get_config() -> dict[str, Any]:
    return {
        "seed": 1,
        "hidden_dim": 10,
        "batch_size": 20,
        "num_batches": 1500,
        "step_rule": "adam",  # or "scale" (Blocks' original: Scale(0.001))
        "learning_rate": 0.01,
        "scale": 100.0,  # x and sqrt(x) are divided by this and its root
        "checkpoint_every_n_epochs": 20,
        "plot": True,  # write <run-dir-name>.html at the end
        "plot_server": True,  # and serve the live plot while training
    }


def _stream(numbers: np.ndarray, config: dict[str, Any], shuffle: bool) -> DataStream:
    x = (numbers / config["scale"]).astype(np.float32)
    y = np.sqrt(x).astype(np.float32)
    dataset = IndexableDataset({"numbers": x, "roots": y})
    n, size = len(x), config["batch_size"]
    scheme = ShuffledScheme(n, size, seed=config["seed"]) if shuffle else SequentialScheme(n, size)
    return DataStream(dataset, iteration_scheme=scheme)


def build(config: dict[str, Any], run_dir: str) -> MainLoop:
    mlp = MLP(
        [Tanh(), Identity()],
        [1, config["hidden_dim"], 1],
        weights_init=IsotropicGaussian(0.5),
        biases_init=Constant(0.0),
    )
    mlp.initialize(seed=config["seed"])

    def cost(numbers, roots):
        return SquaredError().apply(roots[:, None], mlp.apply(numbers[:, None]))

    cg = ComputationGraph(cost, numbers=(None,), roots=(None,))
    rule = (
        Adam(config["learning_rate"])
        if config["step_rule"] == "adam"
        else Scale(config["learning_rate"])
    )
    algorithm = GradientDescent(
        cost=cg, parameters=cg.parameters, step_rule=rule, seed=config["seed"]
    )
    train = _stream(np.arange(0, 100, dtype=np.float64), config, shuffle=True)
    test = _stream(np.arange(100, 200, dtype=np.float64), config, shuffle=False)
    extensions = [
        Timing(),
        FinishAfter(after_n_batches=config["num_batches"]),
        DataStreamMonitoring(["cost"], test, prefix="test"),
        TrainingDataMonitoring(["cost"], after_epoch=True),
        *checkpoint_and_plot(config, run_dir, [["train_cost", "test_cost"]]),
        Printing(after_epoch=False, every_n_epochs=25),
    ]
    return MainLoop(
        algorithm,
        train,
        model=cg,
        extensions=extensions,
        log_path=os.path.join(run_dir, "log.jsonl"),
    )
