"""Benchmark of the data pipeline (not a test; ratios measured side by side in one run).

    python bench/bench_data.py            # full: 60000 x 784 float32, 10 epochs for memory
    python bench/bench_data.py --quick    # smaller, for a smoke run

1. Reader throughput: shuffled minibatches of 128 from a 60000x784 float32
   HDF5 file, ``DataStream(H5PYDataset)`` against raw h5py fancy indexing
   (sorted indices, as HDF5 requires) over the same requests. Target >= 0.9x.
2. Epoch time of a small numpy MLP (784-256-10, forward + backward + SGD) fed
   from HDF5 through ``Prefetch`` against the same fed from memory. Target <= 1.05x.
3. Resident memory of the main process plus its workers, epoch 2 against
   epoch 10 (HDF5 + Prefetch with worker processes). Target growth <= 5%.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

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


def rss_tree_kb(pid: int) -> int:
    """VmRSS of ``pid`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
        todo.extend(children.get(p, []))
    return total


def reader_throughput(path: str, n: int, n_batches: int, repeats: int) -> tuple[float, float]:
    scheme = ShuffledScheme(n, BATCH, seed=0)
    requests = list(scheme.get_request_iterator(0))[:n_batches]
    ds = H5PYDataset(path, ("train",), sources=("features",))
    best_raw = best_ours = 0.0
    with h5py.File(path, "r") as f:
        dset = f["features"]
        for _ in range(repeats):
            t = time.perf_counter()
            for r in requests:
                dset[np.sort(r)]
            best_raw = max(best_raw, n_batches * BATCH / (time.perf_counter() - t))
            handle = ds.open()
            t = time.perf_counter()
            for r in requests:
                ds.get_data(handle, r)
            best_ours = max(best_ours, n_batches * BATCH / (time.perf_counter() - t))
    return best_raw, best_ours


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


def epoch_time(stream, epoch_iters: int = 1) -> float:
    mlp = MLP()
    t = time.perf_counter()
    for _ in range(epoch_iters):
        for x, y in stream.get_epoch_iterator():
            mlp.step(x, y.astype(np.int64))
    return (time.perf_counter() - t) / epoch_iters


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    n = 12000 if args.quick else 60000
    mem_epochs = 4 if args.quick else 10
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "bench.hdf5")
    rng = np.random.default_rng(0)
    x = rng.random((n, 784), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.uint8)
    write_hdf5(path, {"features": x, "targets": y}, splits={"train": (0, n)})
    print(f"# {n} x 784 float32 HDF5 ({os.path.getsize(path) / 2**20:.0f} MiB), batches of {BATCH}")

    raw, ours = reader_throughput(path, n, min(150, n // BATCH), repeats=5)
    print(f"reader: raw h5py {raw:,.0f} ex/s, H5PYDataset {ours:,.0f} ex/s, ratio {ours / raw:.3f}")

    scheme = ShuffledScheme(n, BATCH, seed=0)
    memory = DataStream(IndexableDataset({"features": x, "targets": y}), iteration_scheme=scheme)
    hdf5 = Prefetch(DataStream(H5PYDataset(path, ("train",)), iteration_scheme=scheme),
                    workers=args.workers, processes=True, buffer_size=8)
    epoch_time(memory)  # warm up BLAS and the forkserver
    epoch_time(hdf5)
    t_mem, t_h5 = [], []
    for _ in range(2):
        t_mem.append(epoch_time(memory))
        t_h5.append(epoch_time(hdf5))
    print(f"MLP epoch: from memory {min(t_mem):.2f} s, from HDF5 + Prefetch(processes, "
          f"workers={args.workers}) {min(t_h5):.2f} s, ratio {min(t_h5) / min(t_mem):.3f}")

    stream = Prefetch(DataStream(H5PYDataset(path, ("train",)), iteration_scheme=scheme),
                      workers=2, processes=True, buffer_size=8)
    rss = {}
    for e in range(1, mem_epochs + 1):
        it = stream.get_epoch_iterator()
        for _ in range(scheme.num_requests()):
            next(it)
        rss[e] = rss_tree_kb(os.getpid())  # workers of this epoch still alive
        it.close()
    growth = rss[mem_epochs] / rss[2] - 1
    print(f"memory (main + workers): epoch 2 {rss[2] / 1024:.0f} MiB, epoch {mem_epochs} "
          f"{rss[mem_epochs] / 1024:.0f} MiB, growth {growth * 100:+.1f}%")
    os.remove(path)


if __name__ == "__main__":
    main()
