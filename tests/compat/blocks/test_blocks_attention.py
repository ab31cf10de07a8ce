"""Blocks' tests/bricks/test_attention.py, in bricks' idiom.

The frozen sums of the original depend on Blocks' random initial weights;
here the same quantities are checked against a numpy loop of Blocks'
equations on bricks' parameters.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from bricks.core import Constant, Identity, IsotropicGaussian, Selector
from bricks.graph import ComputationGraph
from bricks.recurrent import AttentionRecurrent, SequenceContentAttention, SimpleRecurrent

F32 = np.float32


def _attention():
    attention = SequenceContentAttention(
        state_names=["states"],
        state_dims=[2],
        attended_dim=3,
        match_dim=4,
        weights_init=IsotropicGaussian(0.5),
        biases_init=Constant(0),
    )
    attention.initialize()
    return attention


@pytest.mark.slow
@pytest.mark.ported("tests/bricks/test_attention.py::test_sequence_content_attention")
def test_sequence_content_attention():
    rng = np.random.RandomState([2014, 12, 2])
    seq_len, batch_size, state_dim, attended_dim = 5, 6, 2, 3
    attention = _attention()
    seq_values = np.zeros((seq_len, batch_size, attended_dim), dtype=F32)
    states_values = np.zeros((batch_size, state_dim), dtype=F32)
    mask_values = np.zeros((seq_len, batch_size), dtype=F32)
    for idx in range(batch_size):
        mask_values[: rng.randint(1, seq_len), idx] = 1
    glimpses, weights = attention.take_glimpses(
        seq_values, attended_mask=mask_values, states=states_values
    )
    glimpses, weights = np.asarray(glimpses), np.asarray(weights)
    assert glimpses.ndim == 2 and weights.ndim == 2
    assert glimpses.shape == (batch_size, attended_dim)
    assert weights.shape == (batch_size, seq_len)
    assert np.all(weights >= 0)
    assert np.all(weights <= 1)
    assert_allclose(weights.sum(axis=1), 1, rtol=1e-6)
    assert np.all((weights.T == 0) == (mask_values == 0))


def _np_params(brick):
    return {
        k.split("/", 2)[-1]: np.asarray(v, np.float64)
        for k, v in brick.get_parameter_values().items()
    }


def _np_glimpse(p, attended, mask, h):
    a = "sequencecontentattention/"
    match = attended @ p[a + "preprocess.W"] + p[a + "preprocess.b"]
    match = match + (h @ p[a + "state_trans/transform_states.W"])[None]
    energies = (np.tanh(match) @ p[a + "energy_comp.W"])[..., 0]
    e = np.where(mask > 0, energies, -np.inf)
    w = np.exp(e - e.max(axis=0, keepdims=True)) * mask
    w = w / w.sum(axis=0, keepdims=True)
    return (w[..., None] * attended).sum(axis=0), w.T


@pytest.mark.slow
@pytest.mark.ported("tests/bricks/test_attention.py::test_attention_recurrent")
def test_attention_recurrent():
    rng = np.random.RandomState(1234)
    dim, batch_size, input_length = 5, 4, 20
    attended_dim, attended_length = 10, 15

    wrapped = SimpleRecurrent(dim, Identity())
    attention = SequenceContentAttention(
        state_names=wrapped.apply.states, attended_dim=attended_dim, match_dim=attended_dim
    )
    recurrent = AttentionRecurrent(wrapped, attention, seed=1234)
    recurrent.weights_init = IsotropicGaussian(0.5)
    recurrent.biases_init = Constant(0)
    recurrent.initialize()

    def rand(size):
        return rng.uniform(size=size).astype(F32)

    def generate_mask(length, batch_size):
        mask = np.ones((length, batch_size), dtype=F32)
        for i in range(batch_size):
            mask[1 + rng.randint(0, length - 1) :, i] = 0.0
        return mask

    input_vals = rand((input_length, batch_size, dim))
    input_mask_vals = generate_mask(input_length, batch_size)
    attended_vals = rand((attended_length, batch_size, attended_dim))
    attended_mask_vals = generate_mask(attended_length, batch_size)

    def apply(inputs, inputs_mask, attended, attended_mask):
        return recurrent.apply(
            inputs=inputs, mask=inputs_mask, attended=attended, attended_mask=attended_mask
        )

    cg = ComputationGraph(
        apply,
        inputs=(None, None, dim),
        inputs_mask=(None, None),
        attended=(None, None, attended_dim),
        attended_mask=(None, None),
    )
    assert [len(v.shape) for v in cg.outputs] == [3, 3, 3]
    states, glimpses, weights = (
        np.asarray(v)
        for v in cg(
            inputs=input_vals,
            inputs_mask=input_mask_vals,
            attended=attended_vals,
            attended_mask=attended_mask_vals,
        )
    )
    assert states.shape == (input_length, batch_size, dim)
    assert glimpses.shape == (input_length, batch_size, attended_dim)
    assert len(cg.parameters) == len(Selector(recurrent).get_parameters())

    # weights for not masked position must be zero
    assert np.all(weights * (1 - attended_mask_vals.T) == 0)
    # weights for masked positions must be non-zero
    assert np.all(abs(weights + (1 - attended_mask_vals.T)) > 1e-5)
    # weights from different steps should be noticeably different
    assert (abs(weights[0] - weights[1])).sum() > 1e-2
    # weights for all state after the last masked position should be same
    for i in range(batch_size):
        last = int(input_mask_vals[:, i].sum())
        for j in range(last, input_length):
            assert_allclose(weights[last, i], weights[j, i], 1e-5)
    assert_allclose(weights.sum(), input_length * batch_size, 1e-5)

    # the frozen sums of Blocks: a numpy loop of the same equations instead
    p = _np_params(recurrent)
    h = np.zeros((batch_size, dim))
    g = np.zeros((batch_size, attended_dim))
    for t in range(input_length):
        new_g, _ = _np_glimpse(p, attended_vals, attended_mask_vals, h)
        x = input_vals[t] + new_g @ p["distribute/fork_inputs.W"] + p["distribute/fork_inputs.b"]
        new_h = x + h @ p["simplerecurrent.W"]  # Identity activation
        m = input_mask_vals[t][:, None]
        h, g = m * new_h + (1 - m) * h, m * new_g + (1 - m) * g
        assert_allclose(states[t], h, rtol=1e-4, atol=1e-5)
        assert_allclose(glimpses[t], g, rtol=1e-4, atol=1e-5)


@pytest.mark.ported("tests/bricks/test_attention.py::test_compute_weights_with_zero_mask")
def test_compute_weights_with_zero_mask():
    attention = _attention()
    energies = np.random.RandomState(1).rand(5, 6).astype(F32)
    mask = np.zeros((5, 6), F32)
    weights = np.asarray(attention.compute_weights(energies, mask))
    assert np.all(np.isfinite(weights))


@pytest.mark.ported("tests/bricks/test_attention.py::test_stable_attention_weights")
def test_stable_attention_weights():
    attention = _attention()
    energies = (50.0 * np.random.RandomState(2).randn(5, 6) + 800).astype(F32)
    mask = np.ones((5, 6), F32)
    weights = np.asarray(attention.compute_weights(energies, mask))
    assert np.all(np.isfinite(weights))
