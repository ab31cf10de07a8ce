"""Page faults of CPU training steps under glibc's default malloc settings and tuned ones.

XLA's CPU runtime allocates each step's temporaries as one large block that
glibc maps fresh (``mmap``) and unmaps at the end of the step, so its pages
are faulted in and zeroed every step. Each measurement runs in a fresh
process (the settings are per process); the modes are interleaved round by
round so they all see the same machine load:

* ``default``: glibc as it starts;
* ``env``: ``MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0
  MALLOC_TRIM_THRESHOLD_=4294967295`` in the child's environment;
* ``tuned``: :func:`bricks.core.allocator.tune_cpu_allocator` called at
  start-up (before jax makes its threads);
* ``backend``: the same call after ``jax.devices()`` (the CPU client and
  its threads exist, nothing compiled or run yet: where the runner calls it);
* ``late``: the same call after the first (compiled) step, when XLA's
  threads have allocated;
* ``mmap``: ``mallopt(M_MMAP_MAX, 0)`` alone; ``trim``: ``M_TRIM_THRESHOLD``
  alone; ``no-arena``: both but not ``M_ARENA_MAX`` (which settings give
  the win).

Workloads: ``w2`` (the 2-layer LSTM 256 char LM of ``bench_recurrent.py``,
Blocks' cell), ``mlp`` (784-500-500-10, batch 128, Adam: the floor of
``bench_training.py``) and ``alt`` (W2 at batch 32 and 64 alternating, two
programs with different scratch sizes: does resident memory stay bounded?).

Printed per workload and mode: minor page faults per step, process CPU ms
per step, wall ms per step (median and range over ``--rounds``), resident
memory after the last step and its peak (MiB), and ``os.getloadavg``.

    python bench/bench_allocator.py [--steps 20] [--rounds 3] [--workloads w2 mlp alt]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ENV = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": "4294967295",
}
MODES = ("default", "env", "tuned", "backend", "late", "mmap", "trim", "no-arena")


def _rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _mallopt(param: int, value: int) -> None:
    import ctypes

    ctypes.CDLL(None).mallopt(param, value)


def _workload(name: str):
    """Return ``step()``: one training step of ``name``, waited for."""
    import jax
    import optax

    sys.path.insert(0, str(Path(__file__).parent))
    if name in ("w2", "alt"):
        from bench_recurrent import batch, bricks_model, train_step

        params, loss = bricks_model(64, 256)
        optimizer = optax.adam(1e-3)
        step = train_step(loss, optimizer)
        batches = [batch(64, 100, 32, 0)] + ([batch(64, 100, 64, 1)] if name == "alt" else [])
        state = [params, optimizer.init(params), 0]

        def run() -> None:
            tokens, targets = batches[state[2] % len(batches)]
            state[0], state[1], value = step(state[0], state[1], tokens, targets)
            state[2] += 1
            value.block_until_ready()

        return run
    from bench_training import build, data, hand_written

    cg = build([784, 500, 500, 10])
    arrays = data(128, 784)  # one batch per "epoch": one step
    epoch = hand_written(cg, 3, arrays, 128)
    jax.block_until_ready(cg.parameter_values())
    return epoch


def child(mode: str, workload: str, steps: int) -> None:
    if mode == "tuned":
        from bricks.core.allocator import tune_cpu_allocator

        tune_cpu_allocator()
    elif mode == "mmap":
        _mallopt(-4, 0)
    elif mode == "trim":
        _mallopt(-1, 2**31 - 1)
    elif mode == "no-arena":
        _mallopt(-4, 0)
        _mallopt(-1, 2**31 - 1)
    elif mode == "backend":
        import jax

        from bricks.core.allocator import tune_cpu_allocator

        jax.devices()
        tune_cpu_allocator()
    step = _workload(workload)
    step()  # compile (and, for "alt", the first program)
    if workload == "alt":
        step()
    if mode == "late":
        from bricks.core.allocator import tune_cpu_allocator

        tune_cpu_allocator()
        step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    wall, cpu = time.perf_counter(), time.process_time()
    trace = []  # resident MiB after each fifth of the steps: does it grow?
    for i in range(steps):
        step()
        if (i + 1) % max(1, steps // 5) == 0:
            trace.append(round(_rss_mib()))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "faults": faults / steps,
                "cpu_ms": 1e3 * cpu / steps,
                "wall_ms": 1e3 * wall / steps,
                "rss_mib": _rss_mib(),
                "peak_mib": usage.ru_maxrss / 1024,
                "load": os.getloadavg()[0],
                "rss_trace": trace,
            }
        )
    )


def _spawn(mode: str, workload: str, steps: int) -> dict:
    env = dict(os.environ, **(ENV if mode == "env" else {}))
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, workload, str(steps)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fmt(values: list[float], digits: int = 0) -> str:
    return (
        f"{statistics.median(values):,.{digits}f} "
        f"[{min(values):,.{digits}f}-{max(values):,.{digits}f}]"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="timed steps per process")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (>= 3)")
    ap.add_argument("--workloads", nargs="+", default=["w2", "mlp"], choices=["w2", "mlp", "alt"])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument(
        "--child", nargs=3, metavar=("MODE", "WORKLOAD", "STEPS"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], int(args.child[2]))
    print(f"load average before: {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} CPUs")
    for workload in args.workloads:
        results: dict[str, list[dict]] = {mode: [] for mode in args.modes}
        for _ in range(args.rounds):
            for mode in args.modes:
                results[mode].append(_spawn(mode, workload, args.steps))
        print(f"\n{workload}: {args.steps} steps per process, {args.rounds} rounds")
        print("mode     faults/step        CPU ms/step      wall ms/step     RSS MiB  peak   load")
        base = results.get("default")
        for mode, runs in results.items():
            col = {k: [r[k] for r in runs] for k in runs[0] if k != "rss_trace"}
            ratio = ""
            if base and mode != "default":
                cpu = [r["cpu_ms"] / b["cpu_ms"] for r, b in zip(runs, base, strict=True)]
                ratio = f"  CPU/default {_fmt(cpu, 2)}"
            print(
                f"{mode:8} {_fmt(col['faults']):18} {_fmt(col['cpu_ms']):16} "
                f"{_fmt(col['wall_ms']):16} {statistics.median(col['rss_mib']):6.0f} "
                f"{statistics.median(col['peak_mib']):6.0f} {_fmt(col['load'], 1)}{ratio}"
            )
        for mode, runs in results.items():
            print(f"{mode:8} resident MiB after each fifth of the steps: {runs[0]['rss_trace']}")
    print(f"\nload average after: {os.getloadavg()[0]:.1f} (1 min)")


if __name__ == "__main__":
    main()
