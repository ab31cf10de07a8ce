"""The runner's data parallelism: ``--devices``, ``--processes`` and the process group.

``--devices N`` trains over the first ``N`` local devices of one process
(default: every local GPU/TPU; on CPU one device, because forced host
devices share the same cores and only add overhead). ``--processes P``
starts ``P`` processes on this machine joined by ``jax.distributed`` over
loopback (for trying multi-process training out): process 0 works in the
run directory, prints and writes the run's one checkpoint directory;
process ``i > 0`` writes its own log, summary and output into
``<run>/process-<i>/`` and resumes from the run directory's checkpoints. ``--coordinator``,
``--num-processes`` and ``--process-id`` join a group started elsewhere;
without them a SLURM, Open MPI or Kubernetes launch is detected by
``jax.distributed`` itself.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bricks.errors import DeviceAssignmentError, ExperimentError

__all__ = [
    "add_arguments",
    "agree_on_resume",
    "distribute_main_loop",
    "join_group",
    "launch_local",
    "resume_source",
    "wait_for_busy_saves",
]

PROCESS_DIR = "process-{}"
#: A run interrupted after its checkpoint (as the runner's ``EXIT_INTERRUPTED``).
EXIT_INTERRUPTED = 75


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The runner's options of data-parallel training."""
    group = parser.add_argument_group("data-parallel training (docs/distributed.md)")
    group.add_argument(
        "--devices", type=int, default=None, metavar="N",
        help="train data-parallel over N local devices (default: all local GPUs/TPUs; "
        "on CPU 1); the global batch must divide by the number of devices",
    )
    group.add_argument(
        "--processes", type=int, default=None, metavar="P",
        help="start P processes on this machine joined by jax.distributed over loopback; "
        "each reads its slice of every global batch; process 0 writes the run directory",
    )
    group.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="coordinator of a process group started elsewhere (with "
                       "--num-processes and --process-id)")
    group.add_argument("--num-processes", type=int, default=None, metavar="P")
    group.add_argument("--process-id", type=int, default=None, metavar="I")
    group.add_argument(
        "--step-deadline", type=float, default=60.0, metavar="SECONDS",
        help="several processes: the step watchdog stops every process, naming the stuck "
        "one, when a step takes longer than max(F x the median step, SECONDS) (default 60; "
        "0: no watchdog)",
    )
    group.add_argument("--step-deadline-factor", type=float, default=10.0, metavar="F",
                       help="the F of --step-deadline (default 10)")
    group.add_argument(
        "--extension-deadline", type=float, default=600.0, metavar="SECONDS",
        help="an extension call (checkpoint save, validation) may take 10x its longest call "
        "so far, and at least SECONDS (default 600)",
    )
    group.add_argument(
        "--heartbeat-timeout", type=int, default=100, metavar="SECONDS",
        help="jax.distributed counts a process lost after SECONDS without a heartbeat "
        "(default 100)",
    )
    group.add_argument(
        "--shard-parameters", action="store_true",
        help="split each large parameter and its optimizer state over the devices (FSDP-style) "
        "instead of replicating them (docs/distributed.md); needs more than one device",
    )
    group.add_argument("--min-shard-size", type=int, default=None, metavar="N",
                       help="with --shard-parameters: arrays of fewer than N elements stay "
                       "replicated (default 16384)")
    group.add_argument(
        "--run-root", default=None, metavar="DIR",
        help="process i > 0 of a group started elsewhere: the run directory of process 0, "
        "whose checkpoints/ --resume reads (--processes sets it)",
    )


def join_group(args: argparse.Namespace) -> Any:
    """Join the process group of the arguments or the environment (before jax computes)."""
    from bricks.distributed import initialize

    return initialize(args.coordinator, args.num_processes, args.process_id,
                      heartbeat_timeout_s=getattr(args, "heartbeat_timeout", 100))


def watch_steps(main_loop: Any, args: argparse.Namespace) -> None:
    """Give a main loop of several processes the step watchdog of the command line
    (unless its config chose one: ``MainLoop(watchdog=...)``)."""
    from bricks.distributed import StepWatchdog

    if getattr(main_loop, "watchdog", False) is not None:
        return
    seconds = getattr(args, "step_deadline", 60.0)
    if seconds <= 0:
        main_loop.watchdog = False
        return
    main_loop.watchdog = StepWatchdog(
        factor=getattr(args, "step_deadline_factor", 10.0), minimum_s=seconds,
        extension_minimum_s=getattr(args, "extension_deadline", 600.0),
    )


def resume_source(args: argparse.Namespace, run_dir: Path) -> Path:
    """The run directory whose ``config.json`` and ``checkpoints/`` a ``--resume`` reads.

    A run of several processes has one checkpoint directory, written by
    process 0 in the run directory; process ``i > 0`` of ``--processes``
    works in ``<run>/process-<i>/`` and resumes from the run directory
    (``--run-root``), whatever the number of processes that wrote it.
    """
    root = getattr(args, "run_root", None)
    return Path(root) if root else run_dir


