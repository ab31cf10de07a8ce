"""Beam search with and without the early stop, in one run.

An attention generator (vocabulary 32, a GRU of 128, attention over an
encoded source of 20 steps, batch 16, beam 5) searched for at most
``--max-length`` (200) steps, twice. Its first GRU unit is set to a clock
(``1 - 0.9^t``) that raises the ``eos`` logit by up to 50; with the readout
bias of ``eos`` at -38 every hypothesis ends after 10-20 steps, at -1e4 none
ever ends. For each case: the steps the early-stopping search runs
(counted on the host in a separate, untimed run) and the median time of
``--repeats`` searches after compilation with ``early_stop=True`` (a
``lax.while_loop``) and ``early_stop=False`` (the full ``lax.scan``), and
their ratio. Both searches return the same result (checked here too).

    python bench/bench_beam_search.py [--max-length 200] [--repeats 7]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from bricks.core import Constant, IsotropicGaussian
from bricks.recurrent import (
    BeamSearch,
    GatedRecurrent,
    LookupFeedback,
    Readout,
    SequenceContentAttention,
    SequenceGenerator,
    SoftmaxEmitter,
)

VOCAB, DIM, SOURCE_DIM, SOURCE_LENGTH, EOS = 32, 128, 64, 20, 0
G = "/sequencegenerator/att_trans/"


def build(eos_bias: float) -> SequenceGenerator:
    gen = SequenceGenerator(
        Readout(
            readout_dim=VOCAB,
            source_names=["states", "feedback", "weighted_averages"],
            emitter=SoftmaxEmitter(),
            feedback_brick=LookupFeedback(VOCAB, 32),
        ),
        GatedRecurrent(dim=DIM),
        attention=SequenceContentAttention(["states"], SOURCE_DIM, DIM),
        weights_init=IsotropicGaussian(0.1),
        biases_init=Constant(0.0),
    )
    gen.initialize(seed=0)
    p = {k: np.array(v) for k, v in gen.get_parameter_values().items()}
    # unit 0: inputs tanh(10) ~ 1, update gate 0.1, nothing else feeds it: h_t = 1 - 0.9^t
    for w in (
        "/sequencegenerator/fork/fork_inputs.W",
        "/sequencegenerator/fork/fork_gate_inputs.W",
        G + "distribute/fork_inputs.W",
        G + "distribute/fork_gate_inputs.W",
        G + "gatedrecurrent.state_to_state",
        G + "gatedrecurrent.state_to_gates",
    ):
        p[w][:, 0] = 0.0
    p["/sequencegenerator/fork/fork_inputs.b"][0] = 10.0
    p["/sequencegenerator/fork/fork_gate_inputs.b"][0] = np.log(0.1 / 0.9)
    p[G + "gatedrecurrent.initial_state"][0] = 0.0
    # the clock raises the eos logit by 50 h_t
    p["/sequencegenerator/readout/merge/transform_states.W"][0] = 0.0
    p["/sequencegenerator/readout/merge/transform_states.W"][0, EOS] = 50.0
    p["/sequencegenerator/readout/post_merge.b"][EOS] = eos_bias
    gen.set_parameter_values({k: jnp.asarray(v) for k, v in p.items()})
    return gen


def steps_run(gen: SequenceGenerator, beam: int, max_length: int, contexts: dict) -> int:
    """The steps the early-stopping search runs, counted by a host callback."""
    calls: list[int] = []
    original = gen.step_states

    def counted(outputs, *args):
        jax.debug.callback(lambda: calls.append(1))
        return original(outputs, *args)

    gen.step_states = counted
    try:
        BeamSearch(beam, gen).search(max_length, EOS, **contexts)
        jax.effects_barrier()
    finally:
        del gen.step_states
    return len(calls)


def median_ms(search: BeamSearch, max_length: int, contexts: dict, repeats: int) -> float:
    jax.block_until_ready(search.search(max_length, EOS, **contexts))  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(search.search(max_length, EOS, **contexts))
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-length", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--beam", type=int, default=5)
    args = parser.parse_args()

    print(f"jax {jax.__version__}, backend {jax.default_backend()}")
    print(
        f"vocab {VOCAB}, GRU {DIM}, attention over {SOURCE_LENGTH} steps, batch {args.batch}, "
        f"beam {args.beam}, max_length {args.max_length}, median of {args.repeats}"
    )
    state = np.random.RandomState(0)
    contexts = {
        "attended": jnp.asarray(state.randn(SOURCE_LENGTH, args.batch, SOURCE_DIM), jnp.float32),
        "attended_mask": jnp.ones((SOURCE_LENGTH, args.batch), jnp.float32),
    }
    # eos logit -38 + 50 (1 - 0.9^t): above the others' (~0) from step ~14 on
    for label, eos_bias in (("ends early", -38.0), ("never ends", -1e4)):
        gen = build(eos_bias)
        early = BeamSearch(args.beam, gen)
        full = BeamSearch(args.beam, gen, early_stop=False)
        same = all(
            np.array_equal(np.asarray(a), np.asarray(b))
            for a, b in zip(
                early.search(args.max_length, EOS, **contexts),
                full.search(args.max_length, EOS, **contexts),
                strict=True,
            )
        )
        steps = steps_run(gen, args.beam, args.max_length, contexts)
        t_early = median_ms(early, args.max_length, contexts, args.repeats)
        t_full = median_ms(full, args.max_length, contexts, args.repeats)
        print(
            f"{label}: {steps}/{args.max_length} steps run, early_stop=True {t_early:.2f} ms, "
            f"early_stop=False {t_full:.2f} ms, full/early {t_full / t_early:.2f}x, "
            f"identical results: {same}"
        )


if __name__ == "__main__":
    main()
