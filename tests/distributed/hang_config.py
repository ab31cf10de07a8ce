"""dp_config with a process that hangs while alive (for test_faults.py).

Process ``hang_process`` stops in its training step after ``hang_after`` steps and sleeps:
its threads (the step watchdog's among them) keep running, as those of a process hung in a
collective do, while the others wait for it in the next all-reduce.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.distributed import dp_config  # noqa: E402

finish = dp_config.finish


def get_config() -> dict[str, Any]:
    return {**dp_config.get_config(), "hang_process": -1, "hang_after": 5}


def build(config: dict[str, Any], run_dir: str) -> Any:
    main_loop = dp_config.build(config, run_dir)
    step = main_loop.algorithm.process_batch

    def process_batch(batch: Any) -> Any:
        import jax

        done = main_loop.status["iterations_done"]
        if jax.process_index() == config["hang_process"] and done >= config["hang_after"]:
            time.sleep(3600)  # alive (its threads run) but never finishes the step
        return step(batch)

    main_loop.algorithm.process_batch = process_batch
    return main_loop
