"""Cost of the training loop: MainLoop + extensions against a hand-written JAX+optax loop.

Both loops run in this process over the same pre-batched numpy data with the
same optax transform (``optax.adam(1e-3)``), the same MLP math and the same
validation pass at each epoch end. Reported as ratios (MainLoop / hand-written).

* ``big``:  784-500-500-10, batch 128; MainLoop with Printing, ProgressBar,
  TrainingDataMonitoring after every batch and DataStreamMonitoring every epoch.
* ``tiny``: 784-16-16-10, batch 16, to expose per-step host overhead; the same
  extensions, then with the monitor every 16 batches and ``steps_per_call=16``.

The hand-written loop has two variants: ``async`` never reads anything back
during the epoch; ``sync`` reads the loss every batch, as a loop that monitors
every batch must.

    python bench/bench_training.py [--train 12800] [--valid 2560] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bricks.algorithms import GradientDescent
from bricks.core import MLP, Constant, IsotropicGaussian, Rectifier, Softmax
from bricks.core.cost import CategoricalCrossEntropy
from bricks.extensions import (
    DataStreamMonitoring,
    FinishAfter,
    Printing,
    ProgressBar,
    TrainingDataMonitoring,
    TrainingExtension,
)
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


def batches(n, batch, dim, seed):
    rng = np.random.RandomState(seed)
    x = rng.rand(n, dim).astype(np.float32)
    y = rng.randint(0, 10, n).astype(np.int32)
    return [{"features": x[i : i + batch], "targets": y[i : i + batch]} for i in range(0, n, batch)]


def hand_written(cg, n_layers):
    """The same model written directly in JAX: a jitted, donated optax step."""
    paths = [(f"/mlp/linear_{i}.W", f"/mlp/linear_{i}.b") for i in range(n_layers)]
    opt = optax.adam(1e-3)

    def forward(params, x):
        h = x
        for i, (w, b) in enumerate(paths):
            h = h @ params[w] + params[b][None]
            h = jax.nn.relu(h) if i < n_layers - 1 else jax.nn.softmax(h, axis=-1)
        return h

    def loss(params, x, y):
        probs = forward(params, x)
        return -jnp.mean(jnp.log(jnp.take_along_axis(probs, y[:, None], axis=1)[:, 0]))

    @jax.jit
    def evaluate(params, x, y):
        return loss(params, x, y)

    def step(params, state, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    step = jax.jit(step, donate_argnums=(0, 1))

    def run(train, valid, sync):
        params = {k: jnp.array(v, copy=True) for k, v in cg.parameter_values().items()}
        state = opt.init(params)
        for b in train:
            params, state, value = step(params, state, b["features"], b["targets"])
            if sync:
                float(value)
        total = 0.0
        for b in valid:
            total = total + evaluate(params, b["features"], b["targets"]) * len(b["targets"])
        float(total)
        jax.block_until_ready(params)

    return run


class EpochClock(TrainingExtension):
    """Wall-clock time of each full epoch (training, monitoring, validation)."""

    def __init__(self):
        super().__init__()
        self.marks = []

    def before_epoch(self):
        self.marks.append(time.perf_counter())

    def after_training(self):
        jax.block_until_ready(self.main_loop.algorithm.current_parameters())
        self.marks.append(time.perf_counter())


def main_loop_time(cg, train, valid, repeats, every=1, steps_per_call=1):
    """Best epoch time over ``repeats`` epochs after a first (compiling) one."""
    clock = EpochClock()
    algorithm = GradientDescent(cost=cg, step_rule=optax.adam(1e-3))
    loop = MainLoop(
        algorithm,
        train,
        model=cg,
        steps_per_call=steps_per_call,
        extensions=[
            Printing(file=io.StringIO()),
            ProgressBar(file=io.StringIO()),
            TrainingDataMonitoring(["cost"], every_n_batches=every),
            DataStreamMonitoring(["cost"], valid, after_epoch=True),
            FinishAfter(after_n_epochs=1 + repeats),
            clock,
        ],
    )
    loop.run()
    assert algorithm.compilations <= (1 if steps_per_call == 1 else 2)
    return min(np.diff(clock.marks)[1:])


def timed(fn, repeats):
    fn()  # compile and warm up (the hand-written functions are jitted once)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench(name, dims, batch, args):
    cg = build(dims)
    train = batches(args.train, batch, dims[0], 0)
    valid = batches(args.valid, batch, dims[0], 1)
    hand = hand_written(cg, len(dims) - 1)
    t_async = timed(lambda: hand(train, valid, sync=False), args.repeats)
    t_sync = timed(lambda: hand(train, valid, sync=True), args.repeats)
    t_loop = main_loop_time(cg, train, valid, args.repeats)
    n = len(train)
    print(f"[{name}] {dims} batch {batch}, {n} steps/epoch, device {jax.devices()[0].platform}")
    print(f"  hand-written async : {t_async:.3f} s ({1e6 * t_async / n:.0f} us/step)")
    print(f"  hand-written sync  : {t_sync:.3f} s ({1e6 * t_sync / n:.0f} us/step)")
    print(
        f"  MainLoop K=1       : {t_loop:.3f} s ({1e6 * t_loop / n:.0f} us/step)"
        f"  ratio vs async {t_loop / t_async:.3f}, vs sync {t_loop / t_sync:.3f}"
    )
    if name == "tiny":
        k = 16
        t_k = main_loop_time(cg, train, valid, args.repeats, every=k, steps_per_call=k)
        print(
            f"  MainLoop K={k} (monitor every {k}) : {t_k:.3f} s ({1e6 * t_k / n:.0f} us/step)"
            f"  ratio vs async {t_k / t_async:.3f}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=12800)
    parser.add_argument("--valid", type=int, default=2560)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["big", "tiny"], default=None)
    args = parser.parse_args()
    if args.only in (None, "big"):
        bench("big", [784, 500, 500, 10], 128, args)
    if args.only in (None, "tiny"):
        bench("tiny", [784, 16, 16, 10], 16, args)


if __name__ == "__main__":
    main()
