"""Blocks' MNIST example: an MLP 784-100-10 (tanh, softmax) with L2 on the weights.

Uses the real MNIST when it has been converted (``python -m bricks.data
download mnist && python -m bricks.data convert mnist`` writes
``~/.bricks/data/mnist.hdf5``; ``$BRICKS_DATA_PATH`` moves it). Otherwise it
runs on a clearly labelled **offline fallback**, so the command always works:
scikit-learn's bundled 8×8 digits when scikit-learn is installed, else a
small synthetic digits-like set drawn deterministically from digit glyphs.
``--set dataset=mnist`` insists on the real data (an error if it is missing).
The dataset used is printed and stored in ``summary.json``.

    python -m experiments.run experiments/configs/mnist.py
    python -m experiments.run experiments/configs/mnist.py --set epochs=2
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from bricks.algorithms import Adam, GradientDescent, Scale
from bricks.core import (
    MLP,
    WEIGHT,
    CategoricalCrossEntropy,
    Constant,
    IsotropicGaussian,
    MisclassificationRate,
    Softmax,
    Tanh,
)
from bricks.data import DataStream, H5PYDataset, IndexableDataset, SequentialScheme, ShuffledScheme
from bricks.errors import ExperimentError
from bricks.extensions import (
    DataStreamMonitoring,
    FinishAfter,
    Printing,
    Timing,
    TrainingDataMonitoring,
)
from bricks.graph import ComputationGraph, VariableFilter
from bricks.main_loop import MainLoop
from experiments.common import checkpoint_and_plot

DATASETS = ("auto", "mnist", "digits", "synthetic")


def get_config() -> dict[str, Any]:
    return {
        "seed": 1,
        "dataset": "auto",  # auto: MNIST if converted, else digits (scikit-learn), else synthetic
        "num_examples": 0,  # use only this many training examples (0: all)
        "hidden_dim": 100,
        "batch_size": 100,
        "step_rule": "adam",  # or "scale": Blocks' plain SGD (then learning_rate=0.1)
        "learning_rate": 0.01,
        "l2": 5e-5,  # Blocks' weight decay: cost + l2 * sum of squared weights
        "epochs": 20,
        "checkpoint_every_n_epochs": 1,
        "plot": True,  # write <run-dir-name>.html at the end
        "plot_server": True,  # and serve the live plot while training
    }


# --- data ----------------------------------------------------------------------------

# 3x5 glyphs of the digits, rows top to bottom ("#" ink), for the synthetic fallback.
_GLYPHS = [
    ["###", "#.#", "#.#", "#.#", "###"],
    [".#.", "##.", ".#.", ".#.", "###"],
    ["###", "..#", "###", "#..", "###"],
    ["###", "..#", ".##", "..#", "###"],
    ["#.#", "#.#", "###", "..#", "..#"],
    ["###", "#..", "###", "..#", "###"],
    ["###", "#..", "###", "#.#", "###"],
    ["###", "..#", ".#.", ".#.", ".#."],
    ["###", "#.#", "###", "#.#", "###"],
    ["###", "#.#", "###", "..#", "###"],
]


def synthetic_digits(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy 8×8 digit images in [0, 1] ``(n, 64)`` float32 and labels ``(n,)``.

    Each is a digit glyph scaled to 6×5 or 6×6 pixels, shifted at random
    inside the 8×8 frame, with random stroke intensity and Gaussian noise;
    the same ``seed`` gives the same set on every machine.
    """
    rng = np.random.default_rng(seed)
    glyphs = [np.array([[c == "#" for c in row] for row in g], np.float32) for g in _GLYPHS]
    images = np.zeros((n, 8, 8), np.float32)
    labels = rng.integers(0, 10, size=n)
    for i, label in enumerate(labels):
        width = int(rng.integers(5, 7))
        glyph = glyphs[label][np.arange(6) * 5 // 6][:, np.arange(width) * 3 // width]
        top, left = int(rng.integers(0, 3)), int(rng.integers(0, 9 - width))
        images[i, top : top + 6, left : left + width] = glyph * rng.uniform(0.6, 1.0)
    images += rng.normal(0.0, 0.15, images.shape).astype(np.float32)
    return np.clip(images, 0.0, 1.0).reshape(n, 64), labels.astype(np.int64)


def _digits() -> tuple[np.ndarray, np.ndarray] | None:
    try:
        from sklearn.datasets import load_digits  # bundled with scikit-learn, no download
    except ImportError:
        return None
    digits = load_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)


def mnist_path() -> Path:
    """Where ``python -m bricks.data convert mnist`` puts the file."""
    from bricks.data._converters import data_path

    return data_path() / "mnist.hdf5"


