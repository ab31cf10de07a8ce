"""An LSTM reads random bits and outputs, at every step, the parity of the bits so far.

The running parity (XOR) needs one bit of memory that flips on every 1: a
classic test that a recurrent network can carry state. Error rates are per
step; 0.5 is chance.

    python -m experiments.run experiments/configs/parity.py
"""

from __future__ import annotations

import os
from typing import Any

import jax.numpy as jnp
import numpy as np

from bricks.algorithms import Adam, GradientDescent
from bricks.core import (
    CategoricalCrossEntropy,
    Constant,
    IsotropicGaussian,
    Linear,
    MisclassificationRate,
)
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
from bricks.recurrent import LSTM
from experiments.common import checkpoint_and_plot


def get_config() -> dict[str, Any]:
    return {
        "seed": 1,
        "num_examples": 2000,
        "seq_len": 12,
        "batch_size": 50,
        "dim": 16,
        "learning_rate": 0.01,
        "epochs": 20,
        "checkpoint_every_n_epochs": 5,
        "plot": True,  # write <run-dir-name>.html at the end
        "plot_server": True,  # and serve the live plot while training
    }


def parity_data(n: int, length: int, seed: int) -> dict[str, np.ndarray]:
    """Random bits ``(n, length)`` and their running parity."""
    bits = np.random.default_rng(seed).integers(0, 2, size=(n, length)).astype(np.int32)
    return {"bits": bits, "parity": (np.cumsum(bits, axis=1) % 2).astype(np.int32)}


def build(config: dict[str, Any], run_dir: str) -> MainLoop:
    w = IsotropicGaussian(0.1)
    lstm = LSTM(dim=config["dim"], weights_init=w, name="lstm")
    to_lstm = Linear(
        1, 4 * config["dim"], weights_init=w, biases_init=Constant(0.0), name="to_lstm"
    )
    readout = Linear(config["dim"], 2, weights_init=w, biases_init=Constant(0.0), name="readout")
    for i, brick in enumerate((lstm, to_lstm, readout)):
        brick.initialize(seed=config["seed"] * 10 + i)

    def cost(bits, parity):
        inputs = to_lstm.apply(bits.T[:, :, None].astype(jnp.float32))
        states, _ = lstm.apply(inputs)
        logits = readout.apply(states)
        return {
            "cost": CategoricalCrossEntropy(from_logits=True).apply(parity.T, logits),
            "error_rate": MisclassificationRate().apply(parity.T, logits),
        }

    seq = ((None, config["seq_len"]), jnp.int32)
    cg = ComputationGraph(cost, bits=seq, parity=seq)
    algorithm = GradientDescent(
        cost=cg, step_rule=Adam(config["learning_rate"]), seed=config["seed"]
    )
    train = parity_data(config["num_examples"], config["seq_len"], config["seed"])
    valid = parity_data(500, config["seq_len"], config["seed"] + 1000)
    n, size = config["num_examples"], config["batch_size"]
    return MainLoop(
        algorithm,
        DataStream(
            IndexableDataset(train),
            iteration_scheme=ShuffledScheme(n, min(n, size), seed=config["seed"]),
        ),
        model=cg,
        extensions=[
            Timing(),
            FinishAfter(after_n_epochs=config["epochs"]),
            DataStreamMonitoring(
                ["cost", "error_rate"],
                DataStream(IndexableDataset(valid), iteration_scheme=SequentialScheme(500, 500)),
            ),
            TrainingDataMonitoring(["cost", "error_rate"], after_epoch=True),
            *checkpoint_and_plot(
                config,
                run_dir,
                [["train_cost", "valid_cost"], ["train_error_rate", "valid_error_rate"]],
            ),
            Printing(after_epoch=False, every_n_epochs=5),
        ],
        log_path=os.path.join(run_dir, "log.jsonl"),
    )
