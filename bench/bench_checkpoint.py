"""Checkpoint speed: save/restore time and the step-time cost of async saving.

    python bench/bench_checkpoint.py [--sizes 10 100] [--steps 400] [--repeats 3]
        [--batch 64] [--interference]   (an empty --sizes or --batch skips that part)

1. Save and restore a state of N million float32 parameters (in 10 arrays)
   with :class:`bricks.checkpoint.CheckpointManager`: the save includes
   writing, fsync, sha256 and the atomic rename; the restore includes the
   sha256 verification and loading. Reported as seconds and GB/s.
2. The step-time overhead of checkpointing every 100 steps while training:
   the same MainLoop run (a 3-layer MLP, ~6.3M parameters, Adam) without a
   checkpoint, with ``Checkpoint(every_n_batches=100, async_save=True)`` and
   with a synchronous one, run alternately in one process (none, async,
   sync, none, async, ...); the time of the steps after the first (compile
   excluded), without and with the wait for the last write at the end of
   training (a fixed cost, not a per-step one). Each repeat's overhead is taken
   against the run without checkpoints of the same repeat; reported as the
   median and the range over the repeats. Async saves use the default
   ``if_busy="skip"``: the number of skipped saves is reported.
3. Where that time goes: the host's step-to-step interval (taken at each
   ``after_batch``, after the checkpoint's own callback) averaged by the
   distance from the last save multiple (0 = the interval that ends with a
   save call, 1-9 = the steps after it, while the write is usually going
   on, 10-99 = the rest), per kind; the median over the repeats. Drift
   between runs cancels out of the difference of phases within a run.
4. The writer's pull on a host-bound loop (``--interference``): the rate of
   a loop of tiny jitted calls (what a training thread does when the device
   is fast) alone, and while a 75 MB checkpoint is written in a thread; the
   ratio says how much of the host the writer's GIL hand-offs take.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

_SAVE_CALLS: dict[bool, list[float]] = {}
_SKIPPED: dict[bool, list[int]] = {}


def save_restore(million: int, directory: Path, repeats: int) -> tuple[float, float]:
    from bricks.checkpoint import CheckpointManager

    n = million * 1_000_000
    rng = np.random.default_rng(0)
    arrays = {f"params/layer_{i}.W": rng.standard_normal(n // 10, np.float32) for i in range(10)}
    saves, restores = [], []
    for r in range(repeats):
        with CheckpointManager(directory / f"{million}M", keep_last=1) as manager:
            start = time.perf_counter()
            manager.save(r, {"step": r}, arrays)
            saves.append(time.perf_counter() - start)
            start = time.perf_counter()
            _, loaded, _ = manager.restore()
            restores.append(time.perf_counter() - start)
        assert np.array_equal(loaded["params/layer_3.W"], arrays["params/layer_3.W"])
    return statistics.median(saves), statistics.median(restores)


def _train_time(
    ckpt_dir: Path | None, steps: int, every: int, async_save: bool, batch: int
) -> tuple[float, float, list[float]]:
    """``(seconds of steps 2..steps, the same plus the wait for the last write,
    host time of each step's after_batch)``."""
    import jax.numpy as jnp

    from bricks.algorithms import Adam, GradientDescent
    from bricks.extensions import FinishAfter, SimpleExtension
    from bricks.extensions.checkpoint import Checkpoint
    from bricks.main_loop import MainLoop

    dims = [512, 2048, 2048, 512]
    rng = np.random.default_rng(1)
    params = {}
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        params[f"W{i}"] = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        params[f"b{i}"] = np.zeros(b, np.float32)

    def cost(p, x):
        h = x
        for i in range(len(dims) - 1):
            h = jnp.tanh(h @ p[f"W{i}"] + p[f"b{i}"][None, :])
        return ((h - x) ** 2).mean()

    x = rng.standard_normal((batch, dims[0])).astype(np.float32)
    batches = [{"x": x}] * (steps + 1)

    class Clock(SimpleExtension):
        def __init__(self) -> None:
            super().__init__(name="Clock", after_batch=True, after_training=True)
            self.start = self.end = self.steps_end = 0.0
            self.stamps: list[float] = []

        def do(self, which: str, *args: object) -> None:
            done = self.main_loop.status["iterations_done"]
            if which == "after_batch":
                self.stamps.append(time.perf_counter())
            if which == "after_batch" and done in (1, steps):
                self.main_loop.algorithm._require_state()["params"]["W0"].block_until_ready()
                if done == 1:
                    self.start = time.perf_counter()
                else:  # the last step done; a pending write not waited for yet
                    self.steps_end = time.perf_counter()
            elif which == "after_training":
                self.main_loop.algorithm._require_state()["params"]["W0"].block_until_ready()
                self.end = time.perf_counter()

    algorithm = GradientDescent(cost=cost, parameters=params, step_rule=Adam(1e-4))
    extensions: list = [FinishAfter(after_n_batches=steps)]
    if ckpt_dir is not None:
        extensions.append(
            Checkpoint(
                ckpt_dir,
                every_n_batches=every,
                after_training=False,
                keep_last=2,
                async_save=async_save,
            )
        )
    clock = Clock()
    extensions.append(clock)  # after the checkpoint: the final wait is included
    loop = MainLoop(algorithm, batches, extensions=extensions)
    loop.run()
    if ckpt_dir is not None:
        checkpoint = loop.find_extension("Checkpoint")
        checkpoint.wait()
        clock.end = time.perf_counter()
        _SAVE_CALLS.setdefault(async_save, []).extend(checkpoint.save_times)
        _SKIPPED.setdefault(async_save, []).append(len(getattr(checkpoint, "skipped", [])))
    return clock.steps_end - clock.start, clock.end - clock.start, clock.stamps


_PHASES = ((0, 1, "at the save"), (1, 10, "1-9 after"), (10, 100, "10-99 after"))


def phase_means(stamps: list[float], every: int) -> list[float]:
    """Mean step interval (ms) per :data:`_PHASES`, after the first save period."""
    intervals = np.diff(np.asarray(stamps)) * 1000  # intervals[k] ends at step k + 2
    phase = (np.arange(2, len(stamps) + 1) % every) * 100 // every
    keep = np.arange(2, len(stamps) + 1) > every  # compile and warm-up excluded
    return [float(intervals[keep & (phase >= a) & (phase < b)].mean()) for a, b, _ in _PHASES]


def overhead(
    directory: Path, steps: int, every: int, repeats: int, batch: int
) -> dict[str, list[tuple[float, float, list[float]]]]:
    """Per kind, each repeat's ``(steps, steps + last write, step stamps)``."""
    times: dict[str, list[tuple[float, float, list[float]]]] = {
        "none": [],
        "async": [],
        "sync": [],
    }
    for r in range(repeats):
        times["none"].append(_train_time(None, steps, every, False, batch))
        times["async"].append(_train_time(directory / f"async{r}", steps, every, True, batch))
        times["sync"].append(_train_time(directory / f"sync{r}", steps, every, False, batch))
    return times


def interference(directory: Path, repeats: int) -> None:
    import threading

    import jax
    import jax.numpy as jnp

    from bricks.checkpoint import CheckpointManager

    bump = jax.jit(lambda a: a + 1)
    start = jnp.zeros(8)
    bump(start).block_until_ready()
    rng = np.random.default_rng(0)
    arrays = {f"params/p{i}": rng.standard_normal(75_000_000 // 48, np.float32) for i in range(12)}

    def rate(stop: threading.Event) -> float:
        n, value, begin = 0, start, time.perf_counter()
        while not stop.is_set():
            value = bump(value)
            n += 1
            if n % 64 == 0:
                value.block_until_ready()
        return n / (time.perf_counter() - begin)

    ratios, writes = [], []
    for r in range(repeats):
        stop = threading.Event()
        timer = threading.Timer(0.5, stop.set)
        timer.start()
        alone = rate(stop)
        stop = threading.Event()

        def write(r: int = r, stop: threading.Event = stop) -> None:
            begin = time.perf_counter()
            with CheckpointManager(directory / f"interference{r}", keep_last=1) as manager:
                manager.save(r, {"step": r}, arrays)
            writes.append(time.perf_counter() - begin)
            stop.set()

        writer = threading.Thread(target=write)
        writer.start()
        ratios.append(rate(stop) / alone)
        writer.join()
    print(
        f"\nhost-bound loop rate while a 75 MB checkpoint is written / alone: "
        f"{statistics.median(ratios):.3f} [{min(ratios):.3f}, {max(ratios):.3f}] "
        f"({repeats} repeats; a write takes {statistics.median(writes) * 1000:.0f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10, 100])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, nargs="*", default=[64])
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    parser.add_argument(
        "--interference", action="store_true", help="also measure the writer's pull on the host"
    )
    args = parser.parse_args()
    import jax

    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        print("| parameters | bytes | save (s) | save GB/s | restore (s) | restore GB/s |")
        print("| --- | --- | --- | --- | --- | --- |")
        for million in args.sizes:
            save, restore = save_restore(million, directory, args.repeats)
            gb = million * 4e6 / 1e9
            print(
                f"| {million}M float32 | {gb * 1000:.0f} MB | {save:.3f} | {gb / save:.2f} "
                f"| {restore:.3f} | {gb / restore:.2f} |"
            )
        for batch in args.batch:
            t = overhead(directory, args.steps, args.every, args.repeats, batch)
            print(
                f"\nstep time, batch {batch}, {args.steps} steps, checkpoint every "
                f"{args.every} (median [min, max] of {args.repeats} interleaved repeats):"
            )
            for k in ("none", "async", "sync"):
                line = f"  {k:>5}:"
                for which, label in ((0, "steps"), (1, "with the last write waited for")):
                    per = [v[which] / (args.steps - 1) * 1000 for v in t[k]]
                    pairs = zip(t[k], t["none"], strict=True)
                    extra = [(v[which] / n[which] - 1) * 100 for v, n in pairs]
                    line += (
                        f" {label} {statistics.median(per):.3f} ms/step "
                        f"[{min(per):.3f}, {max(per):.3f}] {statistics.median(extra):+.1f}% "
                        f"[{min(extra):+.1f}, {max(extra):+.1f}];"
                    )
                print(line.rstrip(";"))
            print("  step interval by distance from the last save (ms, median of repeats):")
            for k in ("none", "async", "sync"):
                means = [phase_means(v[2], args.every) for v in t[k]]
                cells = [
                    f"{label} {statistics.median(m[i] for m in means):.2f}"
                    for i, (_, _, label) in enumerate(_PHASES)
                ]
                print(f"    {k:>5}: " + ", ".join(cells))
            for mode, calls in sorted(_SAVE_CALLS.items()):
                name = "async" if mode else "sync"
                print(
                    f"  {name} save call blocks training {statistics.median(calls) * 1000:.1f} ms "
                    f"(median of {len(calls)}, max {max(calls) * 1000:.1f} ms); "
                    f"saves skipped per run: {_SKIPPED.get(mode, [])}"
                )
            _SKIPPED.clear()
            _SAVE_CALLS.clear()
        if args.interference:
            interference(directory, max(args.repeats, 5))


if __name__ == "__main__":
    main()