def load_data(config: dict[str, Any]) -> tuple[dict, dict, str]:
    """``(train, test, description)``: ``{"features": (n, d) float32, "targets": (n, 1) int}``."""
    choice = config["dataset"]
    if choice not in DATASETS:
        raise ExperimentError(f"dataset must be one of {DATASETS}, found {choice!r}")
    path = mnist_path()
    if choice == "mnist" or (choice == "auto" and path.is_file()):
        if not path.is_file():
            raise ExperimentError(
                f"dataset=mnist: {path} does not exist; run `python -m bricks.data download "
                "mnist` and `python -m bricks.data convert mnist` first"
            )
        parts = {}
        for split in ("train", "test"):
            ds = H5PYDataset(path, which_sets=(split,), load_in_memory=True)
            stream = DataStream(ds, iteration_scheme=SequentialScheme(ds.num_examples, 10_000))
            batches = list(stream.get_epoch_iterator(as_dict=True))
            x = np.concatenate([b["features"] for b in batches]).reshape(-1, 784)
            y = np.concatenate([b["targets"] for b in batches]).reshape(-1)
            parts[split] = (x.astype(np.float32) / 255.0, y.astype(np.int64))
        (x, y), test, name = parts["train"], parts["test"], f"MNIST ({path})"
    else:
        found = _digits() if choice in ("auto", "digits") else None
        if choice == "digits" and found is None:
            raise ExperimentError("dataset=digits needs scikit-learn: pip install scikit-learn")
        if found is not None:
            data, name = found, "OFFLINE FALLBACK: scikit-learn's 8x8 digits (not MNIST)"
        else:
            data = synthetic_digits(2000, seed=0)
            name = "OFFLINE FALLBACK: synthetic 8x8 digits (not MNIST)"
        n_test = len(data[0]) // 5
        x, y = data[0][n_test:], data[1][n_test:]
        test = (data[0][:n_test], data[1][:n_test])
    if config["num_examples"]:
        x, y = x[: config["num_examples"]], y[: config["num_examples"]]

    def part(xy: tuple) -> dict:
        return {"features": xy[0], "targets": xy[1][:, None]}

    return part((x, y)), part(test), name


# --- model ---------------------------------------------------------------------------


def _step_rule(config: dict[str, Any]) -> Any:
    rules = {"adam": Adam, "scale": Scale}
    if config["step_rule"] not in rules:
        raise ExperimentError(
            f"step_rule must be one of {sorted(rules)}, found {config['step_rule']!r}"
        )
    return rules[config["step_rule"]](config["learning_rate"])


def build(config: dict[str, Any], run_dir: str) -> MainLoop:
    train, test, description = load_data(config)
    print(
        f"data: {description}: {len(train['features'])} training, "
        f"{len(test['features'])} test examples",
        flush=True,
    )
    dim = train["features"].shape[1]
    mlp = MLP(
        [Tanh(), Softmax()],
        [dim, config["hidden_dim"], 10],
        weights_init=IsotropicGaussian(0.01),
        biases_init=Constant(0.0),
    )
    mlp.initialize(seed=config["seed"])

    def cost(features, targets):
        probs = mlp.apply(features)
        return {
            "cost": CategoricalCrossEntropy().apply(targets[:, 0], probs),
            "error_rate": MisclassificationRate().apply(targets[:, 0], probs),
        }

    cg = ComputationGraph(cost, features=(None, dim), targets=((None, 1), np.int64))
    weights = VariableFilter(roles=[WEIGHT])(cg.variables)

    def with_l2(outputs: dict, *ws: Any) -> dict:
        penalty = sum((w**2).sum() for w in ws)
        return {**outputs, "cost": outputs["cost"] + config["l2"] * penalty}

    regularized = cg.transform_outputs(with_l2, weights)
    algorithm = GradientDescent(
        cost=regularized,
        parameters=regularized.parameters,
        step_rule=_step_rule(config),
        seed=config["seed"],
    )
    n, size = len(train["features"]), config["batch_size"]
    train_stream = DataStream(
        IndexableDataset(train),
        iteration_scheme=ShuffledScheme(n, min(size, n), seed=config["seed"]),
    )
    test_stream = DataStream(
        IndexableDataset(test), iteration_scheme=SequentialScheme(len(test["features"]), 1000)
    )
    main_loop = MainLoop(
        algorithm,
        train_stream,
        model=regularized,
        extensions=[
            Timing(),
            FinishAfter(after_n_epochs=config["epochs"]),
            DataStreamMonitoring(["cost", "error_rate"], test_stream, prefix="test", graph=cg),
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
