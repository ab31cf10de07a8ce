"""Checkpoint speed: save/restore time and the step-time cost of async saving.

    python bench/bench_checkpoint.py [--sizes 10 100] [--steps 400] [--repeats 3]

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
) -> tuple[float, float]:
    """``(seconds of steps 2..steps, the same plus the wait for the last write)``."""
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

        def do(self, which: str, *args: object) -> None:
            done = self.main_loop.status["iterations_done"]
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
    return clock.steps_end - clock.start, clock.end - clock.start


def overhead(
    directory: Path, steps: int, every: int, repeats: int, batch: int
) -> dict[str, list[tuple[float, float]]]:
    """Per kind, the ``(steps, steps + last write)`` seconds of each repeat."""
    times: dict[str, list[tuple[float, float]]] = {"none": [], "async": [], "sync": []}
    for r in range(repeats):
        times["none"].append(_train_time(None, steps, every, False, batch))
        times["async"].append(_train_time(directory / f"async{r}", steps, every, True, batch))
        times["sync"].append(_train_time(directory / f"sync{r}", steps, every, False, batch))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, nargs="+", default=[64])
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
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
            for mode, calls in sorted(_SAVE_CALLS.items()):
                name = "async" if mode else "sync"
                print(
                    f"  {name} save call blocks training {statistics.median(calls) * 1000:.1f} ms "
                    f"(median of {len(calls)}, max {max(calls) * 1000:.1f} ms); "
                    f"saves skipped per run: {_SKIPPED.get(mode, [])}"
                )
            _SKIPPED.clear()
            _SAVE_CALLS.clear()


if __name__ == "__main__":
    main()
