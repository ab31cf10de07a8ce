"""``recurrent_dot(lhs, W, add=x)``: when ``x`` is the step's slice of a scanned
sequence that the step uses nowhere else, the fused backward takes the
product's cotangent from the sequence's own (no zero sequence, one stacked
cotangent instead of two); otherwise it falls back to the zero sequence. The
gradients equal ``jax.grad`` of the plain scan and finite differences either
way (masks, ``reverse``, ``remat``, custom bricks). LSTM's cell recomputes
``cells'`` and ``tanh(cells')`` in the backward instead of storing them."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.core import jaxprs_in_params

from bricks.core import IsotropicGaussian, apply_with
from bricks.recurrent import LSTM, GatedRecurrent, SimpleRecurrent, recurrent, recurrent_dot
from bricks.recurrent._lstm_cell import _forward as _lstm_forward
from bricks.recurrent._lstm_cell import _fwd as _lstm_fwd
from bricks.recurrent._lstm_cell import lstm_cell
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
    check_finite_differences,
)


def _structure(loss, params, features):
    """Of the gradient's program: the matrix products over time and batch, the
    ``(T, B, features)`` zero sequences it makes (the fused backward's
    stand-ins for the products' cotangents) and the ``(T, B, features)``
    outputs of its last scan (the backward)."""
    closed = jax.make_jaxpr(jax.grad(loss))(params)
    text = str(closed)
    zeros = len(re.findall(rf"f32\[{T},{B},{features}\] = broadcast_in_dim 0\.0", text))
    contractions = text.count("dimension_numbers=(([0, 1], [0, 1]), ([], []))")
    scans = []

    def visit(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "scan":
                scans.append(eqn)
            for sub in jaxprs_in_params(eqn.params):
                visit(sub)

    visit(closed.jaxpr)
    stacked = sum(v.aval.shape == (T, B, features) for v in scans[-1].outvars)
    return contractions, zeros, stacked


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


_CONTROLS = [{}, {"reverse": True}, {"remat": True, "fused_backward": True}]


@pytest.mark.parametrize(
    ("cls", "features", "zeros", "stacked"),
    [
        (SimpleRecurrent, D, 0, 1),
        (_Old, D, 1, 2),
        (_Reused, D, 1, 2),
        (_Computed, D, 1, 2),
        (LSTM, 4 * D, 0, 1),
        (GatedRecurrent, D, 0, 1),  # and 2 D for the gates
    ],
    ids=["simple", "sum-outside", "reused-input", "computed-add", "lstm", "gru"],
)
@pytest.mark.parametrize("control", _CONTROLS, ids=["plain", "reverse", "remat"])
def test_add_of_a_scanned_slice_replaces_the_zero_sequence(cls, features, zeros, stacked, control):
    brick, params = _custom(cls)
    inputs = {**_inputs(brick), "mask": _mask()}
    products = 2 if cls is GatedRecurrent else 1
    got = _structure(_loss(brick, inputs, **control), params, features)
    assert got == (products, zeros, stacked)


@pytest.mark.parametrize("cls", [_Old, _Reused, _Computed])
@pytest.mark.parametrize("control", _CONTROLS, ids=["plain", "reverse", "remat"])
def test_zero_sequence_paths_equal_the_plain_scan_gradient(cls, control):
    """(LSTM, GRU and SimpleRecurrent, which take the cotangent from their
    inputs, are compared in ``test_fused_backward.py``.)"""
    brick, params = _custom(cls)
    inputs = {**_inputs(brick), "mask": _mask()}
    fused = _loss(brick, inputs, **control)
    plain = _loss(brick, inputs, **{**control, "fused_backward": False})
    _assert_close(_grads(fused, params), _grads(plain, params))


@pytest.mark.slow
@pytest.mark.parametrize("cls", [_Reused, _Computed])
def test_zero_sequence_paths_match_finite_differences(cls):
    check_finite_differences(*_custom(cls))


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


@pytest.mark.parametrize("peepholes", [False, True], ids=["plain", "peepholes"])
def test_lstm_cell_stores_only_the_gates_and_the_cells(peepholes):
    """``cells'`` and ``tanh(cells')`` are recomputed in the backward, not kept:
    five ``(batch, dim)`` residuals per step (and the peepholes), and the same
    cotangents as JAX's gradient of the equations."""
    rng = np.random.default_rng(0)
    act = jnp.asarray(rng.normal(size=(B, 4 * D)), jnp.float32)
    cells = jnp.asarray(rng.normal(size=(B, D)), jnp.float32)
    peeps = tuple(jnp.asarray(rng.normal(size=(D,)), jnp.float32) for _ in range(3))
    peeps = peeps if peepholes else ()
    _, residuals = _lstm_fwd(act, cells, peeps)
    shapes = [leaf.shape for leaf in jax.tree_util.tree_leaves(residuals)]
    assert shapes == [(B, D)] * 5 + [(D,)] * len(peeps)
    cotangents = tuple(jnp.asarray(rng.normal(size=(B, D)), jnp.float32) for _ in range(2))
    _, pull = jax.vjp(lstm_cell, act, cells, peeps)
    _, pull_jax = jax.vjp(lambda *a: _lstm_forward(*a)[0], act, cells, peeps)
    for got, want in zip(
        jax.tree_util.tree_leaves(pull(cotangents)),
        jax.tree_util.tree_leaves(pull_jax(cotangents)),
        strict=True,
    ):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), **TOL)
