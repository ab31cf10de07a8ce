"""Benchmark of the data pipeline (not a test; ratios measured side by side in one run).

    python bench/bench_data.py            # 60000 x 784 float32, 5 interleaved repetitions
    python bench/bench_data.py --quick    # 12000 examples, 3 repetitions: a smoke run

1. Reader throughput: shuffled minibatches of 128 from a 60000x784 float32
   HDF5 file: ``H5PYDataset`` (memory-mapped, and with ``memory_map=False``)
   against raw h5py fancy indexing (sorted indices, as HDF5 requires).
2. First batch: seconds from ``get_epoch_iterator()`` to the first batch,
   epoch 1 (workers start) and epochs 2+ (workers reused). Target < 50 ms.
3. Epoch time of a small numpy MLP (784-256-10, forward + backward + SGD)
   fed from HDF5 (no prefetch, ``Prefetch`` with a thread, with processes)
   against the same fed from memory, and with a Python-heavy reader (a
   per-example Python loop in ``get_data``): threads against processes.
   Target: HDF5 with the documented prefetch <= 1.05x memory. Besides wall
   and CPU ratios it prints the seconds the trainer waited in ``next()``.
4. Resident memory of the main process plus its workers, epoch 2 against
   the last (HDF5 + Prefetch with worker processes). Target growth <= 5%.

Every comparison is interleaved (the variants take turns, in a rotating
order, ``--repeats`` times) and reported as median [min, max] with the load
average. BLAS runs one thread (``--blas-threads``): on a shared machine a
multi-threaded BLAS spins against other jobs, and the epoch times it gives
vary by 10x, which would hide the pipeline this measures.
"""

from __future__ import annotations

import argparse
import os
import sys

if __name__ == "__main__":  # before numpy loads its BLAS
    _threads = "1"
    if "--blas-threads" in sys.argv:
        _threads = sys.argv[sys.argv.index("--blas-threads") + 1]
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, _threads)

import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bricks.data import (  # noqa: E402
    DataStream,
    H5PYDataset,
    IndexableDataset,
    Prefetch,
    ShuffledScheme,
    write_hdf5,
)

BATCH = 128


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def summary(xs: list[float], scale: float = 1.0, fmt: str = ".3f") -> str:
    xs = [x * scale for x in xs]
    return f"{statistics.median(xs):{fmt}} [{min(xs):{fmt}}, {max(xs):{fmt}}]"


def proc_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_tree_kb(pid: int) -> int:
    total = 0
    for p in proc_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_tree_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants so far."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for p in proc_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


# --- 1. reader -------------------------------------------------------------------------


def reader_throughput(path: str, n: int, n_batches: int, repeats: int) -> dict[str, list[float]]:
    requests = list(ShuffledScheme(n, BATCH, seed=0).get_request_iterator(0))[:n_batches]
    mapped = H5PYDataset(path, ("train",), sources=("features",))
    plain = H5PYDataset(path, ("train",), sources=("features",), memory_map=False)
    out: dict[str, list[float]] = {"raw h5py": [], "H5PYDataset": [], "memory_map=False": []}
    with h5py.File(path, "r") as f:
        dset = f["features"]

        def raw() -> None:
            for r in requests:
                dset[np.sort(r)]

        def ours(ds: H5PYDataset) -> None:
            handle = ds.open()
            for r in requests:
                ds.get_data(handle, r)

        runs = {"raw h5py": raw, "H5PYDataset": lambda: ours(mapped),
                "memory_map=False": lambda: ours(plain)}
        for k in range(repeats):
            for name in rotate(list(runs), k):
                t = time.perf_counter()
                runs[name]()
                out[name].append(n_batches * BATCH / (time.perf_counter() - t))
    return out


def rotate(xs: list, k: int) -> list:
    k %= len(xs)
    return xs[k:] + xs[:k]


# --- 2. first batch --------------------------------------------------------------------


def first_batch(make, epochs: int) -> list[float]:
    stream = make()
    times = []
    try:
        for _ in range(epochs):
            t = time.perf_counter()
            it = stream.get_epoch_iterator()
            next(it)
            times.append(time.perf_counter() - t)
            for _ in it:
                pass
    finally:
        stream.close()
    return times


# --- 3. training epochs ----------------------------------------------------------------


class MLP:
    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.W1 = (rng.normal(size=(784, 256)) * 0.05).astype(np.float32)
        self.W2 = (rng.normal(size=(256, 10)) * 0.05).astype(np.float32)

    def step(self, x: np.ndarray, y: np.ndarray, lr: float = 0.01) -> float:
        h = np.maximum(x @ self.W1, 0)
        logits = h @ self.W2
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        loss = -np.log(p[np.arange(len(y)), y] + 1e-9).mean()
        g = p
        g[np.arange(len(y)), y] -= 1
        g /= len(y)
        gW2 = h.T @ g
        gh = (g @ self.W2.T) * (h > 0)
        gW1 = x.T @ gh
        self.W1 -= lr * gW1
        self.W2 -= lr * gW2
        return float(loss)


def epoch(stream) -> tuple[float, float, float, float]:
    """Wall seconds, main-thread CPU seconds, CPU seconds of the main process and its
    workers (all threads), and wall seconds spent waiting for batches, of one epoch."""
    mlp = MLP()
    tree, main, t = cpu_tree_s(os.getpid()), time.thread_time(), time.perf_counter()
    wait, it = 0.0, stream.get_epoch_iterator()
    while True:
        w = time.perf_counter()
        try:
            x, y = next(it)
        except StopIteration:
            break
        wait += time.perf_counter() - w
        mlp.step(x, y.astype(np.int64))
    wall, main = time.perf_counter() - t, time.thread_time() - main
    return wall, main, cpu_tree_s(os.getpid()) - tree, wait


