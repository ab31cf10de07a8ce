"""One process of a multi-process data-parallel run (started by test_multi_process.py).

``python mp_worker.py PORT COUNT INDEX OUT.json``: joins the group on
``localhost:PORT``, trains the MLP of ``dp_models`` on its slice of every
global batch over all devices of all processes, and (process 0) writes the
parameters and logged costs to OUT.json.
"""

import json
import os
import sys
from pathlib import Path

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import jax  # noqa: E402

from bricks.distributed import initialize  # noqa: E402
from tests.distributed.dp_models import stream, train  # noqa: E402


def main() -> None:
    port, count, index, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    group = initialize(coordinator=f"localhost:{port}", num_processes=count, process_id=index)
    assert len(jax.devices()) == count and len(jax.local_devices()) == 1
    params, costs = train("all", data=stream(group.index, group.count))
    if group.index == 0:
        result = {"params": {k: v.tolist() for k, v in params.items()}, "costs": costs}
        Path(out).write_text(json.dumps(result))
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
