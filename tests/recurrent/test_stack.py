"""RecurrentStack against a numpy reference, in both modes, with and without skips."""

from __future__ import annotations

import numpy as np
import pytest

from bricks.core import Constant, IsotropicGaussian
from bricks.errors import InitialStateError, RecurrentError
from bricks.recurrent import LSTM, GatedRecurrent, RecurrentStack, SimpleRecurrent
from tests.recurrent.reference import lstm_step, numpy_params, run

T, B, D, LAYERS = 4, 2, 3, 4


def _stack(skip):
    stack = RecurrentStack(
        [LSTM(dim=D) for _ in range(LAYERS)],
        skip_connections=skip,
        weights_init=IsotropicGaussian(0.4),
        biases_init=IsotropicGaussian(0.4),
    )
    stack.initialize(seed=7)
    return stack


def _mask():
    mask = np.ones((T, B), np.float32)
    mask[2:, 1] = 0
    return mask


def _reference(stack, inputs, mask, skip, init=None, reverse=False):
    """inputs: level -> (T, B, 4D) external input (level 0 always)."""
    outs = []
    below = None
    for level, transition in enumerate(stack.transitions):
        p = numpy_params(transition)
        x = np.zeros((T, B, 4 * D))
        if level == 0 or skip:
            x = x + inputs[level]
        if level > 0:
            fork = numpy_params(stack.forks[level - 1].children[0])
            x = x + below @ fork["W"] + (fork["b"] if "b" in fork else 0)
        states = (
            init[level]
            if init is not None
            else [
                np.broadcast_to(p["initial_state"], (B, D)),
                np.broadcast_to(p["initial_cells"], (B, D)),
            ]
        )
        h, c = run(lambda x_, h_, c_, p=p: lstm_step(x_, h_, c_, p), [x], states, mask, reverse)
        outs += [h, c]
        below = h
    return outs


def _inputs(rng):
    return {k: rng.normal(size=(T, B, 4 * D)).astype(np.float32) for k in range(LAYERS)}


def test_names_and_structure():
    stack = _stack(skip=True)
    assert [t.name for t in stack.transitions] == ["lstm#0", "lstm#1", "lstm#2", "lstm#3"]
    assert stack.apply.sequences == ["inputs", "inputs#1", "inputs#2", "inputs#3", "mask"]
    assert stack.apply.states[:4] == ["states", "cells", "states#1", "cells#1"]
    assert stack.apply.outputs == stack.apply.states
    assert stack.low_memory_apply.states == stack.apply.states
    assert stack.get_dim("inputs#2") == 4 * D and stack.get_dim("cells#3") == D
    paths = stack.get_parameter_values()
    assert "/recurrentstack/lstm#1.W_state" in paths
    assert "/recurrentstack/fork_1/fork_inputs.W" in paths
    assert "/recurrentstack/fork_1/fork_inputs.b" not in paths  # no bias with skips
    assert "/recurrentstack/fork_1/fork_inputs.b" in _stack(skip=False).get_parameter_values()
    assert _stack(skip=False).apply.sequences == ["inputs", "mask"]


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("low_memory", [False, True])
def test_four_layer_lstm_matches_numpy(skip, low_memory):
    stack = _stack(skip)
    inputs = _inputs(np.random.default_rng(0))
    mask = _mask()
    kwargs = {stack.suffix("inputs", k): v for k, v in inputs.items() if k == 0 or skip}
    out = stack.apply(mask=mask, low_memory=low_memory, **kwargs)
    expected = _reference(stack, inputs, mask, skip)
    assert len(out) == 2 * LAYERS
    for got, want in zip(out, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("low_memory", [False, True])
def test_per_layer_initial_states_and_reverse(low_memory):
    stack = _stack(skip=False)
    rng = np.random.default_rng(1)
    inputs = _inputs(rng)
    init = [[rng.normal(size=(B, D)) for _ in range(2)] for _ in range(LAYERS)]
    kwargs = {}
    for k in range(LAYERS):
        kwargs[stack.suffix("states", k)] = init[k][0].astype(np.float32)
        kwargs[stack.suffix("cells", k)] = init[k][1].astype(np.float32)
    out = stack.apply(inputs[0], mask=_mask(), reverse=True, low_memory=low_memory, **kwargs)
    expected = _reference(stack, inputs, _mask(), False, init=init, reverse=True)
    for got, want in zip(out, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def test_single_step_and_return_initial_states():
    stack = _stack(skip=False)
    inputs = _inputs(np.random.default_rng(2))
    full = stack.apply(inputs[0][:1])
    step = stack.apply(inputs[0][0], iterate=False)
    for f, s in zip(full, step, strict=True):
        np.testing.assert_allclose(f[0], s, rtol=1e-5, atol=1e-6)
    with_init = stack.apply(inputs[0], return_initial_states=True)
    plain = stack.apply(inputs[0])
    for w, p in zip(with_init, plain, strict=True):
        assert w.shape == (T + 1, B, D)
        np.testing.assert_allclose(w[1:], p, rtol=1e-5, atol=1e-6)


def test_mixed_transitions_and_errors():
    stack = RecurrentStack(
        [SimpleRecurrent(dim=D), GatedRecurrent(dim=D)],
        weights_init=IsotropicGaussian(0.3),
        biases_init=Constant(0.0),
    )
    stack.initialize(seed=0)
    (states0, states1) = stack.apply(np.ones((T, B, D), np.float32))
    assert states1.shape == (T, B, D)
    assert [c.name for c in stack.forks[0].children] == ["fork_inputs", "fork_gate_inputs"]
    with pytest.raises(RecurrentError, match="did you mean 'states#1'"):
        stack.apply(np.ones((T, B, D), np.float32), **{"state#1": np.zeros((B, D))})
    with pytest.raises(RecurrentError, match="no output 'hidden'"):
        RecurrentStack([LSTM(dim=2)], states_name="hidden")
    assert issubclass(InitialStateError, RecurrentError)
