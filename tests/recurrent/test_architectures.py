"""SimpleRecurrent, LSTM and GatedRecurrent against hand-written numpy loops."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from bricks.core import IsotropicGaussian, Orthogonal, Tanh
from bricks.recurrent import LSTM, GatedRecurrent, SimpleRecurrent
from tests.recurrent.reference import gru_step, lstm_step, numpy_params, run, simple_step

T, B, D = 5, 3, 4
RTOL, ATOL = 1e-5, 1e-5


def _mask():
    mask = np.ones((T, B), np.float32)
    mask[3:, 0] = 0  # right padding
    mask[1, 1] = 0  # a hole
    mask[4, 2] = 0
    return mask


def _brick(kind):
    if kind == "simple":
        brick = SimpleRecurrent(dim=D, activation=Tanh(), weights_init=Orthogonal(), name="rnn")
    elif kind == "lstm":
        brick = LSTM(dim=D, weights_init=IsotropicGaussian(0.5), name="lstm")
    else:
        brick = GatedRecurrent(dim=D, weights_init=IsotropicGaussian(0.5), name="gru")
    brick.initialize(seed=3)
    # Non-zero learned initial states, so that using them is checked too.
    values = {}
    for path, v in brick.get_parameter_values().items():
        if path.endswith((".initial_state", ".initial_cells")):
            values[path] = np.linspace(-0.5, 0.5, v.size).reshape(v.shape)
    brick.set_parameter_values(values)
    return brick


def _inputs(kind, rng, steps=T):
    if kind == "simple":
        return [rng.normal(size=(steps, B, D)).astype(np.float32)]
    if kind == "lstm":
        return [rng.normal(size=(steps, B, 4 * D)).astype(np.float32)]
    return [
        rng.normal(size=(steps, B, D)).astype(np.float32),
        rng.normal(size=(steps, B, 2 * D)).astype(np.float32),
    ]


def _reference(kind, brick, seqs, mask=None, reverse=False, init=None):
    p = numpy_params(brick)
    if init is None:
        init = [np.broadcast_to(p["initial_state"], (B, D))]
        if kind == "lstm":
            init.append(np.broadcast_to(p["initial_cells"], (B, D)))
    seqs = [s.astype(np.float64) for s in seqs]
    step = {
        "simple": lambda x, h: simple_step(x, h, p),
        "lstm": lambda x, h, c: lstm_step(x, h, c, p),
        "gru": lambda x, g, h: gru_step(x, g, h, p),
    }[kind]
    return run(step, seqs, init, mask=mask, reverse=reverse)


def _as_list(out):
    return list(out) if isinstance(out, tuple) else [out]


KINDS = ["simple", "lstm", "gru"]


@pytest.mark.parametrize("kind", KINDS)
def test_single_step_matches_numpy(kind):
    brick = _brick(kind)
    rng = np.random.default_rng(0)
    seqs = [s[0] for s in _inputs(kind, rng)]
    states = [rng.normal(size=(B, D)).astype(np.float32)]
    if kind == "lstm":
        states.append(rng.normal(size=(B, D)).astype(np.float32))
    names = brick.apply.states
    out = _as_list(brick.apply(*seqs, iterate=False, **dict(zip(names, states, strict=True))))
    expected = _reference(kind, brick, [s[None] for s in seqs], init=states)
    for got, want in zip(out, expected, strict=True):
        np.testing.assert_allclose(got, want[0], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("masked", [False, True])
def test_many_steps_match_numpy(kind, masked):
    brick = _brick(kind)
    seqs = _inputs(kind, np.random.default_rng(1))
    mask = _mask() if masked else None
    out = _as_list(brick.apply(*seqs, mask=mask))
    expected = _reference(kind, brick, seqs, mask=mask)
    for got, want in zip(out, expected, strict=True):
        assert got.shape == (T, B, D)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kind", KINDS)
def test_reverse_matches_numpy_and_flipped_input(kind):
    brick = _brick(kind)
    seqs = _inputs(kind, np.random.default_rng(2))
    mask = _mask()
    out = _as_list(brick.apply(*seqs, mask=mask, reverse=True))
    expected = _reference(kind, brick, seqs, mask=mask, reverse=True)
    flipped = _as_list(brick.apply(*[s[::-1] for s in seqs], mask=mask[::-1]))
    for got, want, flip in zip(out, expected, flipped, strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(got, np.asarray(flip)[::-1], rtol=RTOL, atol=ATOL)


def test_bool_mask_equals_float_mask_and_masked_step_keeps_state():
    brick = _brick("lstm")
    (x,) = _inputs("lstm", np.random.default_rng(3))
    mask = _mask()
    f_states, f_cells = brick.apply(x, mask=mask)
    b_states, b_cells = brick.apply(x, mask=mask.astype(bool))
    np.testing.assert_allclose(f_states, b_states, rtol=1e-6)
    np.testing.assert_allclose(f_cells, b_cells, rtol=1e-6)
    # sequence 0 is padded from t=3 on: its state stays put
    np.testing.assert_array_equal(f_states[3:, 0], np.broadcast_to(f_states[2, 0], (2, D)))
    # one masked step with iterate=False returns the old state
    h = jnp.ones((B, D))
    c = jnp.zeros((B, D))
    s1, c1 = brick.apply(x[0], states=h, cells=c, mask=jnp.zeros(B), iterate=False)
    np.testing.assert_array_equal(s1, h)
    np.testing.assert_array_equal(c1, c)


@pytest.mark.parametrize("kind", KINDS)
def test_initial_states_from_caller(kind):
    brick = _brick(kind)
    rng = np.random.default_rng(4)
    seqs = _inputs(kind, rng)
    init = [rng.normal(size=(B, D)).astype(np.float32) for _ in brick.apply.states]
    kwargs = dict(zip(brick.apply.states, init, strict=True))
    out = _as_list(brick.apply(*seqs, mask=_mask(), **kwargs))
    expected = _reference(kind, brick, seqs, mask=_mask(), init=init)
    for got, want in zip(out, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_return_initial_states():
    brick = _brick("simple")
    (x,) = _inputs("simple", np.random.default_rng(5))
    h0 = np.full((B, D), 0.25, np.float32)
    out = brick.apply(x, states=h0, return_initial_states=True)
    plain = brick.apply(x, states=h0)
    assert out.shape == (T + 1, B, D)
    np.testing.assert_array_equal(out[0], h0)
    np.testing.assert_allclose(out[1:], plain, rtol=1e-6)
    back = brick.apply(x, states=h0, return_initial_states=True, reverse=True)
    np.testing.assert_array_equal(back[-1], h0)


def test_learned_initial_states_and_dims():
    lstm = _brick("lstm")
    states, cells = lstm.initial_states(2)
    p = numpy_params(lstm)
    np.testing.assert_allclose(states, np.broadcast_to(p["initial_state"], (2, D)))
    np.testing.assert_allclose(cells, np.broadcast_to(p["initial_cells"], (2, D)))
    assert lstm.get_dims(["inputs", "states", "cells", "mask"]) == [4 * D, D, D, 0]
    gru = _brick("gru")
    assert gru.get_dims(["inputs", "gate_inputs", "states"]) == [D, 2 * D, D]
    assert lstm.apply.sequences == ["inputs", "mask"]
    assert lstm.apply.states == ["states", "cells"]
    assert lstm.apply.inputs == ["inputs", "mask", "states", "cells"]


def test_gru_gate_halves_drawn_separately():
    gru = GatedRecurrent(dim=D, weights_init=Orthogonal(), name="gru")
    gru.initialize(seed=0)
    w = np.asarray(gru.get_parameter_values()["/gru.state_to_gates"])
    for half in (w[:, :D], w[:, D:]):
        np.testing.assert_allclose(half @ half.T, np.eye(D), atol=1e-5)
