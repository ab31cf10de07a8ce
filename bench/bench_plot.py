"""Training-step overhead of live plots: ``Plot`` updating after every batch, with a
headless Chromium page connected, against no ``Plot``, in one run.

One MainLoop trains an MLP with ``TrainingDataMonitoring`` after every batch
(the cost is read back each step, as plotting every batch needs). Its steps
alternate in blocks of ``--block`` batches between *Plot on* (the ``Plot``
extension hands the new values over after each batch, its server streams
them to the page open in Chromium) and *Plot off* (the extension does
nothing; server and browser stay up but get no data), so load from other
processes hits both alike. A step is the time between two ``after_batch``
events; the first ``--skip`` steps of each block are dropped (a block's
start still carries the previous block's streaming). Reported: median and
mean microseconds per step, and the ratio on / off. Target: <= 1.02.

On a loaded machine the wall-clock ratio is noisy, so the parts of the cost
are also measured directly: the time the training thread spends inside
``Plot`` per step, and the CPU seconds of the server thread (which competes
for the GIL) and of Chromium (which competes for cores) during training.

    python bench/bench_plot.py [--blocks 16] [--block 50] [--skip 10]
                               [--dims 784,500,500,10] [--batch 128]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bricks.algorithms import GradientDescent  # noqa: E402
from bricks.extensions import (  # noqa: E402
    FinishAfter,
    SimpleExtension,
    TrainingDataMonitoring,
)
from bricks.extensions.plot import Plot  # noqa: E402
from bricks.main_loop import MainLoop  # noqa: E402

# the same MLP graph as the training-loop benchmark beside this script
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training import build  # noqa: E402

WARMUP = 10


class StepClock(SimpleExtension):
    """Timestamps every ``after_batch`` with whether Plot was on for that batch."""

    def __init__(self, block: int) -> None:
        super().__init__(after_batch=True)
        self.block = block
        self.stamps: list[tuple[float, bool, int]] = []

    def do(self, which_callback, *args):
        done = self.main_loop.log.status["iterations_done"]
        self.stamps.append((time.perf_counter(), plot_on(done, self.block), done))


def plot_on(iterations_done: int, block: int) -> bool:
    """Plot is on for batches in odd-numbered blocks."""
    return ((iterations_done - 1) // block) % 2 == 1


def batches(n_batches, batch, dim):
    rng = np.random.RandomState(0)
    x = rng.rand(n_batches * batch, dim).astype(np.float32)
    y = rng.randint(0, 10, n_batches * batch).astype(np.int32)
    return [
        {"features": x[i : i + batch], "targets": y[i : i + batch]}
        for i in range(0, n_batches * batch, batch)
    ]


def run(cg, train, plot, block):
    clock = StepClock(block)
    MainLoop(
        GradientDescent(cost=cg, step_rule=optax.adam(1e-3)),
        train,
        model=cg,
        extensions=[
            TrainingDataMonitoring(["cost"], after_batch=True),
            plot,
            clock,
            FinishAfter(after_n_epochs=1),
        ],
    ).run()
    return clock.stamps


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(stat_path: str) -> float:
    """utime + stime of a /proc stat file, in seconds (0 when it is gone)."""
    try:
        fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its living descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += cpu_seconds(f"/proc/{p}/stat")
        todo.extend(children.get(p, []))
    return total


def open_browser(url, profile):
    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    return subprocess.Popen(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--block", type=int, default=50)
    parser.add_argument("--skip", type=int, default=10)
    parser.add_argument("--dims", default="784,500,500,10")
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    dims = [int(d) for d in args.dims.split(",")]
    cg = build(dims)
    train = batches(args.blocks * args.block + 1, args.batch, dims[0])
    plot = Plot(
        "bench",
        [["train_cost"]],
        keep_serving=True,
        html_path=False,
        name="plot",
        update_interval=0.2,
    )
    plot.add_condition(
        ["after_batch"], lambda log: plot_on(log.status["iterations_done"], args.block)
    )
    profile = tempfile.mkdtemp(prefix="bench-plot-chromium-")
    browser = None
    inside: list[float] = []
    try:
        run(cg, train[: 2 * args.block + 1], plot, args.block)  # compile; starts the server
        browser = open_browser(plot.url, profile)
        deadline = time.monotonic() + 30
        while browser is not None and plot.server.session_count == 0:
            if time.monotonic() > deadline:
                raise SystemExit("chromium did not open the plot page")
            time.sleep(0.1)
        time.sleep(2.0)  # let the page render and its websocket settle
        dispatch = plot.dispatch

        def timed_dispatch(callback_name, *a):
            start = time.perf_counter()
            dispatch(callback_name, *a)
            if callback_name == "after_batch":
                inside.append(time.perf_counter() - start)

        plot.dispatch = timed_dispatch
        server_stat = f"/proc/self/task/{plot.server._thread.native_id}/stat"
        server_cpu = -cpu_seconds(server_stat)
        browser_cpu = -tree_cpu_seconds(browser.pid) if browser is not None else 0.0
        wall = -time.perf_counter()
        stamps = run(cg, train, plot, args.block)
        wall += time.perf_counter()
        server_cpu += cpu_seconds(server_stat)
        browser_cpu += tree_cpu_seconds(browser.pid) if browser is not None else 0.0
        sessions = plot.server.session_count
    finally:
        plot.close()
        if browser is not None:
            browser.terminate()
            browser.wait(10)
        shutil.rmtree(profile, ignore_errors=True)
    steps = {True: [], False: []}
    for (t0, _, _), (t1, on, done) in zip(stamps[:-1], stamps[1:], strict=True):
        if (done - 1) % args.block >= args.skip:
            steps[on].append(t1 - t0)
    off, on = np.array(steps[False]), np.array(steps[True])
    print(
        f"MLP {dims}, batch {args.batch}, {args.blocks} blocks of {args.block} batches "
        f"(first {args.skip} of each dropped), {len(on)}/{len(off)} steps on/off, "
        f"browser pages: {sessions if browser is not None else 'none (no chromium)'}, "
        f"{os.cpu_count()} CPUs"
    )
    for name, t in (("Plot off", off), ("Plot on", on)):
        print(
            f"  {name:9s}: median {1e6 * np.median(t):7.0f} us/step, "
            f"mean {1e6 * t.mean():7.0f} us/step"
        )
    inside_on = np.array(inside)[[plot_on(i + 1, args.block) for i in range(len(inside))]]
    print(
        f"  inside Plot (training thread, Plot on): median {1e6 * np.median(inside_on):.1f} "
        f"us/step, mean {1e6 * inside_on.mean():.1f} us/step = "
        f"{100 * inside_on.mean() / np.median(off):.2f}% of a median step"
    )
    print(
        f"  CPU during the {wall:.1f} s of training: server thread {server_cpu:.2f} s "
        f"({100 * server_cpu / wall:.1f}%), Chromium {browser_cpu:.2f} s"
    )
    print(
        f"  ratio on / off: median {np.median(on) / np.median(off):.3f}, "
        f"mean {on.mean() / off.mean():.3f}  (target <= 1.02)"
    )


if __name__ == "__main__":
    main()
