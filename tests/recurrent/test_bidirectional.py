"""Bidirectional: forward half, backward half, masks."""

from __future__ import annotations

import numpy as np
import pytest

from bricks.core import IsotropicGaussian, Tanh
from bricks.errors import BrickTreeError, RecurrentError
from bricks.recurrent import LSTM, Bidirectional, SimpleRecurrent
from tests.recurrent.reference import numpy_params, run, simple_step

T, B, D = 5, 3, 4


def _mask():
    mask = np.ones((T, B), np.float32)
    mask[3:, 0] = 0
    mask[4:, 2] = 0
    return mask


def test_halves_and_masks():
    birnn = Bidirectional(
        SimpleRecurrent(dim=D, activation=Tanh()), weights_init=IsotropicGaussian(0.5)
    )
    birnn.initialize(seed=1)
    x = np.random.default_rng(0).normal(size=(T, B, D)).astype(np.float32)
    mask = _mask()
    out = np.asarray(birnn.apply(x, mask=mask))
    assert out.shape == (T, B, 2 * D)
    np.testing.assert_allclose(out[..., :D], birnn.forward.apply(x, mask=mask), rtol=1e-6)
    flipped = np.asarray(birnn.backward.apply(x[::-1], mask=mask[::-1]))[::-1]
    np.testing.assert_allclose(out[..., D:], flipped, rtol=1e-5, atol=1e-6)
    # independent numpy loop for the backward half
    p = numpy_params(birnn.backward)
    (h,) = run(
        lambda x_, h_: simple_step(x_, h_, p),
        [x.astype(np.float64)],
        [np.broadcast_to(p["initial_state"], (B, D))],
        mask,
        reverse=True,
    )
    np.testing.assert_allclose(out[..., D:], h, rtol=1e-5, atol=1e-5)
    # padded steps of the backward half still hold the initial state
    np.testing.assert_allclose(out[3:, 0, D:], 0.0)
    # the two halves have their own parameters
    params = birnn.get_parameter_values()
    assert not np.allclose(params["/bidirectional/forward.W"], params["/bidirectional/backward.W"])
    assert birnn.get_dim("states") == 2 * D and birnn.get_dim("inputs") == D
    assert birnn.apply.inputs == ["inputs", "mask", "states"]


def test_lstm_outputs_and_errors():
    bi = Bidirectional(LSTM(dim=2), weights_init=IsotropicGaussian(0.1))
    bi.initialize(seed=0)
    states, cells = bi.apply(np.ones((T, B, 8), np.float32))
    assert states.shape == cells.shape == (T, B, 4)
    with pytest.raises(RecurrentError, match="reverse"):
        bi.apply(np.ones((T, B, 8), np.float32), reverse=True)
    proto = SimpleRecurrent(dim=2)
    Bidirectional(proto, name="a")
    owner = Bidirectional(SimpleRecurrent(dim=2))
    with pytest.raises(BrickTreeError):
        Bidirectional(owner.forward)
