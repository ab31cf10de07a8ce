"""A tiny experiment config for the runner's --shard-parameters tests (the fsdp_models MLP)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bricks.extensions import FinishAfter, TrainingDataMonitoring  # noqa: E402
from bricks.extensions.checkpoint import Checkpoint  # noqa: E402
from bricks.main_loop import MainLoop  # noqa: E402
from tests.distributed.fsdp_models import algorithm, stream  # noqa: E402


def get_config() -> dict[str, Any]:
    return {"num_batches": 4}


def build(config: dict[str, Any], run_dir: str) -> MainLoop:
    return MainLoop(algorithm("mlp"), stream("mlp"), extensions=[
        FinishAfter(after_n_batches=config["num_batches"]),
        TrainingDataMonitoring(["cost"], after_batch=True),
        Checkpoint(os.path.join(run_dir, "checkpoints"), every_n_batches=3, async_save=True),
    ])


def finish(main_loop: MainLoop, config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    algorithm = main_loop.algorithm
    params = algorithm.parameter_values()  # every process: a gather of sharded arrays
    layout = None
    if algorithm.parallel is not None:
        layout = algorithm.parallel.describe(algorithm.current_parameters())
    return {"params": {k: v.tolist() for k, v in params.items()}, "layout": layout}
