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
  alone; ``no-arena``: both but not ``M_ARENA_MAX``; ``arena``:
  ``M_ARENA_MAX=1`` alone; ``arena2``: the three with ``M_ARENA_MAX=2``;
  ``top-pad``: the three plus ``M_TOP_PAD`` 64 MiB (which settings give the
  win);
* ``hugetlb``: ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` in the child's
  environment (glibc asks for transparent huge pages: the block is still
  mapped afresh per step, in 2 MiB pages).

Workloads: ``w2`` (the 2-layer LSTM 256 char LM of ``bench_recurrent.py``,
Blocks' cell), ``w2k10`` (the same, 10 steps per call in one ``lax.scan``,
as the runner's default ``steps_per_call=10``), ``mlp`` (784-500-500-10,
batch 128, Adam: the floor of ``bench_training.py``) and ``alt`` (W2 at
batch 32 and 64 alternating, two programs with different scratch sizes:
does resident memory stay bounded?).

Printed per workload and mode: minor page faults per step, process CPU ms
per step, wall ms per step (median and range over ``--rounds``), resident
memory after the last step and its peak (MiB), ``os.getloadavg``, the
process CPU until the first call returned (imports, tracing, compiling),
system CPU and voluntary context switches per step, and (``w2k10``) the
compile's CPU seconds.

``--runner K ...`` instead runs ``python -m experiments.run`` on the char LM
(W2's sizes, or ``--runner-sizes config``) with ``steps_per_call`` K,
``--malloc-tuning`` for ``tuned`` (environment variables for the other
modes), warm compile cache unless ``--runner-no-cache``; ``--command CMD``
runs any command per mode (``tuned`` = ``env`` there). Both print
whole-process CPU, system CPU, faults, wall and peak resident memory.

    python bench/bench_allocator.py [--steps 20] [--rounds 3] [--workloads w2 w2k10 mlp alt]
    python bench/bench_allocator.py --modes default tuned --runner 1 10 [--runner-no-cache]
    python bench/bench_allocator.py --modes default tuned --command python bench/bench_training.py
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
HUGETLB = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
MODES = (
    "default",
    "env",
    "tuned",
    "backend",
    "late",
    "mmap",
    "trim",
    "no-arena",
    "arena",
    "arena2",
    "top-pad",
    "hugetlb",
)


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
    if name == "w2k10":
        return _w2_scanned(10)
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


def _w2_scanned(k: int):
    """W2 with ``k`` steps per call in one ``lax.scan`` (the runner's ``steps_per_call``)."""
    import jax
    import optax
    from bench_recurrent import batch, bricks_model

    params, loss = bricks_model(64, 256)
    optimizer = optax.adam(1e-3)

    def multi(params, opt_state, tokens, targets):
        def body(carry, xs):
            p, o = carry
            value, grads = jax.value_and_grad(loss)(p, *xs)
            updates, o = optimizer.update(grads, o, p)
            return (optax.apply_updates(p, updates), o), value

        (params, opt_state), values = jax.lax.scan(body, (params, opt_state), (tokens, targets))
        return params, opt_state, values[-1]

    pairs = [batch(64, 100, 32, i) for i in range(k)]
    tokens, targets = (jax.numpy.stack([p[j] for p in pairs]) for j in (0, 1))
    state = [params, optimizer.init(params)]
    cpu = time.process_time()
    step = jax.jit(multi, donate_argnums=(0, 1)).lower(*state, tokens, targets).compile()
    cpu = time.process_time() - cpu

    def run() -> None:
        state[0], state[1], value = step(state[0], state[1], tokens, targets)
        value.block_until_ready()

    run.steps_per_call = k
    run.compile_cpu_s = cpu
    return run


# mallopt parameter numbers (glibc's <malloc.h>).
_TRIM, _TOP_PAD, _MMAP_THRESHOLD, _MMAP_MAX, _ARENA_MAX = -1, -2, -3, -4, -8
_NO_TRIM = 2**31 - 1
#: Modes that call mallopt at start-up, before jax: name -> [(param, value)].
_MALLOPT_MODES = {
    "mmap": [(_MMAP_MAX, 0)],
    "trim": [(_TRIM, _NO_TRIM)],
    "no-arena": [(_MMAP_MAX, 0), (_TRIM, _NO_TRIM)],
    "arena": [(_ARENA_MAX, 1)],
    "arena2": [(_MMAP_MAX, 0), (_TRIM, _NO_TRIM), (_ARENA_MAX, 2)],
    "top-pad": [(_MMAP_MAX, 0), (_TRIM, _NO_TRIM), (_ARENA_MAX, 1), (_TOP_PAD, 2**26)],
}


def child(mode: str, workload: str, steps: int) -> None:
    if mode == "tuned":
        from bricks.core.allocator import tune_cpu_allocator

        tune_cpu_allocator()
    elif mode in _MALLOPT_MODES:
        for param, value in _MALLOPT_MODES[mode]:
            _mallopt(param, value)
    elif mode == "backend":
        import jax

        from bricks.core.allocator import tune_cpu_allocator

        jax.devices()
        tune_cpu_allocator()
    step = _workload(workload)
    step()  # compile (and, for "alt", the first program)
    first_cpu = time.process_time()  # imports, tracing, compiling and the first call
    if workload == "alt":
        step()
    if mode == "late":
        from bricks.core.allocator import tune_cpu_allocator

        tune_cpu_allocator()
        step()
    k = getattr(step, "steps_per_call", 1)
    before = resource.getrusage(resource.RUSAGE_SELF)
    faults = before.ru_minflt
    wall, cpu = time.perf_counter(), time.process_time()
    trace = []  # resident MiB after each fifth of the calls: does it grow?
    for i in range(steps):
        step()
        if (i + 1) % max(1, steps // 5) == 0:
            trace.append(round(_rss_mib()))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    usage = resource.getrusage(resource.RUSAGE_SELF)
    steps *= k
    print(
        json.dumps(
            {
                "first_cpu_s": first_cpu,
                "compile_cpu_s": getattr(step, "compile_cpu_s", float("nan")),
                "sys_ms": 1e3 * (usage.ru_stime - before.ru_stime) / steps,
                "switches": (usage.ru_nvcsw - before.ru_nvcsw) / steps,
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
    env = dict(os.environ, **{"env": ENV, "hugetlb": HUGETLB}.get(mode, {}))
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, workload, str(steps)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


#: Environment variables that set the mallopt modes for a process that cannot call mallopt
#: itself before jax starts (the runner): glibc reads them at start-up.
_RUNNER_ENV = {
    "default": {},
    "tuned": {},  # --malloc-tuning (a runner run); a --command run: the same as env
    "env": ENV,
    "no-arena": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "4294967295"},
    "arena": {"MALLOC_ARENA_MAX": "1"},
    "hugetlb": HUGETLB,
}


def _spawn_runner(
    mode: str, k: int, batches: int, cache: str, out: str, w2_sizes: bool = True
) -> dict:
    """One ``python -m experiments.run`` of the char LM (at W2's sizes, or the
    config's own: 2x LSTM 128, T=64) in a fresh process."""
    import shutil
    import tempfile

    run_dir = tempfile.mkdtemp(prefix="run-", dir=out)
    sets = {
        **({"hidden_dim": 256, "seq_len": 100} if w2_sizes else {}),
        "num_batches": batches,
        "steps_per_call": k,
        "plot": False,
        "plot_server": False,
        "checkpoint_every_n_batches": 10**6,
    }
    command = [sys.executable, "-m", "experiments.run", "experiments/configs/char_lm.py"]
    for key, value in sets.items():
        command += ["--set", f"{key}={value}"]
    command += ["--output-dir", run_dir]
    command += ["--compile-cache", cache] if cache else ["--no-compile-cache"]
    if mode == "tuned":
        command.append("--malloc-tuning")
    result = _spawn_process(command, _RUNNER_ENV[mode])
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    shutil.rmtree(run_dir)
    return {**result, "train_wall_s": summary["wall_time_s"]}


def _spawn_process(command: list[str], env: dict[str, str]) -> dict:
    """Run ``command`` with ``env`` added to the environment; its whole-process figures."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        command,
        env=dict(os.environ, **env),
        cwd=Path(__file__).parent.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = status
    wall = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{' '.join(command)} exited with status {status}:\n{stderr}")
    return {
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "sys_s": usage.ru_stime,
        "faults": usage.ru_minflt,
        "wall_s": wall,
        "peak_mib": usage.ru_maxrss / 1024,
        "load": os.getloadavg()[0],
    }


def _print_processes(results: dict[str, list[dict]]) -> None:
    print(
        "mode     CPU s            sys s         faults (k)       wall s        "
        "train wall s  peak MiB   load"
    )
    base = results.get("default")
    for mode, runs in results.items():
        col = {key: [r[key] for r in runs] for key in runs[0]}
        ratio = ""
        if base and mode != "default":
            cpu = [r["cpu_s"] / b["cpu_s"] for r, b in zip(runs, base, strict=True)]
            wall = [r["wall_s"] / b["wall_s"] for r, b in zip(runs, base, strict=True)]
            ratio = f"  CPU/default {_fmt(cpu, 3)}, wall/default {_fmt(wall, 3)}"
        train = _fmt(col["train_wall_s"], 1) if "train_wall_s" in col else "-"
        print(
            f"{mode:8} {_fmt(col['cpu_s'], 1):16} {_fmt(col['sys_s'], 1):13} "
            f"{_fmt([f / 1e3 for f in col['faults']]):16} {_fmt(col['wall_s'], 1):13} "
            f"{train:13} {_fmt(col['peak_mib']):10} {_fmt(col['load'], 1)}{ratio}"
        )


def command_bench(args: argparse.Namespace) -> None:
    """Interleaved fresh runs of ``args.command`` per mode (set by environment variables)."""
    results: dict[str, list[dict]] = {mode: [] for mode in args.modes}
    for _ in range(args.rounds):
        for mode in args.modes:
            env = ENV if mode == "tuned" else _RUNNER_ENV[mode]
            results[mode].append(_spawn_process(args.command, env))
    print(f"\n{' '.join(args.command)}: {args.rounds} rounds, whole process")
    _print_processes(results)


def runner_bench(args: argparse.Namespace) -> None:
    """Interleaved fresh runs of the runner per mode and ``steps_per_call``."""
    import tempfile

    out = tempfile.mkdtemp(prefix="bench-allocator-")
    cache = "" if args.runner_no_cache else os.path.join(out, "compile-cache")
    w2 = args.runner_sizes == "w2"
    for k in args.runner:
        if cache:
            _spawn_runner("default", k, args.runner_batches, cache, out, w2)  # fill the cache
        results: dict[str, list[dict]] = {mode: [] for mode in args.modes}
        for _ in range(args.rounds):
            for mode in args.modes:
                results[mode].append(_spawn_runner(mode, k, args.runner_batches, cache, out, w2))
        sizes = "2x LSTM 256, T=100" if w2 else "the config's 2x LSTM 128, T=64"
        print(
            f"\nrunner, char LM {sizes}, b32, steps_per_call={k}, "
            f"{args.runner_batches} batches, "
            f"{'no compile cache' if args.runner_no_cache else 'compile cache warm'}, "
            f"{args.rounds} rounds"
        )
        _print_processes(results)


def _fmt(values: list[float], digits: int = 0) -> str:
    return (
        f"{statistics.median(values):,.{digits}f} "
        f"[{min(values):,.{digits}f}-{max(values):,.{digits}f}]"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="timed steps per process")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (>= 3)")
    ap.add_argument(
        "--workloads", nargs="+", default=["w2", "mlp"], choices=["w2", "w2k10", "mlp", "alt"]
    )
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument(
        "--child", nargs=3, metavar=("MODE", "WORKLOAD", "STEPS"), help=argparse.SUPPRESS
    )
    ap.add_argument(
        "--runner",
        nargs="*",
        type=int,
        metavar="K",
        help="instead: whole runs of python -m experiments.run (char LM at W2's sizes) with "
        "steps_per_call K, per mode (default, tuned = --malloc-tuning, or the environment "
        "variables of env, no-arena, arena, hugetlb)",
    )
    ap.add_argument(
        "--command",
        nargs=argparse.REMAINDER,
        help="instead: whole runs of this command per mode (env, no-arena, arena, hugetlb: "
        "their environment variables), e.g. --command python bench/bench_training.py --only mlp",
    )
    ap.add_argument("--runner-batches", type=int, default=100, help="batches per runner run")
    ap.add_argument(
        "--runner-sizes",
        choices=["w2", "config"],
        default="w2",
        help="the char LM at W2's sizes (2x LSTM 256, T=100) or at the config's (128, T=64)",
    )
    ap.add_argument(
        "--runner-no-cache",
        action="store_true",
        help="runner runs compile everything (--no-compile-cache) instead of a warm cache",
    )
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], int(args.child[2]))
    print(f"load average before: {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} CPUs")
    if args.runner or args.command:
        runner_bench(args) if args.runner else command_bench(args)
        print(f"\nload average after: {os.getloadavg()[0]:.1f} (1 min)")
        return None
    for workload in args.workloads:
        results: dict[str, list[dict]] = {mode: [] for mode in args.modes}
        for _ in range(args.rounds):
            for mode in args.modes:
                results[mode].append(_spawn(mode, workload, args.steps))
        print(f"\n{workload}: {args.steps} steps per process, {args.rounds} rounds")
        print(
            "mode     faults/step        CPU ms/step      wall ms/step     RSS MiB  peak   load"
            "          first call CPU s  sys ms/step   ctx switches/step  compile CPU s"
        )
        base = results.get("default")
        for mode, runs in results.items():
            col = {k: [r[k] for r in runs] for k in runs[0] if k != "rss_trace"}
            ratio = ""
            if base and mode != "default":
                cpu = [r["cpu_ms"] / b["cpu_ms"] for r, b in zip(runs, base, strict=True)]
                ratio = f"  CPU/default {_fmt(cpu, 2)}"
            print(
                f"{mode:8} {_fmt(col['faults']):18} {_fmt(col['cpu_ms'], 1):16} "
                f"{_fmt(col['wall_ms'], 1):16} {statistics.median(col['rss_mib']):6.0f} "
                f"{statistics.median(col['peak_mib']):6.0f} {_fmt(col['load'], 1):14} "
                f"{_fmt(col['first_cpu_s'], 1):15} {_fmt(col['sys_ms']):13} "
                f"{_fmt(col['switches']):18} {_fmt(col['compile_cpu_s'], 2)}{ratio}"
            )
        for mode, runs in results.items():
            print(f"{mode:8} resident MiB after each fifth of the steps: {runs[0]['rss_trace']}")
    print(f"\nload average after: {os.getloadavg()[0]:.1f} (1 min)")


if __name__ == "__main__":
    main()
