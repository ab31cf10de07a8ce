"""BeamSearch: costs are the model's NLL, beam 1 is greedy, the optimum is found."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from bricks.core import IsotropicGaussian, apply_with
from bricks.recurrent import (
    BeamSearch,
    GatedRecurrent,
    LookupFeedback,
    Readout,
    SequenceContentAttention,
    SequenceGenerator,
    SimpleRecurrent,
    SoftmaxEmitter,
)

RNG = np.random.RandomState(4)


def generator(vocab, attention=False, scale=1.5, seed=0):
    readout = Readout(
        readout_dim=vocab,
        source_names=["states", "weighted_averages"] if attention else ["states"],
        emitter=SoftmaxEmitter(),
        feedback_brick=LookupFeedback(vocab, 3),
    )
    if attention:
        gen = SequenceGenerator(
            readout,
            GatedRecurrent(dim=4),
            attention=SequenceContentAttention(["states"], 2, 3),
            weights_init=IsotropicGaussian(scale),
            biases_init=IsotropicGaussian(scale),
        )
    else:
        gen = SequenceGenerator(
            readout,
            SimpleRecurrent(dim=4),
            weights_init=IsotropicGaussian(scale),
            biases_init=IsotropicGaussian(scale),
        )
    gen.initialize(seed=seed)
    return gen


def nll(gen, outputs, mask, **contexts):
    """Sum of the masked cost_matrix per sequence, for (T, B, K) beams."""
    T, B, K = outputs.shape
    flat = {n: jnp.repeat(c, K, axis=1) for n, c in contexts.items()}
    f = jax.jit(lambda p, y, m, c: apply_with(p, gen.cost_matrix, y, m, **c))
    costs = f(gen.get_parameter_values(), outputs.reshape(T, B * K), mask.reshape(T, B * K), flat)
    return np.asarray(costs).sum(0).reshape(B, K)


def test_costs_are_the_negative_log_likelihood_with_attention():
    gen = generator(5, attention=True)
    attended = jnp.asarray(RNG.randn(3, 2, 2), jnp.float32)
    att_mask = jnp.asarray([[1, 1], [1, 1], [1, 0]], jnp.float32)
    result = BeamSearch(4, gen).search(
        max_length=6, eos=0, attended=attended, attended_mask=att_mask
    )
    assert result.outputs.shape == (6, 2, 4) and result.costs.shape == (2, 4)
    costs = np.asarray(result.costs)
    assert np.all(np.isfinite(costs))
    np.testing.assert_allclose(
        costs,
        nll(gen, result.outputs, result.mask, attended=attended, attended_mask=att_mask),
        rtol=1e-4,
        atol=1e-4,
    )
    finished = np.asarray(result.finished)
    for b in range(2):  # finished first, each group in ascending cost
        order = np.lexsort((costs[b], ~finished[b]))
        np.testing.assert_array_equal(order, np.arange(4))


def test_beam_size_one_is_greedy_decoding():
    gen = generator(5, seed=3)
    result = BeamSearch(1, gen).search(max_length=7, eos=0, batch_size=3)
    greedy = gen.generate(7, 3, greedy=True, eos=0)
    np.testing.assert_array_equal(
        np.asarray(result.outputs[:, :, 0]), np.asarray(greedy["outputs"])
    )
    np.testing.assert_array_equal(np.asarray(result.mask[:, :, 0]), np.asarray(greedy["mask"]))
    np.testing.assert_allclose(
        np.asarray(result.costs[:, 0]), np.asarray(greedy["costs"]).sum(0), rtol=1e-5
    )


def test_finds_the_optimum_of_a_tiny_model():
    vocab, length = 3, 3
    gen = generator(vocab, scale=2.0, seed=7)
    # every distinct sequence: eos (0) ends it, later steps are eos and masked
    seqs = []
    for seq in itertools.product(range(vocab), repeat=length):
        end = seq.index(0) if 0 in seq else length
        if all(s == 0 for s in seq[end:]):
            seqs.append((seq, [1.0] * min(end + 1, length) + [0.0] * (length - end - 1)))
    outputs = jnp.asarray(np.array([s for s, _ in seqs]).T[:, None, :], jnp.int32)
    mask = jnp.asarray(np.array([m for _, m in seqs]).T[:, None, :], jnp.float32)
    all_costs = nll(gen, outputs, mask)[0]
    finished = np.array([0 in s for s, _ in seqs])
    best = int(np.argmin(np.where(finished, all_costs, np.inf)))

    # beam_size = vocab ** (length - 1) makes this search exhaustive
    result = BeamSearch(vocab ** (length - 1), gen).search(max_length=length, eos=0, batch_size=1)
    assert bool(result.finished[0, 0])
    np.testing.assert_array_equal(np.asarray(result.outputs[:, 0, 0]), seqs[best][0])
    np.testing.assert_allclose(float(result.costs[0, 0]), all_costs[best], rtol=1e-5)
    # and a beam of 2 returns the two best finished hypotheses it kept, in order
    small = BeamSearch(2, gen).search(max_length=length, eos=0, batch_size=1)
    assert float(small.costs[0, 0]) >= all_costs[best] - 1e-5
