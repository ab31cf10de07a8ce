"""Data-parallel step time on 1, 2, 4, 8 CPU devices: a correctness-and-overhead figure.

    python bench/bench_distributed.py [--devices 1,2,4,8] [--steps 40] [--batch 128]
    python bench/bench_distributed.py --memory [--devices 1,2,4,8]

Each device count runs in its own process (``XLA_FLAGS=
--xla_force_host_platform_device_count=N``): ``GradientDescent(parallel=N)``
trains the MLP 784-500-500-10 with Adam on the same global batches. Forced
host devices share the machine's cores, so more devices do not make a step
faster: the figure shows the cost of the sharded program (per-device work,
the all-reduce of the gradients as copies in host memory) and checks that
the parameters after the timed steps equal the one-device run. Reported:
median step time (wall, after ``block_until_ready``), its ratio to one
device, the largest relative difference of a parameter to the one-device run
(``||p_N - p_1|| / ||p_1||``), and the bytes each step
all-reduces (the gradients, float32).

``--memory`` instead measures what sharding the state saves
(``shard_parameters=True``, FSDP-style): the bytes of parameters and Adam
state that device 0 holds, replicated and sharded, for the MLP above (W1)
and a larger one (784-2048-2048-10), read from the placed arrays
(``addressable_shards[0]``) after ``initialize()``; no step runs.
``--shard-overhead`` times W1's step sharded against replicated on the
same devices, in blocks interleaved over 5 rounds (wall clock and process
CPU time, median and range of the per-round ratios).
``--inflight`` measures what bounding the steps in flight on several CPU
devices costs (``bricks.algorithms.parallel.StepPacer``): W1's step with
the default bound, waiting for every step, and unbounded in blocks of 16
steps (short enough not to deadlock), interleaved over 5 rounds; process CPU
time and wall clock per step, median and range.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any


def _mlp_graph(dims: list[int]) -> Any:
    """The cost graph of an MLP with rectifiers and a softmax (initialized, seed 1)."""
    from bricks.core import (
        MLP,
        CategoricalCrossEntropy,
        Constant,
        IsotropicGaussian,
        Rectifier,
        Softmax,
    )
    from bricks.graph import ComputationGraph

    mlp = MLP([Rectifier() for _ in dims[2:]] + [Softmax()], dims,
              weights_init=IsotropicGaussian(0.01), biases_init=Constant(0))
    mlp.initialize(seed=1)

    def cost(features, targets):
        return CategoricalCrossEntropy().apply(targets, mlp.apply(features))

    return ComputationGraph(cost, features=(None, dims[0]), targets=(None,))


def _child(devices: int, steps: int, batch: int) -> dict:
    import jax
    import numpy as np

    from bricks.algorithms import Adam, GradientDescent

    assert len(jax.devices()) == devices
    graph = _mlp_graph([784, 500, 500, 10])
    algorithm = GradientDescent(cost=graph, step_rule=Adam(1e-3),
                                parallel=devices if devices > 1 else None)
    rng = np.random.RandomState(0)
    data = [{"features": rng.rand(batch, 784).astype(np.float32),
             "targets": rng.randint(0, 10, batch).astype(np.int32)} for _ in range(8)]
    for b in data[:3]:  # compile and warm up
        algorithm.process_batch(b)
    jax.block_until_ready(algorithm.current_parameters())
    times = []
    for i in range(steps):
        start = time.perf_counter()
        algorithm.process_batch(data[i % len(data)])
        jax.block_until_ready(algorithm.current_parameters())
        times.append(time.perf_counter() - start)
    params = algorithm.parameter_values()
    return {
        "devices": devices,
        "median_step_us": float(np.median(times) * 1e6),
        "params": {k: v.tolist() for k, v in params.items()},
        "gradient_bytes": int(sum(v.size * 4 for v in params.values())),
    }


MEMORY_MODELS = {"W1 784-500-500-10": [784, 500, 500, 10],
                 "MLP 784-2048-2048-10": [784, 2048, 2048, 10]}


def _memory_child(devices: int) -> dict:
    """Bytes of parameters + optimizer state on device 0, replicated and sharded."""
    import jax
    import numpy as np

    from bricks.algorithms import Adam, GradientDescent
    from bricks.distributed import DataParallel

    assert len(jax.devices()) == devices
    out: dict = {"devices": devices}
    for name, dims in MEMORY_MODELS.items():
        row = {}
        for shard in (False, True):
            graph = _mlp_graph(dims)
            parallel = DataParallel(devices, shard_parameters=shard) if devices > 1 else None
            algorithm = GradientDescent(cost=graph, step_rule=Adam(1e-3), parallel=parallel)
            algorithm.initialize()
            state = algorithm._state
            leaves = jax.tree_util.tree_leaves((state["params"], state["opt"]))
            row["sharded" if shard else "replicated"] = int(sum(
                leaf.addressable_shards[0].data.nbytes for leaf in leaves))
            row["total"] = int(sum(np.asarray(leaf).nbytes for leaf in leaves))
            del algorithm, state, leaves
        out[name] = row
    return out


def _overhead_child(devices: int, steps: int, batch: int, rounds: int) -> dict:
    """Per-step wall and process CPU time, sharded / replicated, interleaved in rounds."""
    import jax
    import numpy as np

    from bricks.algorithms import Adam, GradientDescent
    from bricks.distributed import DataParallel

    rng = np.random.RandomState(0)
    data = [{"features": rng.rand(batch, 784).astype(np.float32),
             "targets": rng.randint(0, 10, batch).astype(np.int32)} for _ in range(8)]
    runs = {}
    for shard in (False, True):
        algorithm = GradientDescent(cost=_mlp_graph([784, 500, 500, 10]), step_rule=Adam(1e-3),
                                    parallel=DataParallel(devices, shard_parameters=shard))
        for b in data[:3]:  # compile and warm up
            algorithm.process_batch(b)
        jax.block_until_ready(algorithm.current_parameters())
        runs[shard] = algorithm
    ratios: dict[str, list[float]] = {"wall": [], "cpu": []}
    for r in range(rounds):
        per: dict = {}
        for shard in ((False, True) if r % 2 == 0 else (True, False)):  # alternate the order
            algorithm = runs[shard]
            wall, cpu = time.perf_counter(), time.process_time()
            for i in range(steps):  # one step in flight: several deadlock XLA:CPU's
                algorithm.process_batch(data[i % len(data)])  # collectives on a loaded machine
                jax.block_until_ready(algorithm.current_parameters())
            per[shard] = (time.perf_counter() - wall, time.process_time() - cpu)
        ratios["wall"].append(per[True][0] / per[False][0])
        ratios["cpu"].append(per[True][1] / per[False][1])
    return {"devices": devices, "ratios": ratios, "load": os.getloadavg()[0]}


#: --inflight: how many steps may be in flight in each mode (None: no bound)
INFLIGHT_MODES = {"bound 2 (default)": 2, "wait each step": 1, "unbounded": None}


def _inflight_child(devices: int, steps: int, batch: int, rounds: int) -> dict:
    """Per-step process CPU time and wall clock of W1 in each of INFLIGHT_MODES."""
    import jax
    import numpy as np

    from bricks.algorithms import Adam, GradientDescent
    from bricks.algorithms.parallel import CPU_PACER

    rng = np.random.RandomState(0)
    data = [{"features": rng.rand(batch, 784).astype(np.float32),
             "targets": rng.randint(0, 10, batch).astype(np.int32)} for _ in range(8)]
    algorithm = GradientDescent(cost=_mlp_graph([784, 500, 500, 10]), step_rule=Adam(1e-3),
                                parallel=devices if devices > 1 else None)
    for b in data[:3]:  # compile and warm up
        algorithm.process_batch(b)
    jax.block_until_ready(algorithm.current_parameters())
    modes = list(INFLIGHT_MODES) if devices > 1 else ["unbounded"]  # one device: never bound
    per: dict[str, dict[str, list[float]]] = {m: {"cpu": [], "wall": []} for m in modes}
    for r in range(rounds):
        for mode in modes[r % len(modes):] + modes[:r % len(modes)]:  # rotate the order
            limit = INFLIGHT_MODES[mode]
            CPU_PACER.limit = 1 << 30 if limit is None else limit
            wall, cpu = time.perf_counter(), time.process_time()
            for i in range(steps):
                algorithm.process_batch(data[i % len(data)])
                if (i + 1) % 16 == 0:  # unbounded: never more than 16 steps queued
                    jax.block_until_ready(algorithm.current_parameters())
            jax.block_until_ready(algorithm.current_parameters())
            per[mode]["cpu"].append((time.process_time() - cpu) / steps)
            per[mode]["wall"].append((time.perf_counter() - wall) / steps)
    return {"devices": devices, "per_step": per, "load": os.getloadavg()[0]}


def _run_child(devices: int, *args: str) -> dict:
    """The JSON this script prints with ``args``, run on ``devices`` forced CPU devices."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _inflight(devices: list[int], steps: int, batch: int) -> None:
    print(f"W1 (784-500-500-10, Adam, global batch {batch}): per step, {steps} steps a block, "
          "modes interleaved over 5 rounds (median [range])")
    print("| devices | mode | process CPU time | vs unbounded | wall clock | load average |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n in devices:
        r = _run_child(n, "--inflight-child", str(n), "--steps", str(steps), "--batch",
                       str(batch))
        unbounded = sorted(r["per_step"]["unbounded"]["cpu"])
        base = unbounded[len(unbounded) // 2]
        for mode, times in r["per_step"].items():
            cpu, wall = sorted(times["cpu"]), sorted(times["wall"])
            mid = len(cpu) // 2
            print(f"| {n} | {mode} | {cpu[mid] * 1e3:.2f} ms [{cpu[0] * 1e3:.2f}-"
                  f"{cpu[-1] * 1e3:.2f}] | {cpu[mid] / base:.2f} | {wall[mid] * 1e3:.2f} ms "
                  f"[{wall[0] * 1e3:.2f}-{wall[-1] * 1e3:.2f}] | {r['load']:.1f} |")


def _overhead(devices: list[int], steps: int, batch: int) -> None:
    print(f"W1 (784-500-500-10, Adam, global batch {batch}): step time with shard_parameters=True "
          f"over replicated, {steps} steps a block, blocks interleaved (median [range] of rounds)")
    print("| devices | wall-clock ratio | process CPU-time ratio | load average |")
    print("| --- | --- | --- | --- |")
    for n in devices:
        r = _run_child(n, "--overhead-child", str(n), "--steps", str(steps), "--batch",
                       str(batch))
        cells = []
        for kind in ("wall", "cpu"):
            values = sorted(r["ratios"][kind])
            cells.append(f"{values[len(values) // 2]:.2f} [{values[0]:.2f}-{values[-1]:.2f}]")
        print(f"| {n} | {cells[0]} | {cells[1]} | {r['load']:.1f} |")


def _memory(devices: list[int]) -> None:
    rows = []
    for n in devices:
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}",
               "JAX_PLATFORMS": "cpu"}
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(n)], env=env,
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("Parameters + Adam state held by one device (MB), replicated vs shard_parameters=True "
          "(min_shard_size 16384)")
    print("| model | devices | replicated | sharded | sharded / replicated |")
    print("| --- | --- | --- | --- | --- |")
    for name in MEMORY_MODELS:
        for r in rows:
            rep, sh = r[name]["replicated"], r[name]["sharded"]
            print(f"| {name} | {r['devices']} | {rep / 1e6:.2f} | {sh / 1e6:.2f} | "
                  f"{sh / rep:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", default="1,2,4,8")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--memory", action="store_true",
                        help="bytes of state per device, replicated vs sharded (no timing)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--shard-overhead", action="store_true",
                        help="step time sharded / replicated, interleaved (default --devices 2,4)")
    parser.add_argument("--overhead-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--inflight", action="store_true",
                        help="cost of bounding the steps in flight (default --devices 1,2,4)")
    parser.add_argument("--inflight-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inflight_child is not None:
        print(json.dumps(_inflight_child(args.inflight_child, args.steps, args.batch, 5)))
        return
    if args.inflight:
        devices = "1,2,4" if args.devices == "1,2,4,8" else args.devices
        _inflight([int(x) for x in devices.split(",")], args.steps, args.batch)
        return
    if args.child is not None:
        print(json.dumps(_child(args.child, args.steps, args.batch)))
        return
    if args.memory_child is not None:
        print(json.dumps(_memory_child(args.memory_child)))
        return
    if args.overhead_child is not None:
        print(json.dumps(_overhead_child(args.overhead_child, args.steps, args.batch, 5)))
        return
    if args.shard_overhead:
        devices = "2,4" if args.devices == "1,2,4,8" else args.devices
        _overhead([int(x) for x in devices.split(",")], args.steps, args.batch)
        return
    if args.memory:
        _memory([int(x) for x in args.devices.split(",")])
        return
    import numpy as np

    results = []
    for n in [int(x) for x in args.devices.split(",")]:
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}",
               "JAX_PLATFORMS": "cpu"}
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(n), "--steps", str(args.steps),
             "--batch", str(args.batch)],
            env=env, capture_output=True, text=True, check=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = results[0]
    print(f"MLP 784-500-500-10, Adam, global batch {args.batch}, {args.steps} timed steps; "
          f"gradients all-reduced per step: {base['gradient_bytes'] / 1e6:.2f} MB; "
          f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores")
    print("| devices | median step | vs 1 device | parameters, max relative difference (norm) |")
    print("| --- | --- | --- | --- |")
    for r in results:
        diff = max(  # ||p_N - p_1|| / ||p_1|| of each parameter, the largest
            float(np.linalg.norm(np.asarray(r["params"][k]) - np.asarray(v))
                  / np.linalg.norm(np.asarray(v)))
            for k, v in base["params"].items()
        )
        print(f"| {r['devices']} | {r['median_step_us']:.0f} us | "
              f"{r['median_step_us'] / base['median_step_us']:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
