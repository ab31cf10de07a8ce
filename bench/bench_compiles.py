"""Compiled programs and first-epoch time: padding to each batch's longest sequence
versus pow2 length buckets with a full-size (PadBatch) ragged last batch (issue 21).

One epoch of a masked recurrent model (embedding, SimpleRecurrent, linear
read-out) over sequences of random lengths; each variant runs in a fresh
process (no compiled program is shared), the variants interleaved::

    python bench/bench_compiles.py --repeats 3

Prints, per run, the step programs compiled (``GradientDescent.compilations``),
the epoch's wall time and the process CPU time, then the median [range] per
variant and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def child(variant: str, n: int, batch: int, low: int, high: int) -> dict:
    import jax.numpy as jnp
    import numpy as np

    from bricks.algorithms import GradientDescent, Scale, example_mean
    from bricks.core import Constant, IsotropicGaussian, Linear, LookupTable, Orthogonal, Tanh
    from bricks.data import (
        Batch,
        ConstantScheme,
        DataStream,
        IterableDataset,
        PadBatch,
        Padding,
        TimeMajor,
    )
    from bricks.graph import ComputationGraph
    from bricks.recurrent import SimpleRecurrent

    rng = np.random.RandomState(0)
    words = [rng.randint(1, 50, size=rng.randint(low, high + 1)) for _ in range(n)]
    init = {"weights_init": IsotropicGaussian(0.1), "biases_init": Constant(0.0)}
    embed = LookupTable(50, 64, name="embed", **init)
    rnn = SimpleRecurrent(dim=64, activation=Tanh(), weights_init=Orthogonal(), name="rnn")
    out = Linear(64, 1, name="out", **init)
    for i, brick in enumerate((embed, rnn, out)):
        brick.initialize(seed=i)

    def per_sequence(words, words_mask):
        y = out.apply(rnn.apply(embed.apply(words), mask=words_mask))[..., 0]
        return jnp.sum((y - 0.3) ** 2 * words_mask, axis=0)

    # PadBatch's batches all have one size: declared, so the (time, batch) sequences
    # and the (batch,) example mask agree on it in the graph
    size = batch if variant == "bucketed" else None
    seq = {"words": ((None, size), jnp.int32), "words_mask": (None, size)}
    stream = Batch(DataStream(IterableDataset({"words": words})), ConstantScheme(batch))
    if variant == "bucketed":
        stream = TimeMajor(Padding(PadBatch(stream), mask_sources=["words"], buckets="pow2"))
        graph = ComputationGraph(
            lambda words, words_mask, example_mask: example_mean(
                per_sequence(words, words_mask), example_mask
            ),
            **seq,
            example_mask=(batch,),
        )
    else:
        stream = TimeMajor(Padding(stream))
        graph = ComputationGraph(
            lambda words, words_mask: per_sequence(words, words_mask).mean(), **seq
        )
    algorithm = GradientDescent(cost=graph, step_rule=Scale(0.01))
    batches = list(stream.get_epoch_iterator(as_dict=True))  # the data is not timed
    wall, cpu = time.perf_counter(), time.process_time()
    for b in batches:
        algorithm.process_batch(b)
    algorithm.parameter_values()  # waits for the last step
    return {
        "variant": variant,
        "programs": algorithm.compilations,
        "shapes": len({b["words"].shape for b in batches}),
        "epoch_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=203, help="sequences (203: a ragged last batch)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--low", type=int, default=3)
    parser.add_argument("--high", type=int, default=40)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = (args.n, args.batch, args.low, args.high)
    if args.child:
        print(json.dumps(child(args.child, *sizes)))
        return
    runs: dict[str, list[dict]] = {"exact": [], "bucketed": []}
    for _ in range(args.repeats):
        for variant in runs:
            load = os.getloadavg()[0]
            cmd = [sys.executable, __file__, "--child", variant, "--n", str(args.n)]
            cmd += ["--batch", str(args.batch), "--low", str(args.low), "--high", str(args.high)]
            result = json.loads(subprocess.check_output(cmd, text=True).strip().splitlines()[-1])
            result["load"] = round(load, 1)
            runs[variant].append(result)
            print(json.dumps(result), flush=True)
    for key in ("epoch_s", "cpu_s"):
        med = {v: statistics.median(r[key] for r in rs) for v, rs in runs.items()}
        spans = {v: (min(r[key] for r in rs), max(r[key] for r in rs)) for v, rs in runs.items()}
        print(
            f"{key}: exact {med['exact']:.1f} [{spans['exact'][0]:.1f}-{spans['exact'][1]:.1f}], "
            f"bucketed {med['bucketed']:.1f} [{spans['bucketed'][0]:.1f}-"
            f"{spans['bucketed'][1]:.1f}], exact/bucketed {med['exact'] / med['bucketed']:.2f}"
        )


if __name__ == "__main__":
    main()
