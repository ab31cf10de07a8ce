"""``recurrent_dot(lhs, W, add=x)``: when ``x`` is the step's slice of a scanned
sequence that the step uses nowhere else, the fused backward takes the
product's cotangent from the sequence's own (no zero sequence, one stacked
cotangent instead of two); otherwise it falls back to the zero sequence. The
gradients equal ``jax.grad`` of the plain scan and finite differences either
way (masks, ``reverse``, ``remat``, custom bricks)."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.core import jaxprs_in_params
from jax.test_util import check_grads

from bricks.core import IsotropicGaussian, apply_with
from bricks.recurrent import LSTM, GatedRecurrent, SimpleRecurrent, recurrent, recurrent_dot
from tests.recurrent.test_fused_backward import (
    TOL,
    B,
    D,
    T,
    _assert_close,
    _grads,
    _inputs,
    _loss,
    _mask,
    _time_contractions,
)


def _zero_sequences(loss, params, features):
    """How many ``(T, B, features)`` zero sequences the gradient's program makes
    (the fused backward's stand-ins for the products' cotangents)."""
    text = str(jax.make_jaxpr(jax.grad(loss))(params))
    return len(re.findall(rf"f32\[{T},{B},{features}\] = broadcast_in_dim 0\.0", text))


def _backward_stacked(loss, params, features):
    """The number of ``(T, B, features)`` outputs of the last scan (the backward)."""
    jaxpr = jax.make_jaxpr(jax.grad(loss))(params).jaxpr
    scans = []

    def visit(jx):
        for eqn in jx.eqns:
            if eqn.primitive.name == "scan":
                scans.append(eqn)
            for sub in jaxprs_in_params(eqn.params):
                visit(sub)

    visit(jaxpr)
    return sum(v.aval.shape == (T, B, features) for v in scans[-1].outvars)


class _Old(SimpleRecurrent):
    """The sum written outside ``recurrent_dot``: the zero-sequence path."""

    @recurrent(sequences=["inputs", "mask"], states=["states"], outputs=["states"])
    def apply(self, inputs, states):
        return jnp.tanh(inputs + recurrent_dot(states, self.W))


class _Reused(SimpleRecurrent):
    """``add=inputs`` while the step also reads ``inputs`` elsewhere: the
    sequence's cotangent is not the product's, so the zero sequence is used."""

    @recurrent(sequences=["inputs", "mask"], states=["states"], outputs=["states"])
    def apply(self, inputs, states):
        return jnp.tanh(recurrent_dot(states, self.W, add=inputs)) + 0.5 * inputs


class _Computed(SimpleRecurrent):
    """``add`` computed in the step (not a scanned slice): the zero sequence."""

    @recurrent(sequences=["inputs", "mask"], states=["states"], outputs=["states"])
    def apply(self, inputs, states):
        return jnp.tanh(recurrent_dot(states, self.W, add=2.0 * inputs))


def _custom(cls):
    brick = cls(dim=D, weights_init=IsotropicGaussian(0.5), name="rnn")
    brick.initialize(seed=3)
    return brick, {k: v + 0.1 for k, v in brick.get_parameter_values().items()}


@pytest.mark.parametrize(
    ("make", "features", "zeros", "stacked"),
    [
        (lambda: _custom(SimpleRecurrent), D, 0, 1),
        (lambda: _custom(_Old), D, 1, 2),
        (lambda: _custom(_Reused), D, 1, 2),
        (lambda: _custom(_Computed), D, 1, 2),
        (lambda: _custom(LSTM), 4 * D, 0, 1),
        (lambda: _custom(GatedRecurrent), D, 0, 1),  # and 2 D for the gates
    ],
    ids=["simple", "sum-outside", "reused-input", "computed-add", "lstm", "gru"],
)
@pytest.mark.parametrize(
    "control",
    [{}, {"reverse": True}, {"remat": True, "fused_backward": True}],
    ids=["plain", "reverse", "remat"],
)
def test_add_of_a_scanned_slice_replaces_the_zero_sequence(make, features, zeros, stacked, control):
    brick, params = make()
    inputs = {**_inputs(brick), "mask": _mask()}
    fused = _loss(brick, inputs, **control)
    plain = _loss(brick, inputs, **{**control, "fused_backward": False})
    assert _time_contractions(fused, params) == (2 if isinstance(brick, GatedRecurrent) else 1)
    assert _zero_sequences(fused, params, features) == zeros
    assert _backward_stacked(fused, params, features) == stacked
    _assert_close(_grads(fused, params), _grads(plain, params))


@pytest.mark.parametrize("cls", [SimpleRecurrent, _Reused, _Computed])
def test_add_paths_match_finite_differences(cls):
    brick, params = _custom(cls)
    inputs = {**_inputs(brick), "mask": _mask()}
    loss = _loss(brick, inputs, reverse=True)
    check_grads(loss, (params,), order=1, modes=["rev"], eps=1e-2, atol=5e-2, rtol=5e-2)


def test_input_gradient_through_the_shared_cotangent():
    """The inputs' gradient (which now also carries the weight gradient) equals
    the plain scan's, and ``add`` gives the plain sum outside a scan."""
    brick, params = _custom(LSTM)
    x = _inputs(brick)["inputs"]
    mask = _mask()
    coef = np.random.default_rng(7).normal(size=(T, B, D)).astype(np.float32)

    def loss(p, x, fused):
        states, _ = apply_with(p, lambda: brick.apply(x, mask=mask, fused_backward=fused))
        return jnp.sum(states * coef)

    got = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)(params, x, True)
    want = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)(params, x, False)
    _assert_close(got[0], want[0])
    np.testing.assert_allclose(np.asarray(got[1]), np.asarray(want[1]), **TOL)
    h, w = jnp.ones((B, D)), jnp.full((D, 4 * D), 0.5)
    np.testing.assert_allclose(recurrent_dot(h, w, add=x[0]), x[0] + h @ w, rtol=1e-6)
