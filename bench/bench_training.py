"""The training loop's host overhead: MainLoop against a hand-written JAX step (issue 21).

The floor is what a user writes by hand: a jitted, donated ``optax.adam``
step over the same MLP math, fed by fancy-indexing the in-memory arrays
with a shuffled order, nothing read back during the epoch. bricks runs as
its docs show: a :class:`~bricks.data.DataStream` over an
:class:`~bricks.data.IndexableDataset` with a ``ShuffledScheme``, a
``ComputationGraph`` cost, ``GradientDescent`` and ``MainLoop``.

Workloads (ratios are bricks' steps/s over the floor's; above 1 is faster):

* ``tiny``: 784-16-16-10, batch 16, ``TrainingDataMonitoring(["cost"],
  after_batch=True)`` (per-batch monitoring): exposes per-step host work;
  the target is a per-step time at most 1.3x the floor's (ratio >= 0.77).
* ``mlp``: 784-500-500-10, batch 128, per-batch monitoring at K=1 (target
  ratio >= 0.97), and ``steps_per_call=16`` with the monitor every 16
  batches (target >= 1.0) and every batch (each step's values kept on the
  device and read back 64 at a time).

Each MainLoop epoch is preceded by one floor epoch in the same process
(interleaved), the first pair (compilation) is dropped, and the ratio of
each adjacent pair is reported as the median and range over the
repetitions, with wall-clock and process CPU seconds, and ``os.getloadavg``.

    python bench/bench_training.py [--train 12800] [--repeats 5] [--only tiny|mlp]
    python bench/bench_training.py --step-alone [--repeats 21]   # the MLP step without the loop
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bricks.algorithms import GradientDescent, compiled_step
from bricks.core import MLP, Constant, IsotropicGaussian, Rectifier, Softmax
from bricks.core.cost import CategoricalCrossEntropy
from bricks.data import DataStream, IndexableDataset, ShuffledScheme
from bricks.extensions import FinishAfter, TrainingDataMonitoring, TrainingExtension
from bricks.graph import ComputationGraph
from bricks.main_loop import MainLoop


def build(dims):
    mlp = MLP(
        [Rectifier() for _ in dims[2:]] + [Softmax()],
        dims,
        weights_init=IsotropicGaussian(0.01),
        biases_init=Constant(0.0),
    )
    mlp.initialize(seed=1)

    def cost(features, targets):
        return CategoricalCrossEntropy().apply(targets, mlp.apply(features))

    return ComputationGraph(cost, features=(None, dims[0]), targets=((None,), "int32"))


def data(n, dim, seed=0):
    rng = np.random.RandomState(seed)
    return {
        "features": rng.rand(n, dim).astype(np.float32),
        "targets": rng.randint(0, 10, n).astype(np.int32),
    }


def hand_written(cg, n_layers, arrays, batch, prepared=None):
    """The same model written directly in JAX; returns ``epoch()``, one epoch of steps
    (over ``prepared`` batches as they are, if given)."""
    paths = [(f"/mlp/linear_{i}.W", f"/mlp/linear_{i}.b") for i in range(n_layers)]
    opt = optax.adam(1e-3)

    def loss(params, x, y):
        h = x
        for i, (w, b) in enumerate(paths):
            h = h @ params[w] + params[b][None]
            h = jax.nn.relu(h) if i < n_layers - 1 else jax.nn.softmax(h, axis=-1)
        return -jnp.mean(jnp.log(jnp.take_along_axis(h, y[:, None], axis=1)[:, 0]))

    def step(params, state, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    step = jax.jit(step, donate_argnums=(0, 1))
    params = {k: jnp.array(v, copy=True) for k, v in cg.parameter_values().items()}
    carry = {"params": params, "opt": opt.init(params), "epoch": 0}
    x, y = arrays["features"], arrays["targets"]

    def epoch():
        p, s = carry["params"], carry["opt"]
        if prepared is not None:
            for b in prepared:
                p, s, _ = step(p, s, b["features"], b["targets"])
        else:
            order = np.random.default_rng([1, carry["epoch"]]).permutation(len(x))
            for i in range(0, len(order), batch):
                idx = order[i : i + batch]
                p, s, _ = step(p, s, x[idx], y[idx])
        jax.block_until_ready(p)
        carry.update(params=p, opt=s, epoch=carry["epoch"] + 1)

    return epoch


def _clocks():
    return time.perf_counter(), time.process_time()


class Interleave(TrainingExtension):
    """Before each MainLoop epoch, one floor epoch; times both (wall, CPU)."""

    def __init__(self, floor):
        super().__init__("interleave")
        self.floor = floor
        self.pairs = []  # (floor wall, floor cpu, bricks wall, bricks cpu, load)
        self._start = None

    def before_epoch(self):
        w, c = _clocks()
        self.floor()
        w2, c2 = _clocks()
        self._floor = (w2 - w, c2 - c)
        self._start = _clocks()

    def after_epoch(self):
        jax.block_until_ready(self.main_loop.algorithm.current_parameters())
        w, c = _clocks()
        self.pairs.append(
            (*self._floor, w - self._start[0], c - self._start[1], os.getloadavg()[0])
        )


def run_bricks(cg, arrays, batch, repeats, floor, every=1, steps_per_call=1):
    n = len(arrays["targets"])
    stream = DataStream(IndexableDataset(arrays), iteration_scheme=ShuffledScheme(n, batch, seed=1))
    interleave = Interleave(floor)
    monitor = (
        TrainingDataMonitoring(["cost"], after_batch=True)
        if every == 1
        else TrainingDataMonitoring(["cost"], every_n_batches=every)
    )
    algorithm = GradientDescent(cost=cg, step_rule=optax.adam(1e-3))
    loop = MainLoop(
        algorithm,
        stream,
        model=cg,
        steps_per_call=steps_per_call,
        extensions=[interleave, monitor, FinishAfter(after_n_epochs=1 + repeats)],
    )
    loop.run()
    expected = 1 if n // batch % steps_per_call == 0 else 2  # + the masked short chunk
    if algorithm.compilations != expected:
        raise RuntimeError(f"{algorithm.compilations} compilations, expected {expected}")
    if not all("train_cost" in loop.log[i] for i in range(every, n // batch, every)):
        raise RuntimeError("the monitored cost is missing from log rows")
    return interleave.pairs[1:]


def report(label, pairs, steps, target):
    ratio = np.array([fw / bw for fw, _, bw, _, _ in pairs])  # steps/s over the floor's
    cpu = np.array([fc / bc for _, fc, _, bc, _ in pairs])
    per_step = np.array([bw / fw for fw, _, bw, _, _ in pairs])
    fw = np.median([p[0] for p in pairs]) / steps * 1e6
    bw = np.median([p[2] for p in pairs]) / steps * 1e6
    load = [p[4] for p in pairs]
    verdict = [
        f"{what} {'meets' if np.median(r) >= target else 'MISSES'}"
        for what, r in (("wall", ratio), ("CPU", cpu))
    ]
    print(
        f"  {label:34s} steps/s ratio {np.median(ratio):.3f} "
        f"[{ratio.min():.3f}, {ratio.max():.3f}] (per-step {np.median(per_step):.2f}x), "
        f"CPU-time ratio {np.median(cpu):.3f} [{cpu.min():.3f}, {cpu.max():.3f}]; "
        f"floor {fw:.0f} us/step, bricks {bw:.0f} us/step; "
        f"load {min(load):.1f}-{max(load):.1f}; target >= {target:.3g}"
        f"{f' (<= {1 / target:.3g}x per step)' if target < 1 else ''}: {', '.join(verdict)}"
    )


def bench(name, dims, batch, args, runs):
    cg = build(dims)
    arrays = data(args.train, dims[0])
    steps = -(-args.train // batch)
    print(
        f"[{name}] {dims} batch {batch}, {steps} steps/epoch, {args.repeats} interleaved "
        f"repetitions, device {jax.devices()[0].platform}"
    )
    for label, every, k, target in runs:
        floor = hand_written(cg, len(dims) - 1, arrays, batch)
        floor()  # compile
        pairs = run_bricks(cg, arrays, batch, args.repeats, floor, every, k)
        report(label, pairs, steps, target)


def step_alone(args):
    """The compiled step without the loop: ``process_batch`` over prepared batches
    against the floor's jitted step over the same batches, and the same bricks step with the guard's
    decision patched to "always take the step" (a reference for what the guard
    costs; the check and the selects then fold away)."""
    dims, batch = [784, 500, 500, 10], 128
    cg = build(dims)
    arrays = data(args.train, dims[0])
    x, y = arrays["features"], arrays["targets"]
    order = np.random.default_rng(0).permutation(len(x))
    batches = [
        {"features": x[order[i : i + batch]], "targets": y[order[i : i + batch]]}
        for i in range(0, len(x) - batch + 1, batch)
    ]
    floor = hand_written(cg, len(dims) - 1, arrays, batch, prepared=batches)

    def bricks(guard):
        real = compiled_step.decide
        if not guard:
            compiled_step.decide = lambda state, finite, *a: (
                jnp.bool_(True),
                state["counters"],
                state["params"],
            )
        try:
            algorithm = GradientDescent(cost=cg, step_rule=optax.adam(1e-3))
            algorithm.initialize()
            algorithm.process_batch(batches[0])  # compiles
        finally:
            compiled_step.decide = real

        def run():
            for b in batches:
                algorithm.process_batch(b)
            jax.block_until_ready(algorithm._state)

        return run

    cases = {"floor": floor, "bricks": bricks(True), "bricks, guard patched out": bricks(False)}
    floor()
    times = {k: [] for k in cases}
    for _ in range(args.repeats):
        for name, run in cases.items():
            w, c = _clocks()
            run()
            w2, c2 = _clocks()
            times[name].append((w2 - w, c2 - c))
    steps = len(batches)
    print(
        f"[step alone] {dims} batch {batch}, {args.repeats} interleaved rounds of "
        f"{steps} steps, load {os.getloadavg()[0]:.1f}"
    )
    for name, t in times.items():
        wall = np.array([floor_t[0] / w for floor_t, (w, _) in zip(times["floor"], t, strict=True)])
        cpu = np.array([floor_t[1] / c for floor_t, (_, c) in zip(times["floor"], t, strict=True)])
        per_step = np.median([w for w, _ in t]) / steps * 1e6
        print(
            f"  {name:26s} {per_step:6.0f} us/step; steps/s ratio to the floor "
            f"{np.median(wall):.3f} [{wall.min():.3f}, {wall.max():.3f}], "
            f"CPU-time ratio {np.median(cpu):.3f}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=12800)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=["tiny", "mlp"], default=None)
    parser.add_argument(
        "--step-alone",
        action="store_true",
        help="the MLP's compiled step without the loop (and with the guard patched out)",
    )
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    if args.step_alone:
        step_alone(args)
        return
    if args.only in (None, "tiny"):
        bench(
            "tiny",
            [784, 16, 16, 10],
            16,
            args,
            [
                ("K=1, monitor every batch", 1, 1, 1 / 1.3),
                ("K=16, monitor every batch", 1, 16, 1 / 1.3),
            ],
        )
    if args.only in (None, "mlp"):
        bench(
            "mlp",
            [784, 500, 500, 10],
            128,
            args,
            [
                ("K=1, monitor every batch", 1, 1, 0.97),
                ("K=16, monitor every 16 batches", 16, 16, 1.0),
                ("K=16, monitor every batch", 1, 16, 1.0),
            ],
        )


if __name__ == "__main__":
    main()
