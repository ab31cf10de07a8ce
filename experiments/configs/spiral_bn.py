"""A batch-normalized MLP on the spiral toy data, against the same MLP without it.

Three interleaved spiral arms in 2-d, one class per arm. The main run trains
a ``BatchNormalizedMLP`` (``apply_batch_normalization`` for minibatch
statistics while training, ``get_batch_normalization_updates`` +
``add_updates`` for the population statistics used at test time). At the end
the same network without batch normalization is trained for the same epochs
on the same batches, and both validation error rates go into ``summary.json``
(``results.bn_beats_plain``).

    python -m experiments.run experiments/configs/spiral_bn.py
"""

from __future__ import annotations

import os
from typing import Any

import jax.numpy as jnp
import numpy as np

from bricks.algorithms import GradientDescent, Scale
from bricks.core import (
    MLP,
    BatchNormalizedMLP,
    CategoricalCrossEntropy,
    Constant,
    IsotropicGaussian,
    Logistic,
    MisclassificationRate,
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
from bricks.graph import (
    ComputationGraph,
    apply_batch_normalization,
    get_batch_normalization_updates,
)
from bricks.main_loop import MainLoop
from experiments.common import checkpoint_and_plot


def get_config() -> dict[str, Any]:
    return {
        "seed": 1,
        "num_examples": 3000,
        "noise": 0.05,
        "hidden_dims": [64, 64, 64],
        "batch_size": 50,
        "learning_rate": 0.5,
        "epochs": 2,
        "compare_plain": True,  # also train the plain MLP and compare
        "checkpoint_every_n_epochs": 1,
        "plot": True,  # write <run-dir-name>.html at the end
        "plot_server": True,  # and serve the live plot while training
    }


def spiral(n: int, noise: float, seed: int, arms: int = 3) -> dict[str, np.ndarray]:
    """``n`` points ``(n, 2)`` on ``arms`` spiral arms, and the arm ``(n, 1)`` of each."""
    rng = np.random.default_rng(seed)
    arm = rng.integers(0, arms, size=n)
    r = rng.uniform(0.05, 1.0, size=n)
    angle = 2 * np.pi * arm / arms + 2.5 * np.pi * r
    points = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
    points += rng.normal(0.0, noise, size=points.shape)
    return {"features": points.astype(np.float32), "targets": arm[:, None].astype(np.int64)}


def _main_loop(config: dict[str, Any], run_dir: str | None, batch_norm: bool) -> MainLoop:
    dims = [2, *config["hidden_dims"], 3]
    activations = [Logistic() for _ in config["hidden_dims"]] + [Softmax()]
    kind = BatchNormalizedMLP if batch_norm else MLP
    extra = {} if batch_norm else {"biases_init": Constant(0.0)}
    mlp = kind(activations, dims, weights_init=IsotropicGaussian(0.5), name="mlp", **extra)
    mlp.initialize(seed=config["seed"])

    def cost(features, targets):
        probs = mlp.apply(features)
        return {
            "cost": CategoricalCrossEntropy().apply(targets[:, 0], probs),
            "error_rate": MisclassificationRate().apply(targets[:, 0], probs),
        }

    cg = ComputationGraph(cost, features=(None, 2), targets=((None, 1), jnp.int64))
    train_graph = cg
    if batch_norm:
        train_graph = apply_batch_normalization(cg)
        train_graph = train_graph.add_updates(get_batch_normalization_updates(train_graph))
    algorithm = GradientDescent(
        cost=train_graph, step_rule=Scale(config["learning_rate"]), seed=config["seed"]
    )
    n = config["num_examples"]
    train = spiral(n, config["noise"], config["seed"])
    valid = spiral(1000, config["noise"], config["seed"] + 1000)
    extensions: list[Any] = [
        FinishAfter(after_n_epochs=config["epochs"]),
        DataStreamMonitoring(
            ["cost", "error_rate"],
            DataStream(IndexableDataset(valid), iteration_scheme=SequentialScheme(1000, 1000)),
            graph=cg,
        ),  # inference mode: population statistics
    ]
    if run_dir is not None:
        extensions = [
            Timing(),
            *extensions,
            TrainingDataMonitoring(["cost", "error_rate"], after_epoch=True),
            *checkpoint_and_plot(
                config,
                run_dir,
                [["train_cost", "valid_cost"], ["train_error_rate", "valid_error_rate"]],
            ),
            Printing(),
        ]
    return MainLoop(
        algorithm,
        DataStream(
            IndexableDataset(train),
            iteration_scheme=ShuffledScheme(n, config["batch_size"], seed=config["seed"]),
        ),
        model=cg,
        extensions=extensions,
        log_path=os.path.join(run_dir, "log.jsonl") if run_dir is not None else None,
    )


def build(config: dict[str, Any], run_dir: str) -> MainLoop:
    return _main_loop(config, run_dir, batch_norm=True)


def finish(main_loop: MainLoop, config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """Train the plain MLP the same way and compare validation error rates."""
    bn = main_loop.log.last_value("valid_error_rate")
    results: dict[str, Any] = {"bn_valid_error_rate": bn}
    if config["compare_plain"]:
        plain_loop = _main_loop(config, None, batch_norm=False)
        plain_loop.run()
        plain = plain_loop.log.last_value("valid_error_rate")
        results.update(plain_valid_error_rate=plain, bn_beats_plain=bool(bn < plain))
        print(
            f"valid error rate after {config['epochs']} epochs: batch-normalized {bn:.3f}, "
            f"plain {plain:.3f}",
            flush=True,
        )
    return results
