"""The custom recurrent brick of ``docs/recurrent.md`` (``FeedbackRNN``), trained.

``FeedbackRNN`` computes ``h_t = tanh(x_t + h_{t-1} W + y_{t-1} F) * scale``
and ``y_t = h_t V``: its step reads its own previous output. Here it reads
noisy sine waves (random frequency and phase) and predicts, at every step,
the next clean value; the cost is the mean squared error. The brick below
is the one written in the guide, unchanged.

    python -m experiments.run experiments/configs/custom_rnn.py
"""

from __future__ import annotations

import os
from typing import Any

import jax.numpy as jnp
import numpy as np

from bricks.algorithms import Adam, GradientDescent
from bricks.core import WEIGHT, Constant, Initializable, IsotropicGaussian, Linear, SquaredError
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
from bricks.recurrent import BaseRecurrent, recurrent
from experiments.common import checkpoint_and_plot


class FeedbackRNN(BaseRecurrent, Initializable):
    """h_t = tanh(x_t + h_{t-1} W + y_{t-1} F) * scale;  y_t = h_t V."""

    allocation_config = ("dim", "output_dim")
    dim = None
    output_dim = None

    def __init__(self, dim=None, output_dim=None, **kwargs):
        super().__init__(**kwargs)
        if dim is not None:
            self.dim = dim
        if output_dim is not None:
            self.output_dim = output_dim

    def _allocate(self):
        self.require("dim", "output_dim")
        self.add_parameter("W", (self.dim, self.dim), (WEIGHT,))
        self.add_parameter("F", (self.output_dim, self.dim), (WEIGHT,))
        self.add_parameter("V", (self.dim, self.output_dim), (WEIGHT,))

    def get_dim(self, name):
        if name in ("inputs", "states"):
            return self.dim
        if name == "outputs":
            return self.output_dim
        return super().get_dim(name)

    @recurrent(
        sequences=["inputs"],
        states=["states", "outputs"],
        contexts=["scale"],
        outputs=["states", "outputs"],
    )
    def apply(self, inputs, states, outputs, scale):
        hidden = jnp.tanh(inputs + states @ self.W + outputs @ self.F) * scale
        return hidden, hidden @ self.V


def get_config() -> dict[str, Any]:
    return {
        "seed": 1,
        "num_examples": 2000,
        "seq_len": 30,
        "noise": 0.1,
        "batch_size": 50,
        "dim": 32,
        "scale": 0.9,
        "learning_rate": 0.01,
        "epochs": 15,
        "checkpoint_every_n_epochs": 5,
        "plot": True,  # write <run-dir-name>.html at the end
        "plot_server": True,  # and serve the live plot while training
    }


def sine_waves(n: int, length: int, noise: float, seed: int) -> dict[str, np.ndarray]:
    """Noisy waves ``(n, length)`` and the clean next values to predict."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.1, 0.5, size=(n, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    t = np.arange(length + 1)[None]
    clean = np.sin(freq * t + phase)
    noisy = clean[:, :-1] + rng.normal(0.0, noise, size=(n, length))
    return {"waves": noisy.astype(np.float32), "targets": clean[:, 1:].astype(np.float32)}


def build(config: dict[str, Any], run_dir: str) -> MainLoop:
    w = IsotropicGaussian(0.3)
    rnn = FeedbackRNN(dim=config["dim"], output_dim=1, weights_init=w, name="feedback")
    to_rnn = Linear(1, config["dim"], weights_init=w, biases_init=Constant(0.0), name="to_rnn")
    rnn.initialize(seed=config["seed"])
    to_rnn.initialize(seed=config["seed"] + 1)

    def cost(waves, targets):
        inputs = to_rnn.apply(waves.T[:, :, None])
        _, outputs = rnn.apply(inputs, scale=jnp.float32(config["scale"]))
        # SquaredError sums over features and averages over axis 0: one row per prediction
        return SquaredError().apply(targets.T.reshape(-1, 1), outputs.reshape(-1, 1))

    seq = (None, config["seq_len"])
    cg = ComputationGraph(cost, waves=seq, targets=seq)
    algorithm = GradientDescent(
        cost=cg, step_rule=Adam(config["learning_rate"]), seed=config["seed"]
    )
    n = config["num_examples"]
    train = sine_waves(n, config["seq_len"], config["noise"], config["seed"])
    valid = sine_waves(500, config["seq_len"], config["noise"], config["seed"] + 1000)
    return MainLoop(
        algorithm,
        DataStream(
            IndexableDataset(train),
            iteration_scheme=ShuffledScheme(n, min(n, config["batch_size"]), seed=config["seed"]),
        ),
        model=cg,
        extensions=[
            Timing(),
            FinishAfter(after_n_epochs=config["epochs"]),
            DataStreamMonitoring(
                ["cost"],
                DataStream(IndexableDataset(valid), iteration_scheme=SequentialScheme(500, 500)),
            ),
            TrainingDataMonitoring(["cost"], after_epoch=True),
            *checkpoint_and_plot(config, run_dir, [["train_cost", "valid_cost"]]),
            Printing(after_epoch=False, every_n_epochs=5),
        ],
        log_path=os.path.join(run_dir, "log.jsonl"),
    )
