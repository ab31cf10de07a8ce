"""The hand-written backward of the LSTM cell (``lstm_cell``) against JAX's
gradient of the same equations and finite differences; LSTM uses it only in
reverse mode, with the default activations and no graph intervention on them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from bricks.core import IsotropicGaussian, Logistic, Rectifier, apply_with
from bricks.graph import ComputationGraph
from bricks.recurrent import LSTM
from bricks.recurrent import _architectures as architectures
from bricks.recurrent._lstm_cell import _forward, lstm_cell
from tests.recurrent.reference import lstm_step

B, D = 3, 4


def _args(peepholes, seed=0):
    rng = np.random.default_rng(seed)
    act = jnp.asarray(rng.normal(size=(B, 4 * D)), jnp.float32)
    cells = jnp.asarray(rng.normal(size=(B, D)), jnp.float32)
    peeps = tuple(jnp.asarray(rng.normal(size=(D,)), jnp.float32) for _ in range(3))
    return act, cells, peeps if peepholes else ()


@pytest.mark.parametrize("peepholes", [True, False])
def test_cell_vjp_matches_autodiff_and_finite_differences(peepholes):
    act, cells, peeps = _args(peepholes)
    cot = _args(True, seed=1)[1], _args(True, seed=2)[1]  # cotangents of (states, cells)
    out, pull = jax.vjp(lstm_cell, act, cells, peeps)
    ref_out, ref_pull = jax.vjp(lambda *a: _forward(*a)[0], act, cells, peeps)
    for mine, ref in zip(out, ref_out, strict=True):
        np.testing.assert_allclose(mine, ref, rtol=1e-6)
    for mine, ref in zip(
        jax.tree_util.tree_leaves(pull(cot)), jax.tree_util.tree_leaves(ref_pull(cot)), strict=True
    ):
        np.testing.assert_allclose(mine, ref, rtol=1e-5, atol=1e-6)
    check_grads(lstm_cell, (act, cells, peeps), order=1, modes=["rev"], eps=1e-2, rtol=2e-2)


def test_cell_equals_numpy_blocks_equations():
    act, cells, peeps = _args(True)
    p = {
        "W_state": np.zeros((D, 4 * D)),
        "W_cell_to_in": np.asarray(peeps[0], np.float64),
        "W_cell_to_forget": np.asarray(peeps[1], np.float64),
        "W_cell_to_out": np.asarray(peeps[2], np.float64),
    }
    ref = lstm_step(np.asarray(act, np.float64), np.zeros((B, D)), np.asarray(cells), p)
    out = lstm_cell(act, cells, peeps)
    for mine, r in zip(out, ref, strict=True):
        np.testing.assert_allclose(mine, r, rtol=1e-5, atol=1e-6)


def _uses_cell(lstm, params, x, graph=None, call=None):
    """Whether tracing the gradient calls ``lstm_cell`` (counted by a spy)."""
    calls = []

    def spy(*args):
        calls.append(1)
        return lstm_cell(*args)

    def loss(p):
        if graph is not None:
            return graph.evaluate(p, {"inputs": x})[0][0]
        return jnp.sum(apply_with(p, call or (lambda: lstm.apply(x)))[0])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(architectures, "lstm_cell", spy)
        jax.make_jaxpr(jax.grad(loss))(params)
    return bool(calls)


def test_lstm_uses_the_cell_only_where_it_may():
    lstm = LSTM(dim=D, weights_init=IsotropicGaussian(0.5), name="lstm")
    lstm.initialize(seed=0)
    params = lstm.get_parameter_values()
    x = np.ones((5, B, 4 * D), np.float32)
    assert _uses_cell(lstm, params, x)
    lstm.fused_backward = False
    assert not _uses_cell(lstm, params, x)
    lstm.fused_backward = True
    plain = _uses_cell(lstm, params, x, call=lambda: lstm.apply(x, fused_backward=False))
    assert not plain

    def cost(inputs):
        return jnp.sum(lstm.apply(inputs)[0])

    cg = ComputationGraph(cost, inputs=(5, B, 4 * D))
    assert _uses_cell(lstm, params, x, cg)
    gates = [v for v in cg.variables if v.brick is lstm.gate_activation]
    assert gates, "the gate activations stay visible to the graph"
    noisy = cg.replace({gates[0]: lambda g: g * 0.5})
    assert not _uses_cell(lstm, params, x, noisy)

    relu = LSTM(dim=D, activation=Rectifier(), gate_activation=Logistic(), name="lstm")
    relu.weights_init = IsotropicGaussian(0.5)
    relu.initialize(seed=0)
    assert not _uses_cell(relu, relu.get_parameter_values(), x)
