"""A tiny experiment config for the runner's --devices/--processes tests (the dp_models MLP)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bricks.extensions import (  # noqa: E402
    FinishAfter,
    SimpleExtension,
    TrainingDataMonitoring,
)
from bricks.extensions.checkpoint import Checkpoint  # noqa: E402
from bricks.main_loop import MainLoop  # noqa: E402
from tests.distributed.dp_models import mlp_algorithm, stream  # noqa: E402


def get_config() -> dict[str, Any]:
    return {"num_batches": 20, "die_process": -1, "die_after": 5, "pace_s": 0.0}


class _Die(SimpleExtension):
    """Process ``index`` exits at once (status 3) after ``after`` batches: a lost peer;
    every batch then sleeps ``pace`` seconds (so that a test can send a signal)."""

    def __init__(self, index: int, after: int, pace: float) -> None:
        super().__init__(name="Die", after_batch=True)
        self.index, self.after, self.pace = index, after, pace

    def do(self, which_callback: str, *args: Any) -> None:
        import jax

        done = self.main_loop.status["iterations_done"]
        if jax.process_index() == self.index and done >= self.after:
            os._exit(3)
        time.sleep(self.pace)


def build(config: dict[str, Any], run_dir: str) -> MainLoop:
    return MainLoop(
        mlp_algorithm(),
        stream(),
        extensions=[
            FinishAfter(after_n_batches=config["num_batches"]),
            TrainingDataMonitoring(["cost"], after_batch=True),
            Checkpoint(os.path.join(run_dir, "checkpoints"), every_n_batches=10),
            _Die(config["die_process"], config["die_after"], config["pace_s"]),
        ],
    )


def finish(main_loop: MainLoop, config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    values = main_loop.algorithm.parameter_values()
    return {"params": {k: v.tolist() for k, v in values.items()}}