def agree_on_resume(main_loop: Any, checkpoint: Path) -> None:
    """Refuse a multi-process resume whose processes restored different checkpoints.

    Raises:
        RunRefusedError: the processes resumed from checkpoints of other
            names or iterations (each one is named).
    """
    from bricks.distributed import every_process
    from bricks.errors import RunRefusedError

    mine = [checkpoint.name, int(main_loop.status["iterations_done"])]
    seen = every_process("bricks-resume", mine)
    if any(s != seen[0] for s in seen):
        described = "; ".join(f"process {i}: {s[0]} (iteration {s[1]})"
                              for i, s in enumerate(seen))
        raise RunRefusedError(
            f"--resume: expected every process to restore the same checkpoint, got {described}; "
            "are the processes reading different run directories?"
        )


def wait_for_busy_saves(main_loop: Any) -> list[str]:
    """Make asynchronous ``Checkpoint`` extensions wait for a busy write instead of skipping.

    Every process must save at the same steps (one checkpoint is committed
    for all), but whether the previous write is still going on is decided
    by each process's own clock: with ``if_busy="skip"`` one could skip a
    save that another makes (then every process stops with a
    ``CheckpointCommitError``). Returns the names of the extensions changed.
    """
    changed = []
    for extension in getattr(main_loop, "extensions", []):
        if getattr(extension, "async_save", False) and getattr(extension, "if_busy", "") == "skip":
            extension.if_busy = "wait"
            changed.append(extension.name)
    return changed


def report_watchdog_stop(main_loop: Any, finish_summary: Any) -> None:
    """When the step watchdog ends this process, ``finish_summary("error", error=message)``
    first says why in ``summary.json`` (a config's own ``on_abort`` is left alone)."""
    from bricks.distributed._watchdog import exit_stuck

    watchdog = getattr(main_loop, "watchdog", None)
    if not watchdog or watchdog.on_abort is not exit_stuck:
        return

    def on_abort(message: str) -> None:
        try:
            finish_summary("error", error=message)
        finally:
            exit_stuck(message)

    watchdog.on_abort = on_abort


def _batch_axes(stream: Any, module: Any) -> dict[str, int]:
    axes = dict(getattr(module, "BATCH_AXES", {}) or {})
    for source, labels in (getattr(stream, "axis_labels", None) or {}).items():
        if source not in axes and labels and "batch" in labels:
            axes[source] = list(labels).index("batch")
    return axes


def distribute_main_loop(main_loop: Any, args: argparse.Namespace, group: Any,
                         module: Any = None) -> str:
    """Make a config's main loop data-parallel; returns a line that says how.

    With several processes the training stream reads this process's slice
    of every global batch (:func:`bricks.data.slice_stream`) and the mesh
    holds every device of every process.
    """
    import jax

    from bricks.errors import MeshError, ShardingError

    algorithm = main_loop.algorithm
    if group.count > 1:
        from bricks.data import slice_stream

        slice_stream(main_loop.data_stream, group.index, group.count)
        wait_for_busy_saves(main_loop)
        watch_steps(main_loop, args)
        parallel: Any = "all"
        size = len(jax.devices())
    else:
        default = 1 if jax.default_backend() == "cpu" else jax.local_device_count()
        size = default if args.devices is None else args.devices
        parallel = size if size > 1 else None
    shard = bool(getattr(args, "shard_parameters", False))
    minimum = getattr(args, "min_shard_size", None)
    if minimum is not None and not shard:
        raise ExperimentError("--min-shard-size is the threshold of --shard-parameters; give both")
    if parallel is None:
        if shard:
            raise ExperimentError(
                "--shard-parameters splits parameters over several devices, but this run has "
                "one; give --devices N (N > 1) or --processes P"
            )
        return "one device"
    if not hasattr(algorithm, "distribute"):
        raise ExperimentError(
            f"--devices/--processes: the config's algorithm ({type(algorithm).__name__}) has no "
            "distribute(); use bricks.algorithms.GradientDescent"
        )
    try:
        if shard:
            from bricks.distributed import MIN_SHARD_SIZE, DataParallel

            parallel = DataParallel(
                None if parallel == "all" else parallel, _batch_axes(main_loop.data_stream, module),
                shard_parameters=True,
                min_shard_size=MIN_SHARD_SIZE if minimum is None else minimum)
        algorithm.distribute(parallel, _batch_axes(main_loop.data_stream, module))
    except (MeshError, ShardingError) as error:
        raise ExperimentError(f"--devices {args.devices}: {error}") from None
    note = f"data-parallel over {size} devices, {group.count} process(es)"
    if shard:
        shapes = {v.path: tuple(v.shape) for v in algorithm.graph.parameters}
        note += "; " + algorithm.parallel.summary(shapes)
    return note


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


