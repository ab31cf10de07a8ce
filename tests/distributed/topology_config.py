"""A tiny experiment config whose log records the example ids of every global batch.

For the topology-change resume tests: 96 examples with an ``id`` source,
shuffled batches of 8 (12 per epoch, so a checkpoint at step 50 falls
mid-epoch), the dp_models MLP trained with Adam.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bricks.data import DataStream, IndexableDataset, ShuffledScheme  # noqa: E402
from bricks.extensions import FinishAfter, SimpleExtension  # noqa: E402
from bricks.extensions.checkpoint import Checkpoint  # noqa: E402
from bricks.main_loop import MainLoop  # noqa: E402
from tests.distributed.dp_models import mlp_algorithm  # noqa: E402

EXAMPLES, BATCH = 96, 8


def get_config() -> dict[str, Any]:
    return {"num_batches": 50}


class RecordIds(SimpleExtension):
    """Log the ids of the global batch each step consumed (every process's slice, in order)."""

    def __init__(self) -> None:
        super().__init__(name="RecordIds", after_batch=True)

    def do(self, which_callback: str, *args: Any) -> None:
        from jax.experimental import multihost_utils

        (batch,) = args
        ids = np.asarray(multihost_utils.process_allgather(np.asarray(batch["id"]), tiled=True))
        self.main_loop.log.current_row["ids"] = ids.tolist()


def build(config: dict[str, Any], run_dir: str) -> MainLoop:
    rng = np.random.RandomState(0)
    dataset = IndexableDataset({
        "features": rng.randn(EXAMPLES, 5).astype(np.float32),
        "targets": rng.randint(0, 3, size=EXAMPLES).astype(np.int32),
        "id": np.arange(EXAMPLES, dtype=np.int32),
    })
    algorithm = mlp_algorithm()
    algorithm.on_unused_sources = "ignore"  # the id source is for RecordIds, not the cost
    return MainLoop(
        algorithm,
        DataStream(dataset, iteration_scheme=ShuffledScheme(EXAMPLES, BATCH, seed=1)),
        extensions=[
            FinishAfter(after_n_batches=config["num_batches"]),
            RecordIds(),
            Checkpoint(os.path.join(run_dir, "checkpoints"), every_n_batches=25),
        ],
    )


def finish(main_loop: MainLoop, config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    values = main_loop.algorithm.parameter_values()
    return {"params": {k: v.tolist() for k, v in values.items()}}
