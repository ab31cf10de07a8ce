"""Cost of the non-finite guard and of bricks reading through to the training state.

One process, one model (MLP 784-500-500-10, batch 128, Adam as a Blocks rule),
the measurements interleaved in blocks so machine load hits them alike:

* ``guard``: steps with the finiteness check the compiled step makes of the
  cost and of every updated parameter, against the same steps compiled with
  the check replaced by ``True`` (patched for this measurement only), and
  the check timed alone as a jitted function of the same arrays;
* ``skip``: steps with ``RemoveNotFinite`` (skip whole) against steps without
  it (freeze and stop) — the same work plus the rule's own check;
* ``read``: steps followed by an eager ``brick.W`` read (the first read after a
  step copies the parameter mapping once, on the device) against steps
  nobody reads after. Steps nobody reads after copy nothing.

Wall-clock ratios on a shared machine are noisy; the bytes XLA's cost
analysis counts for each compiled step (``bytes``) are exact.

    python bench/bench_live_values.py [--steps 50] [--repeats 5] [--dims 784,500,500,10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from bricks.algorithms import (
    Adam,
    CompositeRule,
    GradientDescent,
    RemoveNotFinite,
    compiled_step,
    non_finite,
)
from bricks.algorithms.non_finite import all_finite
from bricks.core import MLP, Constant, IsotropicGaussian, Rectifier, Softmax
from bricks.core.cost import CategoricalCrossEntropy
from bricks.graph import ComputationGraph


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

    cg = ComputationGraph(cost, features=(None, dims[0]), targets=((None,), "int32"))
    return mlp, cg


def bytes_accessed(algorithm, batch):
    """What XLA's cost analysis counts as bytes read and written by one compiled step."""
    algorithm.initialize()
    if algorithm._step_fn is None:
        algorithm._compile()
    lowered = algorithm._step_fn.lower(
        algorithm._state, algorithm._inputs(batch), algorithm._base_key
    )
    cost = lowered.compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["bytes accessed"])


def timed(fn, steps):
    start = time.perf_counter()
    fn(steps)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dims", default="784,500,500,10")
    args = parser.parse_args()
    dims = [int(d) for d in args.dims.split(",")]
    rng = np.random.RandomState(0)
    batch = {
        "features": rng.rand(args.batch, dims[0]).astype(np.float32),
        "targets": rng.randint(0, dims[-1], args.batch).astype(np.int32),
    }
    mlp, cg = build(dims)
    freeze = GradientDescent(cost=cg, step_rule=Adam(1e-3))
    skip = GradientDescent(cost=cg, step_rule=CompositeRule([Adam(1e-3), RemoveNotFinite()]))
    unguarded = GradientDescent(cost=cg, step_rule=Adam(1e-3))
    reader = GradientDescent(cost=cg, step_rule=Adam(1e-3))  # binds the bricks last
    check = jax.jit(lambda params: all_finite(params.values()))

    def run(algorithm, read=False):
        def go(steps):
            for _ in range(steps):
                algorithm.process_batch(batch)
                if read:
                    _ = mlp.children[0].W
            jax.block_until_ready(algorithm.current_parameters())

        return go

    def guard(steps):
        params = reader.current_parameters()
        for _ in range(steps):
            out = check(params)
        out.block_until_ready()

    real = non_finite.all_finite
    # compiled without the check: both places that call it (after the step rule,
    # and the early select of a large state in compiled_step)
    non_finite.all_finite = compiled_step.all_finite = lambda arrays: jnp.bool_(True)
    try:
        unguarded.process_batch(batch)
        unguarded_bytes = bytes_accessed(unguarded, batch)
    finally:
        non_finite.all_finite = compiled_step.all_finite = real
    sizes = {"unguarded": unguarded_bytes}
    sizes.update({"freeze": bytes_accessed(freeze, batch), "skip": bytes_accessed(skip, batch)})
    for name, size in sizes.items():
        print(f"bytes {name:10s} {size / 1e6:8.2f} MB ({size / unguarded_bytes:.3f}x unguarded)")
    cases = {
        "unguarded": run(unguarded),
        "freeze": run(freeze),
        "skip": run(skip),
        "no read": run(reader),
        "read": run(reader, read=True),
        "guard alone": guard,
    }
    for fn in cases.values():  # compile
        fn(2)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            times[name].append(timed(fn, args.steps))
    median = {name: statistics.median(t) for name, t in times.items()}
    for name, t in median.items():
        print(f"{name:12s} {t * 1e3:8.3f} ms/step  (min {min(times[name]) * 1e3:.3f})")
    print(f"freeze / unguarded    {median['freeze'] / median['unguarded']:.3f}")
    print(f"guard alone / step    {median['guard alone'] / median['freeze']:.3f}")
    print(f"skip / freeze         {median['skip'] / median['freeze']:.3f}")
    print(f"read / no read        {median['read'] / median['no read']:.3f}")


if __name__ == "__main__":
    main()
