"""Many unblocked training steps on several forced CPU devices (started by test_cpu_inflight.py).

``python inflight_worker.py DEVICES STEPS [--unpaced]``: trains an MLP and the
LSTM language model of ``fsdp_models``, replicated and sharded, and a wider MLP
whose steps take longer than their dispatch, ``STEPS`` steps each without
waiting for any, then prints ``OK`` and the parameters' norm. ``--unpaced``
turns bricks' bound on steps in flight off (how often that hangs is the point).
"""

import os
import sys
from pathlib import Path

DEVICES, STEPS = int(sys.argv[1]), int(sys.argv[2])
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={DEVICES}"
os.environ["JAX_PLATFORMS"] = "cpu"
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bricks.algorithms import Adam, GradientDescent  # noqa: E402
from bricks.algorithms.parallel import CPU_PACER  # noqa: E402
from bricks.distributed import DataParallel  # noqa: E402
from tests.distributed.fsdp_models import MIN, MODELS  # noqa: E402
from tests.distributed.inflight_models import wide_mlp  # noqa: E402


def main() -> None:
    assert len(jax.devices()) == DEVICES
    if "--unpaced" in sys.argv:
        CPU_PACER.limit = 1 << 30
    models = {name: (make()[0], batches(8)) for name, (make, batches) in MODELS.items()}
    models["wide"] = wide_mlp([128, 256, 256, 8], 64)
    total = 0.0
    for name, (graph, data) in models.items():
        for shard in (False, True):
            algorithm = GradientDescent(
                cost=graph, step_rule=Adam(1e-3),
                parallel=DataParallel(DEVICES, shard_parameters=shard, min_shard_size=MIN))
            for i in range(STEPS):
                algorithm.process_batch(data[i % len(data)])
            values = algorithm.parameter_values()
            total += sum(float(np.linalg.norm(v)) for v in values.values())
            print(name, "sharded" if shard else "replicated", "done", flush=True)
    print("OK", total, flush=True)


if __name__ == "__main__":
    main()
