"""``input_transforms`` (per-step input transformations inside the scan) and
``RecurrentStack``'s ``fuse_forks``, against the numpy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bricks.core import (
    OUTPUT,
    IsotropicGaussian,
    Linear,
    LookupTable,
    Recorder,
    apply_with,
)
from bricks.core.tracing import Frame, use_frame
from bricks.errors import RecurrentError
from bricks.recurrent import LSTM, Bidirectional, GatedRecurrent, RecurrentStack
from tests.recurrent.reference import gru_step, lstm_step, numpy_params, run

T, B, F, D, V = 5, 3, 6, 4, 7
TOL = {"rtol": 2e-5, "atol": 2e-5}


def _mask():
    mask = np.ones((T, B), np.float32)
    mask[3:, 0] = 0
    mask[1, 1] = 0
    return mask


def _x(seed=0, features=F):
    return np.random.default_rng(seed).normal(size=(T, B, features)).astype(np.float32)


def _linear(out, name="to_gates", inp=F):
    lin = Linear(
        inp, out, name=name, weights_init=IsotropicGaussian(0.4), biases_init=IsotropicGaussian(0.4)
    )
    lin.initialize(seed=1)
    return lin


def _lstm(name="lstm"):
    lstm = LSTM(dim=D, weights_init=IsotropicGaussian(0.5), name=name)
    lstm.initialize(seed=2)
    return lstm


def _lstm_reference(lstm, gates, mask, reverse=False):
    p = numpy_params(lstm)
    init = [
        np.broadcast_to(p["initial_state"], (B, D)),
        np.broadcast_to(p["initial_cells"], (B, D)),
    ]
    return run(lambda x, h, c: lstm_step(x, h, c, p), [gates], init, mask, reverse)


@pytest.mark.parametrize("remat", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_linear_in_the_step_matches_numpy(remat, reverse):
    lstm, lin = _lstm(), _linear(4 * D)
    x, mask = _x(), _mask()
    lp = numpy_params(lin)
    want = _lstm_reference(lstm, x @ lp["W"] + lp["b"], mask, reverse)
    for transforms in (lin.apply, {"inputs": lin.apply}):
        got = lstm.apply(x, mask=mask, remat=remat, reverse=reverse, input_transforms=transforms)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, **TOL)
    # one step applies the transform too
    h, c = lstm.apply(x[0], iterate=False, input_transforms=lin.apply)
    np.testing.assert_allclose(h, lstm.apply(x[:1], input_transforms=lin.apply)[0][0], **TOL)


def test_lookup_in_the_step_and_gradients_with_remat():
    lstm = _lstm()
    embed = LookupTable(V, 4 * D, name="embed", weights_init=IsotropicGaussian(0.5))
    embed.initialize(seed=4)
    tokens = np.random.default_rng(5).integers(0, V, size=(T, B)).astype(np.int32)
    mask = _mask()
    table = numpy_params(embed)["W"]
    want = _lstm_reference(lstm, table[tokens], mask)
    got = lstm.apply(tokens, mask=mask, input_transforms=embed.apply)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, **TOL)

    params = {**embed.get_parameter_values(), **lstm.get_parameter_values()}

    def loss(p, in_step, remat):
        def forward():
            if in_step:
                out = lstm.apply(tokens, mask=mask, remat=remat, input_transforms=embed.apply)
            else:
                out = lstm.apply(embed.apply(tokens), mask=mask, remat=remat)
            return jnp.sum(out[0] ** 2)

        return apply_with(p, forward)

    want_grads = jax.grad(loss)(params, False, False)
    for remat in (False, True):
        grads = jax.jit(jax.grad(loss), static_argnums=(1, 2))(params, True, remat)
        for path in params:
            np.testing.assert_allclose(grads[path], want_grads[path], rtol=1e-4, atol=1e-5)


def test_gru_dict_transforms_and_transform_returning_several_arguments():
    gru = GatedRecurrent(dim=D, weights_init=IsotropicGaussian(0.5), name="gru")
    gru.initialize(seed=3)
    to_in, to_gates = _linear(D, "to_in"), _linear(2 * D, "to_gates")
    x, mask = _x(1), _mask()
    a, g = numpy_params(to_in), numpy_params(to_gates)
    p = numpy_params(gru)
    init = [np.broadcast_to(p["initial_state"], (B, D))]
    (want,) = run(
        lambda xi, gi, h: gru_step(xi, gi, h, p),
        [x @ a["W"] + a["b"], x @ g["W"] + g["b"]],
        init,
        mask,
    )
    both = {"inputs": to_in.apply, "gate_inputs": to_gates.apply}
    np.testing.assert_allclose(gru.apply(x, x, mask=mask, input_transforms=both), want, **TOL)

    # one sequence, one transform supplying both step arguments
    def split(x_t):
        return {"inputs": to_in.apply(x_t), "gate_inputs": to_gates.apply(x_t)}

    got = gru.apply(inputs=x, mask=mask, input_transforms={"inputs": split}, remat=True)
    np.testing.assert_allclose(got, want, **TOL)


def test_transform_variables_are_per_step_in_the_graph():
    lstm, lin = _lstm(), _linear(4 * D)
    params = {**lstm.get_parameter_values(), **lin.get_parameter_values()}
    rec = Recorder()

    def go(x):
        with use_frame(Frame(params=params, recorder=rec)):
            return lstm.apply(x, input_transforms=lin.apply, remat=True)

    jax.eval_shape(go, jax.ShapeDtypeStruct((T, B, F), jnp.float32))
    inner = [v for v in rec.variables.values() if v.brick is lin and OUTPUT in v.roles]
    assert len(inner) == 1 and inner[0].scan_scope is not None
    assert inner[0].shape == (T, B, 4 * D)


def test_input_transform_errors():
    lstm = _lstm()
    x = _x(features=4 * D)
    with pytest.raises(RecurrentError, match="did you mean 'inputs'"):
        lstm.apply(x, input_transforms={"input": lambda v: v})
    with pytest.raises(RecurrentError, match="not a callable"):
        lstm.apply(x, input_transforms={"inputs": 3})
    with pytest.raises(RecurrentError, match="callable or a dict"):
        lstm.apply(x, input_transforms=[lambda v: v])


# -- stacks ---------------------------------------------------------------------------

LAYERS = 3


def _stack(kind="lstm", skip=False):
    make = {"lstm": lambda: LSTM(dim=D), "gru": lambda: GatedRecurrent(dim=D)}[kind]
    stack = RecurrentStack(
        [make() for _ in range(LAYERS)],
        skip_connections=skip,
        weights_init=IsotropicGaussian(0.4),
        biases_init=IsotropicGaussian(0.4),
    )
    stack.initialize(seed=7)
    return stack


def _stack_reference(stack, first, mask, skip_inputs=None):
    """LSTM stack by hand: ``first`` feeds layer 0, ``skip_inputs[k]`` adds to layer k."""
    outs, below = [], None
    for level, transition in enumerate(stack.transitions):
        p = numpy_params(transition)
        x = first if level == 0 else np.zeros((T, B, 4 * D))
        if level > 0:
            fork = numpy_params(stack.forks[level - 1].children[0])
            x = x + below @ fork["W"] + fork.get("b", 0)
            if skip_inputs and level in skip_inputs:
                x = x + skip_inputs[level]
        init = [
            np.broadcast_to(p["initial_state"], (B, D)),
            np.broadcast_to(p["initial_cells"], (B, D)),
        ]
        h, c = run(lambda x_, h_, c_, p=p: lstm_step(x_, h_, c_, p), [x], init, mask)
        outs += [h, c]
        below = h
    return outs


@pytest.mark.parametrize("fuse_forks", [None, True, False])
@pytest.mark.parametrize("remat", [False, True])
def test_fused_forks_match_numpy(fuse_forks, remat):
    stack = _stack()
    x, mask = _x(features=4 * D), _mask()
    want = _stack_reference(stack, x, mask)
    got = stack.apply(x, mask=mask, remat=remat, fuse_forks=fuse_forks)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, **TOL)


def test_fused_forks_run_inside_the_scan_under_remat():
    stack = _stack()
    params = stack.get_parameter_values()

    def fork_outputs(**kwargs):
        rec = Recorder()

        def go(x):
            with use_frame(Frame(params=params, recorder=rec)):
                return stack.apply(x, **kwargs)

        jax.eval_shape(go, jax.ShapeDtypeStruct((T, B, 4 * D), jnp.float32))
        return [
            v for v in rec.variables.values() if v.brick is stack.forks[0] and OUTPUT in v.roles
        ]

    fused = fork_outputs(remat=True)
    assert fused and all(v.scan_scope is not None and v.shape == (T, B, 4 * D) for v in fused)
    unfused = fork_outputs(remat=True, fuse_forks=False)
    assert unfused and all(v.scan_scope is None for v in unfused)
    assert all(v.scan_scope is None for v in fork_outputs())


@pytest.mark.parametrize("low_memory", [False, True])
def test_gru_stack_fused_equals_unfused(low_memory):
    stack = _stack("gru")
    x, g, mask = _x(2, D), _x(3, 2 * D), _mask()
    plain = stack.apply(x, g, mask=mask, fuse_forks=False)
    a, b = _linear(D, "a"), _linear(2 * D, "b")
    transforms = {"inputs": a.apply, "gate_inputs": b.apply}
    y = _x(4)
    outside = stack.apply(a.apply(y), b.apply(y), mask=mask, fuse_forks=False)
    for fuse in (True, None):
        got = stack.apply(x, g, mask=mask, fuse_forks=fuse, remat=True)
        for u, v in zip(got, plain, strict=True):
            np.testing.assert_allclose(u, v, **TOL)
    got = stack.apply(
        y, y, mask=mask, remat=True, low_memory=low_memory, input_transforms=transforms
    )
    for u, v in zip(got, outside, strict=True):
        np.testing.assert_allclose(u, v, **TOL)


@pytest.mark.parametrize("low_memory", [False, True])
@pytest.mark.parametrize("remat", [False, True])
def test_stack_input_transforms_match_numpy(low_memory, remat):
    stack = _stack(skip=True)
    lin, lin2 = _linear(4 * D), _linear(4 * D, "skip2")
    x, x2, mask = _x(), _x(6), _mask()
    lp, lp2 = numpy_params(lin), numpy_params(lin2)
    want = _stack_reference(
        stack, x @ lp["W"] + lp["b"], mask, skip_inputs={2: x2 @ lp2["W"] + lp2["b"]}
    )
    got = stack.apply(
        x,
        mask=mask,
        remat=remat,
        low_memory=low_memory,
        input_transforms={"inputs": lin.apply, "inputs#2": lin2.apply},
        **{"inputs#2": x2},
    )
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, **TOL)
    with pytest.raises(RecurrentError, match="not one of its sequences"):
        stack.apply(x, mask=mask, low_memory=low_memory, input_transforms={"cells": lin.apply})


def test_bidirectional_passes_input_transforms_to_both_directions():
    bi = Bidirectional(LSTM(dim=D), weights_init=IsotropicGaussian(0.5))
    bi.initialize(seed=8)
    lin = _linear(4 * D)
    x, mask = _x(), _mask()
    want = bi.apply(lin.apply(x), mask=mask)
    got = bi.apply(x, mask=mask, remat=True, input_transforms=lin.apply)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, **TOL)
