"""A LeNet-style convolutional network on MNIST, or on the offline fallback digits.

Two convolution + rectifier + max-pooling layers, then an MLP (rectifier,
softmax). The data come as in ``mnist.py``: the converted MNIST file when
there is one, else the labelled offline fallback (8×8 images, for which the
filters shrink to 3×3 with "half" padding).

    python -m experiments.run experiments/configs/lenet.py
"""

from __future__ import annotations

import os
from typing import Any

import jax.numpy as jnp

from bricks.algorithms import Adam, GradientDescent
from bricks.core import (
    MLP,
    CategoricalCrossEntropy,
    Constant,
    Convolutional,
    ConvolutionalSequence,
    IsotropicGaussian,
    MaxPooling,
    MisclassificationRate,
    Rectifier,
    Softmax,
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
from experiments.common import checkpoint_and_plot
from experiments.configs.mnist import load_data


def get_config() -> dict[str, Any]:
    return {
        "seed": 1,
        "dataset": "auto",  # as in mnist.py: auto, mnist, digits, synthetic
        "num_examples": 0,  # use only this many training examples (0: all)
        "num_filters": [20, 50],
        "hidden_dim": 500,
        "batch_size": 100,
        "learning_rate": 1e-3,
        "epochs": 5,
        "checkpoint_every_n_epochs": 1,
        "plot": True,  # write <run-dir-name>.html at the end
        "plot_server": True,  # and serve the live plot while training
    }


def build(config: dict[str, Any], run_dir: str) -> MainLoop:
    train, test, description = load_data(config)
    print(f"data: {description}: {len(train['features'])} training examples", flush=True)
    side = int(round(train["features"].shape[1] ** 0.5))
    for part in (train, test):
        part["features"] = part["features"].reshape(-1, 1, side, side)
    small = side < 16
    layers: list[Any] = []
    for filters in config["num_filters"]:
        conv = (
            Convolutional((3, 3), filters, border_mode="half")
            if small
            else Convolutional((5, 5), filters)
        )
        layers += [conv, Rectifier(), MaxPooling((2, 2))]
    w = IsotropicGaussian(0.05)
    convnet = ConvolutionalSequence(
        layers,
        num_channels=1,
        image_size=(side, side),
        weights_init=w,
        biases_init=Constant(0.0),
        name="convnet",
    )
    channels, height, width = convnet.get_dim("output")
    mlp = MLP(
        [Rectifier(), Softmax()],
        [channels * height * width, config["hidden_dim"], 10],
        weights_init=w,
        biases_init=Constant(0.0),
        name="top",
    )
    convnet.initialize(seed=config["seed"])
    mlp.initialize(seed=config["seed"] + 1)

    def cost(features, targets):
        hidden = convnet.apply(features)
        probs = mlp.apply(hidden.reshape(hidden.shape[0], -1))
        return {
            "cost": CategoricalCrossEntropy().apply(targets[:, 0], probs),
            "error_rate": MisclassificationRate().apply(targets[:, 0], probs),
        }

    cg = ComputationGraph(cost, features=(None, 1, side, side), targets=((None, 1), jnp.int64))
    algorithm = GradientDescent(
        cost=cg, step_rule=Adam(config["learning_rate"]), seed=config["seed"]
    )
    n = len(train["features"])
    main_loop = MainLoop(
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
                ["cost", "error_rate"],
                DataStream(
                    IndexableDataset(test),
                    iteration_scheme=SequentialScheme(len(test["features"]), 500),
                ),
                prefix="test",
            ),
            TrainingDataMonitoring(["cost", "error_rate"], after_epoch=True),
            *checkpoint_and_plot(
                config,
                run_dir,
                [["train_cost", "test_cost"], ["train_error_rate", "test_error_rate"]],
            ),
            Printing(),
        ],
        log_path=os.path.join(run_dir, "log.jsonl"),
    )
    main_loop.data_description = description
    return main_loop


def finish(main_loop: MainLoop, config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """Which data the run used, and its final test error."""
    return {
        "data": main_loop.data_description,
        "test_error_rate": main_loop.log.last_value("test_error_rate"),
    }
