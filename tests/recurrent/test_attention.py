"""SequenceContentAttention and AttentionRecurrent against numpy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bricks.core import Constant, IsotropicGaussian
from bricks.errors import AttentionError
from bricks.recurrent import (
    AttentionRecurrent,
    SequenceContentAttention,
    SimpleRecurrent,
    masked_softmax,
)

RNG = np.random.RandomState(0)


def np_weights(energies, mask):
    e = np.where(mask > 0, energies, -np.inf)
    e = e - e.max(axis=0, keepdims=True)
    w = np.exp(e) * mask
    return w / w.sum(axis=0, keepdims=True)


def make_attention(state_dims=(3,), attended_dim=4, match_dim=5):
    names = ["states", "cells"][: len(state_dims)]
    att = SequenceContentAttention(
        names,
        attended_dim,
        match_dim,
        state_dims=list(state_dims),
        weights_init=IsotropicGaussian(0.5),
        biases_init=IsotropicGaussian(0.5),
    )
    att.initialize(seed=3)
    return att


def np_params(brick):
    return {
        k.split("/", 2)[-1]: np.asarray(v, np.float64)
        for k, v in brick.get_parameter_values().items()
    }


def np_glimpse(p, attended, mask, states, prefix=""):
    match = attended @ p[prefix + "preprocess.W"] + p[prefix + "preprocess.b"]
    for name, s in states.items():
        match = match + (s @ p[f"{prefix}state_trans/transform_{name}.W"])[None]
    energies = (np.tanh(match) @ p[prefix + "energy_comp.W"])[..., 0]
    w = np_weights(energies, mask)
    return (w[..., None] * attended).sum(axis=0), w.T


def test_weights_match_numpy_and_honour_mask():
    energies = RNG.randn(6, 3).astype(np.float32)
    mask = (RNG.rand(6, 3) > 0.3).astype(np.float32)
    mask[0] = 1
    w = np.asarray(masked_softmax(energies, mask))
    np.testing.assert_allclose(w, np_weights(energies, mask), rtol=1e-5, atol=1e-7)
    assert np.all(w[mask == 0] == 0)
    np.testing.assert_allclose(w.sum(axis=0), 1, rtol=1e-6)


def test_glimpses_match_numpy():
    att = make_attention(state_dims=(3, 2))
    attended = RNG.randn(7, 2, 4).astype(np.float32)
    mask = np.ones((7, 2), np.float32)
    mask[5:, 1] = 0
    states = {
        "states": RNG.randn(2, 3).astype(np.float32),
        "cells": RNG.randn(2, 2).astype(np.float32),
    }
    glimpse, weights = att.take_glimpses(
        jnp.asarray(attended),
        attended_mask=jnp.asarray(mask),
        **{k: jnp.asarray(v) for k, v in states.items()},
    )
    ref_g, ref_w = np_glimpse(np_params(att), attended, mask, states)
    np.testing.assert_allclose(np.asarray(weights), ref_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(glimpse), ref_g, rtol=1e-4, atol=1e-5)
    assert np.all(np.asarray(weights)[1, 5:] == 0)


@pytest.mark.parametrize("scale", [1e30, 3e38])
def test_extreme_energies_and_empty_masks_stay_finite(scale):
    energies = jnp.asarray(RNG.choice([-1.0, 1.0], size=(5, 4)) * scale, jnp.float32)
    mask = jnp.asarray(np.array([[1, 0, 1, 1]] * 5, np.float32))
    w = masked_softmax(energies, mask)
    assert np.all(np.isfinite(np.asarray(w)))
    assert np.all(np.asarray(w)[:, 1] == 0)  # an all-zero mask column gives zero weights
    np.testing.assert_allclose(np.asarray(w).sum(axis=0), [1, 0, 1, 1], rtol=1e-6)

    def loss(e, m):
        return jnp.sum(masked_softmax(e, m) * jnp.arange(5.0)[:, None])

    for m in (mask, jnp.zeros((5, 4))):
        grad = jax.grad(loss)(energies, m)
        assert np.all(np.isfinite(np.asarray(grad)))


def test_glimpse_gradients_finite_for_all_zero_mask():
    att = make_attention()
    params = att.get_parameter_values()
    from bricks.core import apply_with

    def loss(p, attended):
        g, w = apply_with(
            p,
            att.take_glimpses,
            attended,
            attended_mask=jnp.zeros((4, 2)),
            states=1e15 * jnp.ones((2, 3)),
        )
        return jnp.sum(g) + jnp.sum(w)

    attended = jnp.asarray(RNG.randn(4, 2, 4), jnp.float32)
    value, grads = jax.value_and_grad(loss)(params, attended)
    assert value == 0
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads.values())


def attention_recurrent(transition):
    """``transition`` reading 4-d attended sequences through a match space of 5, initialized."""
    rec = AttentionRecurrent(
        transition,
        SequenceContentAttention(["states"], attended_dim=4, match_dim=5),
        weights_init=IsotropicGaussian(0.5),
        biases_init=Constant(0.1),
    )
    rec.initialize(seed=1)
    return rec


def test_attention_recurrent_matches_numpy_loop():
    rec = attention_recurrent(SimpleRecurrent(dim=3))
    T, S, B = 5, 6, 2
    inputs = RNG.randn(T, B, 3).astype(np.float32)
    attended = RNG.randn(S, B, 4).astype(np.float32)
    att_mask = np.ones((S, B), np.float32)
    att_mask[4:, 0] = 0
    mask = np.ones((T, B), np.float32)
    mask[3:, 1] = 0
    states, glimpses, weights = rec.apply(
        inputs=jnp.asarray(inputs),
        mask=jnp.asarray(mask),
        attended=jnp.asarray(attended),
        attended_mask=jnp.asarray(att_mask),
    )

    p = {
        k.split("/", 2)[-1]: np.asarray(v, np.float64)
        for k, v in rec.get_parameter_values().items()
    }
    h = np.zeros((B, 3))
    g = np.zeros((B, 4))
    wts = np.zeros((B, S))
    for t in range(T):
        new_g, new_w = np_glimpse(
            p, attended, att_mask, {"states": h}, prefix="sequencecontentattention/"
        )
        x = inputs[t] + new_g @ p["distribute/fork_inputs.W"] + p["distribute/fork_inputs.b"]
        new_h = np.tanh(x + h @ p["simplerecurrent.W"])
        m = mask[t][:, None]
        h, g, wts = (m * new_h + (1 - m) * h, m * new_g + (1 - m) * g, m * new_w + (1 - m) * wts)
        np.testing.assert_allclose(np.asarray(states[t]), h, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(glimpses[t]), g, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(weights[t]), wts, rtol=1e-4, atol=1e-5)


def test_missing_attended_is_a_named_error():
    rec = attention_recurrent(SimpleRecurrent(dim=3))
    with pytest.raises(AttentionError, match="attended"):
        rec.apply(inputs=jnp.ones((2, 1, 3)))


def test_attention_reads_a_subset_of_the_states_of_an_lstm():
    from bricks.recurrent import LSTM

    rec = attention_recurrent(LSTM(dim=3))
    out = rec.apply(inputs=jnp.ones((2, 1, 12)), attended=jnp.ones((3, 1, 4)))
    assert rec.apply.outputs == ["states", "cells", "weighted_averages", "weights"]
    assert [o.shape for o in out] == [(2, 1, 3), (2, 1, 3), (2, 1, 4), (2, 1, 3)]
