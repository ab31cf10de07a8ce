"""One process of a multi-process checkpoint save (started by test_checkpoint_commit.py).

``python commit_worker.py PORT INDEX BASE MODE``: joins a group of two on
``localhost:PORT`` and saves into ``BASE/checkpoints`` (process 0) or
``BASE/process-1/checkpoints`` (process 1), as the runner lays them out; writes
what each save returned (or the error it raised) to ``BASE/result-<INDEX>.json``.
MODE ``agree``: both save steps 10, 20, 30 (``keep_last=2``); ``disagree``:
process 1 saves step 11 where process 0 saves 10; ``failure``: process 0's
state is not JSON-able.
"""

import json
import os
import sys
from pathlib import Path

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bricks.checkpoint import CheckpointManager  # noqa: E402
from bricks.distributed import every_process, initialize  # noqa: E402
from bricks.errors import BricksError  # noqa: E402


def main() -> None:
    port, index, base, mode = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    initialize(coordinator=f"localhost:{port}", num_processes=2, process_id=index)
    where = base / "checkpoints" if index == 0 else base / "process-1" / "checkpoints"
    manager = CheckpointManager(where, keep_last=2)
    results = []
    for step in (10, 20, 30) if mode == "agree" else (10,):
        state = {"data_stream": {"epoch": 0, "position": step}, "note": step}
        if mode == "disagree" and index == 1:
            state["data_stream"]["position"] = step = step + 1
        if mode == "failure" and index == 0:
            state["note"] = {1, 2}  # a set: not JSON
        try:
            path = manager.save(step, state, {"w": np.full(3, step, np.float32)})
            results.append(None if path is None else path.name)
        except BricksError as error:
            results.append(f"{type(error).__name__}: {error}")
    if mode == "agree":  # what the saves left in jax.distributed's key-value store
        from jax._src import distributed

        every_process("commit-worker-end", index)
        left = distributed.global_state.client.key_value_dir_get("bricks-checkpoint/")
        results.append(sorted(key for key, _ in left))
    (base / f"result-{index}.json").write_text(json.dumps(results))
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
