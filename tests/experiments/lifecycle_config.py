"""A tiny experiment config for the run-lifecycle tests (signals, refusals, drift).

A linear model fits ``3x + 1`` on 40 points in batches of ``batch_size``.
Keys beyond the usual ones pace the run so that a test can hit a moment:
``batch_sleep_s`` (per batch), ``startup_sleep_s`` (in ``build``),
``save_delay_s`` (every checkpoint write sleeps after writing its arrays).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from bricks.algorithms import Adam, GradientDescent, Scale
from bricks.core import Constant, Linear, SquaredError
from bricks.data import DataStream, IndexableDataset, SequentialScheme
from bricks.extensions import FinishAfter, SimpleExtension, TrainingDataMonitoring
from bricks.extensions.checkpoint import Checkpoint
from bricks.graph import ComputationGraph
from bricks.main_loop import MainLoop


def get_config() -> dict[str, Any]:
    return {
        "seed": 1,
        "hidden_dim": 1,
        "batch_size": 10,
        "step_rule": "scale",
        "learning_rate": 0.1,
        "num_batches": 20,
        "every_n_batches": 5,
        "async_save": False,
        "exit_wait_s": 600.0,
        "batch_sleep_s": 0.0,
        "startup_sleep_s": 0.0,
        "save_delay_s": 0.0,
        "poison": False,  # a NaN in the data (for --debug-nans)
    }


class _Pace(SimpleExtension):
    def __init__(self, seconds: float) -> None:
        super().__init__(name="Pace", after_batch=True)
        self.seconds = seconds

    def do(self, which_callback: str, *args: Any) -> None:
        time.sleep(self.seconds)


def build(config: dict[str, Any], run_dir: str) -> MainLoop:
    time.sleep(config["startup_sleep_s"])
    if config["save_delay_s"]:
        os.environ["BRICKS_CHECKPOINT_DELAY"] = f"arrays:{config['save_delay_s']}"
    linear = Linear(
        1, config["hidden_dim"], weights_init=Constant(0.0), biases_init=Constant(0.0)
    )
    linear.initialize(seed=config["seed"])

    def cost(x, y):
        return SquaredError().apply(y, linear.apply(x).sum(axis=1, keepdims=True))

    x = np.linspace(-1, 1, 40, dtype=np.float32)[:, None]
    if config["poison"]:
        x[13] = np.nan
    data = IndexableDataset({"x": x, "y": 3 * x + 1})
    cg = ComputationGraph(cost, x=(None, 1), y=(None, 1))
    rule = Adam(config["learning_rate"]) if config["step_rule"] == "adam" else Scale(
        config["learning_rate"]
    )
    every = {"every_n_batches": config["every_n_batches"]} if config["every_n_batches"] else {}
    extensions = [
        FinishAfter(after_n_batches=config["num_batches"]),
        TrainingDataMonitoring(["cost"], after_batch=True),
        Checkpoint(
            os.path.join(run_dir, "checkpoints"),
            keep_last=2,
            async_save=config["async_save"],
            exit_wait_s=config["exit_wait_s"],
            **every,
        ),
    ]
    if config["batch_sleep_s"]:
        extensions.append(_Pace(config["batch_sleep_s"]))
    return MainLoop(
        GradientDescent(cost=cg, step_rule=rule, seed=config["seed"]),
        DataStream(data, iteration_scheme=SequentialScheme(40, config["batch_size"])),
        model=cg,
        extensions=extensions,
        log_path=os.path.join(run_dir, "log.jsonl"),
    )