class PythonHeavy(H5PYDataset):
    """A reader with Python work per example (a stand-in for decoding, parsing, augmenting)."""

    def get_data(self, state=None, request=None):
        x, y = super().get_data(state, request)
        for row in x:  # ~10 us of interpreted work per example, holding the GIL
            s = 0.0
            for v in row[:60].tolist():
                s += v * v
        return x, y


def compare(streams: dict, repeats: int) -> dict[str, list[tuple]]:
    for s in streams.values():
        epoch(s)  # start workers, warm caches and BLAS
    out: dict[str, list[tuple]] = {name: [] for name in streams}
    for k in range(repeats):
        for name in rotate(list(streams), k):
            out[name].append(epoch(streams[name]))
    for s in streams.values():
        s.close()
    return out


def report(out: dict, base: str) -> None:
    print(f"  {'':46s} {'wall s':22s} {'wall ratio':22s} {'main-thread CPU ratio':22s} "
          f"{'all-CPU ratio':22s} waiting for batches, s")
    for name, runs in out.items():
        cols = []
        for i in range(3):
            cols.append([r[i] / b[i] for r, b in zip(runs, out[base], strict=True)])
        wall, wait = [r[0] for r in runs], [r[3] for r in runs]
        print(f"  {name:46s} {summary(wall):22s} {summary(cols[0]):22s} {summary(cols[1]):22s} "
              f"{summary(cols[2]):22s} {summary(wait)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--blas-threads", default="1")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip (1-4)")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    n = 12000 if args.quick else 60000
    repeats = args.repeats or (3 if args.quick else 5)
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "bench.hdf5")
    rng = np.random.default_rng(0)
    x = rng.random((n, 784), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.uint8)
    write_hdf5(path, {"features": x, "targets": y}, splits={"train": (0, n)})
    print(f"# {n} x 784 float32 HDF5 ({os.path.getsize(path) / 2**20:.0f} MiB), batches of "
          f"{BATCH}, BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS')}, {os.cpu_count()} "
          f"CPUs, {load()}")
    scheme = ShuffledScheme(n, BATCH, seed=0)

    def h5(cls=H5PYDataset, **kw) -> DataStream:
        return DataStream(cls(path, ("train",), **kw), iteration_scheme=scheme)

    if "1" not in skip:
        got = reader_throughput(path, n, min(150, n // BATCH), repeats)
        print(f"reader, examples/s ({load()}):")
        for name, xs in got.items():
            ratios = [a / b for a, b in zip(xs, got["raw h5py"], strict=True)]
            print(f"  {name:18s} {summary(xs, fmt=',.0f')}  vs raw h5py {summary(ratios)}")

    if "2" not in skip:
        print(f"first batch, ms: epoch 1 | epochs 2-{repeats + 1} ({load()}):")
        for name, make in {
            "Prefetch(workers=1) thread": lambda: Prefetch(h5(), buffer_size=8),
            "Prefetch(workers=2, processes=True)": lambda: Prefetch(
                h5(), workers=2, processes=True, buffer_size=8),
        }.items():
            times = first_batch(make, repeats + 1)
            print(f"  {name:44s} {times[0] * 1e3:.1f} | {summary(times[1:], 1e3, '.1f')}")

    if "3" not in skip:
        memory = DataStream(IndexableDataset({"features": x, "targets": y}),
                            iteration_scheme=scheme)
        print(f"MLP epoch, s: median [min, max] of {repeats}, ratio to memory ({load()}):")
        report(compare({
            "memory": memory,
            "HDF5, no prefetch": h5(),
            "HDF5 + Prefetch(workers=1) thread": Prefetch(h5(), buffer_size=8),
            "HDF5 + Prefetch(workers=1, processes=True)": Prefetch(
                h5(), processes=True, buffer_size=8),
            "HDF5 + Prefetch(workers=2, processes=True)": Prefetch(
                h5(), workers=2, processes=True, buffer_size=8),
            "HDF5 memory_map=False + thread": Prefetch(h5(memory_map=False), buffer_size=8),
            "HDF5 memory_map=False + 2 processes": Prefetch(
                h5(memory_map=False), workers=2, processes=True, buffer_size=8),
        }, repeats), "memory")
        print(f"  ({load()})")
        print(f"MLP epoch, Python-heavy reader, ratio to memory ({load()}):")
        report(compare({
            "memory": memory,
            "Python reader + Prefetch(workers=1) thread": Prefetch(h5(PythonHeavy),
                                                                   buffer_size=8),
            "Python reader + Prefetch(workers=2, processes)": Prefetch(
                h5(PythonHeavy), workers=2, processes=True, buffer_size=8),
        }, repeats), "memory")
        print(f"  ({load()})")

    if "4" not in skip:
        last = 4 if args.quick else 10
        for name, stream in {
            "threads": Prefetch(h5(), workers=2, buffer_size=8),
            "processes": Prefetch(h5(), workers=2, processes=True, buffer_size=8),
        }.items():
            rss = {}
            for e in range(1, last + 1):
                it = stream.get_epoch_iterator()
                for _ in range(scheme.num_requests()):
                    next(it)
                rss[e] = rss_tree_kb(os.getpid())
            stream.close()
            print(f"memory, main + workers ({name}, 2 workers): epoch 2 {rss[2] / 1024:.0f} MiB, "
                  f"epoch {last} {rss[last] / 1024:.0f} MiB, growth "
                  f"{(rss[last] / rss[2] - 1) * 100:+.1f}%")
    os.remove(path)


if __name__ == "__main__":
    main()
