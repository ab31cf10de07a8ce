"""``LSTM(peepholes=False)`` (the plain cell) and ``learn_initial_states=False``
against a numpy reference; the defaults stay Blocks' equations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bricks.core import IsotropicGaussian, apply_with
from bricks.recurrent import LSTM, GatedRecurrent, SimpleRecurrent
from tests.recurrent.reference import lstm_step, numpy_params, run, sigmoid

T, B, D = 5, 3, 4


def _plain_lstm_step(x, h, c, p):
    """The cell of cuDNN/PyTorch/Keras, with Blocks' gate order (i, f, c, o)."""
    d = h.shape[-1]
    a = x + h @ p["W_state"]
    i, f, o = sigmoid(a[:, :d]), sigmoid(a[:, d : 2 * d]), sigmoid(a[:, 3 * d :])
    c_new = f * c + i * np.tanh(a[:, 2 * d : 3 * d])
    return o * np.tanh(c_new), c_new


def _initial(p):
    return [np.broadcast_to(p[name], (B, D)) for name in ("initial_state", "initial_cells")]


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(T, B, 4 * D)).astype(np.float32)
    mask = np.ones((T, B), np.float32)
    mask[3:, 1] = 0
    return x, mask


def _lstm(**kwargs):
    lstm = LSTM(dim=D, weights_init=IsotropicGaussian(0.5), name="lstm", **kwargs)
    lstm.initialize(seed=4)
    return lstm


@pytest.mark.parametrize("reverse", [False, True])
def test_plain_cell_matches_numpy(reverse):
    lstm = _lstm(peepholes=False)
    assert sorted(lstm.get_parameter_values()) == [
        "/lstm.W_state",
        "/lstm.initial_cells",
        "/lstm.initial_state",
    ]
    params = {k: v + 0.2 for k, v in lstm.get_parameter_values().items()}
    x, mask = _data()
    states, cells = apply_with(params, lambda: lstm.apply(x, mask=mask, reverse=reverse))
    p = {k: v + 0.2 for k, v in numpy_params(lstm).items()}
    init = _initial(p)
    ref = run(lambda xt, h, c: _plain_lstm_step(xt, h, c, p), [x], init, mask, reverse)
    np.testing.assert_allclose(np.asarray(states), ref[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(cells), ref[1], rtol=1e-5, atol=1e-6)


def test_default_keeps_blocks_peepholes():
    lstm = _lstm()
    assert lstm.peepholes and lstm.learn_initial_states
    assert {"/lstm.W_cell_to_in", "/lstm.W_cell_to_forget", "/lstm.W_cell_to_out"} <= set(
        lstm.get_parameter_values()
    )
    x, mask = _data(1)
    states, cells = lstm.apply(x, mask=mask)
    p = numpy_params(lstm)
    init = _initial(p)
    ref = run(lambda xt, h, c: lstm_step(xt, h, c, p), [x], init, mask)
    np.testing.assert_allclose(np.asarray(states), ref[0], rtol=1e-5, atol=1e-6)
    # the peepholes change the result: the plain cell is a different function
    plain = run(lambda xt, h, c: _plain_lstm_step(xt, h, c, p), [x], init, mask)
    assert not np.allclose(ref[0], plain[0], atol=1e-3)


@pytest.mark.parametrize(
    "make",
    [
        lambda: LSTM(dim=D, peepholes=False, learn_initial_states=False, name="lstm"),
        lambda: SimpleRecurrent(dim=D, learn_initial_states=False, name="lstm"),
        lambda: GatedRecurrent(dim=D, learn_initial_states=False, name="lstm"),
    ],
    ids=["lstm", "simple", "gru"],
)
def test_zero_initial_states_without_parameters(make):
    brick = make()
    brick.weights_init = IsotropicGaussian(0.5)
    brick.initialize(seed=0)
    assert not any("initial" in k for k in brick.get_parameter_values())
    initial = brick.initial_states(B)
    for value in initial if isinstance(initial, tuple) else (initial,):
        assert value.shape == (B, D)
        assert not np.any(np.asarray(value))
    names = [s for s in brick.apply.sequences if s != "mask"]
    inputs = {n: np.ones((T, B, brick.get_dim(n)), np.float32) for n in names}
    out = brick.apply(**inputs)
    first = out[0] if isinstance(out, tuple) else out
    assert first.shape == (T, B, D)


def test_plain_cell_trains_with_the_fused_backward():
    lstm = _lstm(peepholes=False, learn_initial_states=False)
    params = lstm.get_parameter_values()
    x, mask = _data(2)

    def loss(p, fused):
        states, _ = apply_with(p, lambda: lstm.apply(x, mask=mask, fused_backward=fused))
        return jnp.sum(jnp.sin(states))

    fused = jax.grad(loss)(params, True)
    plain = jax.grad(loss)(params, False)
    np.testing.assert_allclose(fused["/lstm.W_state"], plain["/lstm.W_state"], rtol=2e-4, atol=1e-6)
