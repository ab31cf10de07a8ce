"""Cost of monitoring intermediates: a training step that also returns three
annotated intermediates (reduced to their means on device) against the same
step without them, and against a hand-written JAX step, in one run.

    python bench/bench_graph.py [--steps 200]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bricks.core import MLP, OUTPUT, Constant, IsotropicGaussian, Rectifier, Softmax
from bricks.core.cost import CategoricalCrossEntropy
from bricks.graph import ComputationGraph, VariableFilter


def build():
    mlp = MLP(
        [Rectifier(), Rectifier(), Softmax()],
        [784, 500, 500, 10],
        weights_init=IsotropicGaussian(0.01),
        biases_init=Constant(0.0),
    )
    mlp.initialize(seed=1)

    def cost(features, targets):
        return CategoricalCrossEntropy().apply(targets, mlp.apply(features))

    return ComputationGraph(cost, features=(None, 784), targets=((None,), "int32"))


def make_step(cg, extra):
    opt = optax.adam(1e-3)

    def loss(p, batch):
        (c,), ex = cg.evaluate(p, batch, extra=extra)
        # reduced on device into one array, as the training loop's
        # monitoring accumulators are
        return c, jnp.stack([e.mean() for e in ex]) if ex else jnp.zeros(0)

    @jax.jit
    def step(p, s, batch):
        (c, ex), g = jax.value_and_grad(loss, has_aux=True)(p, batch)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, c, ex

    return step, opt


def hand_written():
    opt = optax.adam(1e-3)
    k = jax.random.split(jax.random.key(1), 3)
    p = {
        "W0": 0.01 * jax.random.normal(k[0], (784, 500)),
        "b0": jnp.zeros(500),
        "W1": 0.01 * jax.random.normal(k[1], (500, 500)),
        "b1": jnp.zeros(500),
        "W2": 0.01 * jax.random.normal(k[2], (500, 10)),
        "b2": jnp.zeros(10),
    }

    def loss(p, batch):
        h = jax.nn.relu(batch["features"] @ p["W0"] + p["b0"][None])
        h = jax.nn.relu(h @ p["W1"] + p["b1"][None])
        logp = jax.nn.log_softmax(h @ p["W2"] + p["b2"][None])
        return -jnp.take_along_axis(logp, batch["targets"][:, None], 1).mean()

    @jax.jit
    def step(p, s, batch):
        c, g = jax.value_and_grad(loss)(p, batch)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, c, jnp.zeros(0)

    return step, p, opt.init(p)


def timeit(step, p, s, batches, steps):
    out = step(p, s, batches[0])
    jax.block_until_ready(out)
    t = time.perf_counter()
    for i in range(steps):
        p, s, c, ex = step(p, s, batches[i % len(batches)])
    jax.block_until_ready((p, c, ex))
    return (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.RandomState(0)
    batches = [
        {
            "features": jnp.asarray(rng.rand(128, 784), jnp.float32),
            "targets": jnp.asarray(rng.randint(0, 10, 128), jnp.int32),
        }
        for _ in range(8)
    ]
    cg = build()
    extra = VariableFilter(roles=[OUTPUT], name="output")(cg.variables)[1:4]
    plain, opt = make_step(cg, [])
    monitored, _ = make_step(cg, extra)
    hand, hp, hs = hand_written()
    p = cg.parameter_values()
    s = opt.init(p)
    res = {"plain": [], "monitored": [], "hand": []}
    for _ in range(args.repeats):  # interleave to share machine noise
        res["plain"].append(timeit(plain, p, s, batches, args.steps))
        res["monitored"].append(timeit(monitored, p, s, batches, args.steps))
        res["hand"].append(timeit(hand, hp, hs, batches, args.steps))
    best = {k: min(v) for k, v in res.items()}
    print(f"device: {jax.devices()[0].platform}, monitored: {[v.tag for v in extra]}")
    for k, v in best.items():
        print(f"{k:10s} {v * 1e3:8.3f} ms/step")
    print(f"monitored / plain      = {best['monitored'] / best['plain']:.3f}  (target <= 1.03)")
    print(f"plain / hand-written   = {best['plain'] / best['hand']:.3f}")


if __name__ == "__main__":
    main()
