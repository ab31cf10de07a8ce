"""BeamSearch: costs are the model's NLL, beam 1 is greedy, the optimum is found."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bricks.core import IsotropicGaussian, apply_with
from bricks.core.tracing import Frame, Recorder, use_frame
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


# -- early stop: the while loop gives the full scan's result, in fewer steps --------------

EOS_BIAS = "/sequencegenerator/readout/post_merge.b"


def with_eos_bias(gen, eos, shift):
    """Make ``eos`` likelier (``shift > 0``: sequences end within a few steps) or
    practically impossible (``shift`` very negative: the search runs to the end)."""
    bias = np.asarray(gen.get_parameter_values()[EOS_BIAS]).copy()
    bias[eos] += shift
    gen.set_parameter_values({EOS_BIAS: jnp.asarray(bias)})
    return gen


def count_steps(gen, monkeypatch):
    """A host-side counter of the steps the compiled search runs."""
    calls = []
    original = gen.step_states

    def counted(outputs, *args):
        jax.debug.callback(lambda: calls.append(1))
        return original(outputs, *args)

    monkeypatch.setattr(gen, "step_states", counted)
    return calls


def both_searches(gen, beam_size, max_length, eos, calls, **kwargs):
    """The early-stopping and the full search agree; returns the result and the
    number of steps the early-stopping one ran."""
    calls.clear()
    early = BeamSearch(beam_size, gen).search(max_length, eos, **kwargs)
    jax.effects_barrier()
    steps = len(calls)
    full = BeamSearch(beam_size, gen, early_stop=False).search(max_length, eos, **kwargs)
    for name in ("outputs", "mask", "costs", "finished"):
        np.testing.assert_array_equal(
            np.asarray(getattr(early, name)), np.asarray(getattr(full, name)), err_msg=name
        )
    return early, steps


@pytest.mark.slow
@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize("beam_size", [1, 3, 7])
@pytest.mark.parametrize("shift", [4.0, 10.0, -40.0])
def test_early_stop_gives_the_full_search(attention, beam_size, shift, monkeypatch):
    # shift 10: every search stops within a few steps; 4: some stop, some run to the end;
    # -40: none ends. Beam 7 > vocab 5: some beams start with an infinite cost, and the
    # skipped steps must get what top_k gives them in the full scan (not eos / identity)
    max_length, eos = 9, 0
    state = np.random.RandomState(beam_size)
    steps = []
    for seed in range(3):
        gen = with_eos_bias(generator(5, attention=attention, seed=seed), eos, shift)
        calls = count_steps(gen, monkeypatch)
        if attention:
            attended = jnp.asarray(state.randn(4, 2, 2), jnp.float32)
            att_mask = jnp.asarray(np.arange(4)[:, None] < np.array([4, 2])[None], jnp.float32)
            result, ran = both_searches(
                gen, beam_size, max_length, eos, calls, attended=attended, attended_mask=att_mask
            )
        else:
            result, ran = both_searches(gen, beam_size, max_length, eos, calls, batch_size=3)
        steps.append(ran)
        if shift < 0:  # never ends: every step ran, nothing finished
            assert not np.asarray(result.finished).any()
            assert np.asarray(result.mask).all()
    if shift < 0:
        assert steps == [max_length] * 3
    elif shift > 5:
        assert max(steps) < max_length, steps


def test_early_stop_with_beams_of_infinite_cost(monkeypatch):
    # every symbol but eos forbidden: one hypothesis, and the other beams keep an
    # infinite cost; after the stop the full scan fills them with beam 0's forbidden
    # extensions (parent 0, symbols 1, 2), which the skipped steps must reproduce
    gen = generator(5, seed=0)
    bias = np.asarray(gen.get_parameter_values()[EOS_BIAS]).copy()
    bias[1:] = -np.inf
    gen.set_parameter_values({EOS_BIAS: jnp.asarray(bias)})
    calls = count_steps(gen, monkeypatch)
    result, steps = both_searches(gen, 3, 6, 0, calls, batch_size=2)
    assert steps == 2
    np.testing.assert_array_equal(np.asarray(result.outputs[-1, 0]), [0, 1, 2])
    np.testing.assert_array_equal(np.asarray(result.costs), [[0.0, np.inf, np.inf]] * 2)


def test_the_loop_stops_when_every_beam_is_finished(monkeypatch):
    max_length, eos = 40, 0
    gen = with_eos_bias(generator(5, seed=1), eos, 5.0)
    calls = count_steps(gen, monkeypatch)
    result = BeamSearch(3, gen).search(max_length, eos, batch_size=4)
    jax.effects_barrier()
    steps = len(calls)
    mask = np.asarray(result.mask)
    assert np.asarray(result.finished).all()
    assert 0 < steps < max_length
    # no returned hypothesis is longer than the steps run; everything later is eos
    assert mask.sum(axis=0).max() <= steps
    assert not mask[steps:].any() and (np.asarray(result.outputs[steps:]) == eos).all()

    calls.clear()
    BeamSearch(3, gen, early_stop=False).search(max_length, eos, batch_size=4)
    jax.effects_barrier()
    assert len(calls) == max_length

    # and when sequences never end, the loop runs to max_length
    gen = with_eos_bias(generator(5, seed=1), eos, -40.0)
    calls = count_steps(gen, monkeypatch)
    BeamSearch(3, gen).search(12, eos, batch_size=4)
    jax.effects_barrier()
    assert len(calls) == 12


def test_compiled_once_per_signature(monkeypatch):
    gen = with_eos_bias(generator(5, seed=2), 0, 3.0)
    search = BeamSearch(2, gen)
    traces = []
    original = search._search

    def traced(*args):
        traces.append(args[:3])
        return original(*args)

    monkeypatch.setattr(search, "_search", traced)
    for _ in range(3):
        search.search(8, 0, batch_size=2)
        search.search(8, 1, batch_size=2)
    assert traces == [(8, 0, 2), (8, 1, 2)]


def test_annotations_inside_the_loop_stay_inside_the_search():
    # a recorder tracing around the search sees none of the step's variables (their
    # values are tracers of the search's own jit)
    gen = generator(5, attention=True, seed=0)
    attended = jnp.asarray(RNG.randn(3, 2, 2), jnp.float32)
    for early_stop in (True, False):
        recorder = Recorder(requested={"anything"})
        with use_frame(Frame(recorder=recorder)):
            result = BeamSearch(2, gen, early_stop=early_stop).search(5, 0, attended=attended)
        assert result.outputs.shape == (5, 2, 2)
        assert recorder.variables == {} and recorder.collected == {}