def launch_local(args: argparse.Namespace, argv: Sequence[str], run_dir: Path) -> int:
    """Start ``args.processes`` local processes of this run and wait for them.

    Returns 0 when all finished with 0, else the status of the first one
    that failed (the others are stopped, and the failure is named).
    """
    count = int(args.processes)
    if args.coordinator or args.process_id is not None or args.num_processes is not None:
        raise ExperimentError("--processes starts its own group; do not combine it with "
                              "--coordinator/--num-processes/--process-id")
    port = _free_port()
    rest = _without(list(argv), ("--processes", "--output-dir", "--run-root"))
    env = dict(os.environ)
    gpus = _visible_gpus(env)
    from bricks.distributed._process import local_device_environments

    try:  # each local process gets its own GPUs
        own = local_device_environments(gpus, count)
    except DeviceAssignmentError as error:
        raise ExperimentError(str(error)) from None
    if not gpus and env.get("JAX_PLATFORMS", "cpu") == "cpu":
        env["XLA_FLAGS"] = " ".join(
            [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
            + [f"--xla_force_host_platform_device_count={args.devices or 1}"]
        )
    procs = []
    for i in range(count):
        out_dir = run_dir if i == 0 else run_dir / PROCESS_DIR.format(i)
        command = [sys.executable, "-m", "experiments.run", *rest, "--output-dir", str(out_dir),
                   "--coordinator", f"localhost:{port}", "--num-processes", str(count),
                   "--process-id", str(i)] + ([] if i == 0 else ["--run-root", str(run_dir)])
        if i == 0:
            procs.append(subprocess.Popen(command, env={**env, **own[i]}))
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            with open(out_dir / "output.txt", "ab") as output:
                procs.append(subprocess.Popen(command, env={**env, **own[i]}, stdout=output,
                                              stderr=subprocess.STDOUT))
    failed: tuple[int, int] | None = None
    deadline = None

    def forward(signum: int, frame: Any) -> None:  # every process stops at one agreed step
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    old = {signal.SIGTERM: signal.signal(signal.SIGTERM, forward),
           # Ctrl-C reaches the children from the terminal (one process group)
           signal.SIGINT: signal.signal(signal.SIGINT, lambda signum, frame: None)}
    try:
        while [p.poll() for p in procs].count(None):  # poll every one: it sets returncode
            dead = [(i, p.returncode) for i, p in enumerate(procs)
                    if p.returncode not in (None, 0, EXIT_INTERRUPTED)]
            if dead and failed is None:
                # a peer's death makes jax's coordination service abort the others
                # (SIGABRT): the process to name is the one that did not abort
                failed = next((d for d in dead if d[1] != -signal.SIGABRT), dead[0])
                deadline = time.monotonic() + 30
                for other in procs:
                    if other.poll() is None:
                        other.terminate()
                        with contextlib.suppress(ProcessLookupError):  # a stopped one too
                            os.kill(other.pid, signal.SIGCONT)
            if deadline is not None and time.monotonic() > deadline:
                break  # stuck in a collective with the lost peer: killed below
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for signum, handler in old.items():
            signal.signal(signum, handler)
    codes = [p.returncode for p in procs]
    if failed is None and any(c not in (0, EXIT_INTERRUPTED) for c in codes):
        failed = next((i, c) for i, c in enumerate(codes) if c not in (0, EXIT_INTERRUPTED))
    if failed is None and EXIT_INTERRUPTED in codes:
        return EXIT_INTERRUPTED  # interrupted at one agreed step; resume with --resume
    if failed is not None:
        side = run_dir / PROCESS_DIR.format(failed[0])
        where = "" if failed[0] == 0 else f" (its output: {side / 'output.txt'})"
        print(f"python -m experiments.run: {_describe_exit(failed[0], count, failed[1])}"
              f"{where}; statuses: {codes}", file=sys.stderr, flush=True)
        return failed[1] if failed[1] > 0 else 128 - failed[1]
    return 0


def _visible_gpus(env: dict[str, str]) -> list[str]:
    """The GPUs that ``--processes`` splits: ``CUDA_VISIBLE_DEVICES``, else ``nvidia-smi -L``."""
    if env.get("JAX_PLATFORMS", "") == "cpu":
        return []
    if "CUDA_VISIBLE_DEVICES" in env:
        return [d for d in env["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, _ in enumerate(x for x in listed.splitlines() if x.startswith("GPU "))]


def _describe_exit(index: int, count: int, status: int) -> str:
    """``process 1 of 2 exited with status 3``, naming the coordinator, a signal, the watchdog."""
    from bricks.distributed import EXIT_STUCK

    who = f"process {index} of {count}" + (" (the coordinator)" if index == 0 else "")
    if status < 0:
        name = signal.Signals(-status).name if -status in signal.valid_signals() else "?"
        return f"{who} was lost: killed by signal {-status} ({name})"
    if status == EXIT_STUCK:
        return (f"{who} exited with status {status}: its step watchdog found a stuck process "
                "(its message names it)")
    return f"{who} exited with status {status}"


def _without(argv: list[str], options: Sequence[str]) -> list[str]:
    """``argv`` without ``options`` and their values (``--opt V`` or ``--opt=V``)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in options:
            skip = True
            continue
        if any(arg.startswith(o + "=") for o in options):
            continue
        out.append(arg)
    return out
