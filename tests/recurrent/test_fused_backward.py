"""The fused backward of recurrent scans (``recurrent_dot``, ``fused_backward``):
gradients equal ``jax.grad`` of the plain scan (``fused_backward=False``) and
finite differences, with masks, ``reverse``, ``remat``, input transforms,
``RecurrentStack`` (fused forks, ``low_memory``), graphs and a custom brick."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from bricks.core import IsotropicGaussian, LookupTable, apply_with
from bricks.errors import RecurrentError
from bricks.graph import ComputationGraph
from bricks.recurrent import (
    LSTM,
    BaseRecurrent,
    GatedRecurrent,
    RecurrentStack,
    SimpleRecurrent,
    recurrent,
    recurrent_dot,
)
from tests.recurrent.reference import numpy_params, run

T, B, D = 6, 3, 4
TOL = {"rtol": 2e-4, "atol": 2e-5}


def _mask():
    mask = np.ones((T, B), np.float32)
    mask[4:, 0] = 0
    mask[2, 1] = 0
    return mask


def _brick(kind, **kwargs):
    init = IsotropicGaussian(0.5)
    if kind == "simple":
        brick = SimpleRecurrent(dim=D, weights_init=init, name="rnn", **kwargs)
    elif kind == "lstm":
        brick = LSTM(dim=D, weights_init=init, name="rnn", **kwargs)
    elif kind == "lstm_plain":
        brick = LSTM(dim=D, weights_init=init, name="rnn", peepholes=False, **kwargs)
    else:
        brick = GatedRecurrent(dim=D, weights_init=init, name="rnn", **kwargs)
    brick.initialize(seed=3)
    params = {k: v + 0.1 for k, v in brick.get_parameter_values().items()}  # nonzero h0
    return brick, params


def _inputs(brick, seed=0):
    rng = np.random.default_rng(seed)
    names = [s for s in brick.apply.sequences if s != "mask"]
    return {n: rng.normal(size=(T, B, brick.get_dim(n))).astype(np.float32) for n in names}


def _loss(brick, inputs, **control):
    """``fused_backward=False`` also sets the brick's attribute while tracing, so
    the reference is JAX's gradient of the plain equations (no hand-written cell)."""

    def apply():
        if control.get("fused_backward") is not False:
            return brick.apply(**inputs, **control)
        brick.fused_backward = False
        try:
            return brick.apply(**inputs, **control)
        finally:
            brick.fused_backward = True

    def loss(params):
        outputs = apply_with(params, apply)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        weights = jnp.linspace(0.5, 1.5, T)[:, None, None]  # every step matters differently
        return sum(jnp.sum(jnp.sin(o) * weights) for o in outputs)

    return loss


def _grads(loss, params):
    return jax.jit(jax.grad(loss))(params)


def _assert_close(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_allclose(np.asarray(a[key]), np.asarray(b[key]), err_msg=key, **TOL)


def _time_contractions(loss, params):
    """Number of matrix products in the gradient that contract over time and batch
    (the fused weight gradients)."""
    text = str(jax.make_jaxpr(jax.grad(loss))(params))
    return text.count("dimension_numbers=(([0, 1], [0, 1]), ([], []))")


@pytest.mark.parametrize("kind", ["simple", "lstm", "lstm_plain", "gru"])
@pytest.mark.parametrize(
    "control",
    [{}, {"reverse": True}, {"remat": True}, {"reverse": True, "remat": True}],
    ids=["plain", "reverse", "remat", "reverse-remat"],
)
def test_fused_equals_plain_scan_gradient(kind, control):
    brick, params = _brick(kind)
    inputs = {**_inputs(brick), "mask": _mask()}
    fused = _loss(brick, inputs, fused_backward=True, **control)
    plain = _loss(brick, inputs, fused_backward=False, **control)
    n_weights = 2 if kind == "gru" else 1
    assert _time_contractions(fused, params) == n_weights
    assert _time_contractions(plain, params) == 0
    np.testing.assert_allclose(jax.jit(fused)(params), jax.jit(plain)(params), rtol=1e-6)
    _assert_close(_grads(fused, params), _grads(plain, params))


def check_finite_differences(brick, params):
    """The gradient of a masked, reversed scan of ``brick`` against finite differences."""
    inputs = {**_inputs(brick), "mask": _mask()}
    loss = _loss(brick, inputs, reverse=True)
    check_grads(loss, (params,), order=1, modes=["rev"], eps=1e-2, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("kind", ["simple", "lstm", "gru"])
def test_fused_gradient_matches_finite_differences(kind):
    check_finite_differences(*_brick(kind))


def test_fused_weight_gradient_against_numpy():
    """``dL/dW`` of ``sum(states * weights)`` through a SimpleRecurrent, with the
    backward pass written in numpy (independent of JAX's autodiff)."""
    brick, params = _brick("simple")
    x = _inputs(brick)["inputs"]
    mask = _mask()
    coef = np.random.default_rng(5).normal(size=(T, B, D))

    def loss(p):
        states = apply_with(p, lambda: brick.apply(x, mask=mask))
        return jnp.sum(states * coef)

    grads = _grads(loss, params)
    p = numpy_params(brick)
    p = {k: v + 0.1 for k, v in p.items()}
    h0 = np.broadcast_to(p["initial_state"], (B, D))
    (hs,) = run(lambda xt, h: np.tanh(xt + h @ p["W"]), [x], [h0], mask)
    prev = np.concatenate([h0[None], hs[:-1]])
    d_w, d_h = np.zeros((D, D)), np.zeros((B, D))
    for t in range(T - 1, -1, -1):
        m = mask[t][:, None]
        d_out = d_h + coef[t]
        d_a = m * d_out * (1 - np.tanh(x[t] + prev[t] @ p["W"]) ** 2)
        d_w += prev[t].T @ d_a
        d_h = d_a @ p["W"].T + (1 - m) * d_out
    np.testing.assert_allclose(np.asarray(grads["/rnn.W"]), d_w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(grads["/rnn.initial_state"]), d_h.sum(0), **TOL)


@pytest.mark.slow
def test_fused_stack_with_fused_forks_and_input_transforms():
    stack = RecurrentStack(
        [LSTM(D), GatedRecurrent(D)],
        name="stack",
        weights_init=IsotropicGaussian(0.5),
        biases_init=IsotropicGaussian(0.5),
    )
    embed = LookupTable(7, 4 * D, name="embed", weights_init=IsotropicGaussian(0.5))
    stack.initialize(seed=1)
    embed.initialize(seed=2)
    params = {**stack.get_parameter_values(), **embed.get_parameter_values()}
    tokens = np.random.default_rng(0).integers(0, 7, size=(T, B))
    mask = _mask()

    def make(**control):
        def loss(p):
            def forward():
                outs = stack.apply(
                    tokens, mask=mask, input_transforms={"inputs": embed.apply}, **control
                )
                return sum(jnp.sum(jnp.sin(o)) for o in outs)

            return apply_with(p, forward)

        return loss

    for control in ({"remat": True}, {"remat": True, "reverse": True}, {"low_memory": True}):
        fused, plain = make(fused_backward=True, **control), make(fused_backward=False, **control)
        assert _time_contractions(fused, params) == 3  # W_state, state_to_gates, state_to_state
        _assert_close(_grads(fused, params), _grads(plain, params))


class _TwoStates(BaseRecurrent):
    """A custom brick that opts in: two states, two recurrent matrices, one of
    them applied to an intermediate (``a * b``)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def _allocate(self):
        self.add_parameter("U", (D, D), (), IsotropicGaussian(0.5))
        self.add_parameter("V", (D, 2 * D), (), IsotropicGaussian(0.5))

    def get_dim(self, name):
        return {"inputs": 2 * D, "a": D, "b": D, "mask": 0}.get(name) or super().get_dim(name)

    @recurrent(sequences=["inputs", "mask"], states=["a", "b"], outputs=["a", "b"])
    def apply(self, inputs, a, b):
        pre = inputs + recurrent_dot(jnp.tanh(b), self.V)
        new_a = jnp.tanh(pre[:, :D] + recurrent_dot(a * b, self.U))
        return new_a, jax.nn.sigmoid(pre[:, D:]) * b + new_a


@pytest.mark.slow
def test_custom_brick_opts_in():
    brick = _TwoStates(name="two")
    brick.initialize(seed=0)
    params = brick.get_parameter_values()
    inputs = {"inputs": _inputs(brick)["inputs"], "mask": _mask()}
    for control in ({}, {"reverse": True, "remat": True}):
        fused = _loss(brick, inputs, fused_backward=True, **control)
        plain = _loss(brick, inputs, fused_backward=False, **control)
        assert _time_contractions(fused, params) == 2
        _assert_close(_grads(fused, params), _grads(plain, params))
    check_grads(
        _loss(brick, inputs, reverse=True),
        (params,),
        order=1,
        modes=["rev"],
        eps=1e-2,
        atol=5e-2,
        rtol=5e-2,
    )


def test_brick_attribute_turns_it_off_and_remat_only_when_asked():
    brick, params = _brick("lstm")
    inputs = _inputs(brick)
    assert _time_contractions(_loss(brick, inputs), params) == 1
    # under remat the stacked cotangents would cost (time, batch, 4 dim) memory
    assert _time_contractions(_loss(brick, inputs, remat=True), params) == 0
    brick.fused_backward = False
    assert _time_contractions(_loss(brick, inputs), params) == 0
    assert _time_contractions(_loss(brick, inputs, fused_backward=True), params) == 1


@pytest.mark.slow
def test_fused_in_a_computation_graph():
    """With a graph's recorder: the same gradients, scan-inner variables still
    collected; a parameter replaced by a function of itself keeps JAX's gradient."""
    brick, params = _brick("lstm")
    x, mask = _inputs(brick)["inputs"], _mask()

    def cost(inputs, mask):
        states, cells = brick.apply(inputs, mask=mask)
        return jnp.sum(jnp.sin(states)) + jnp.sum(cells**2)

    cg = ComputationGraph(cost, inputs=(T, B, 4 * D), mask=(T, B))
    inner = cg.scan_variables[0]
    doubled = cg.replace({"/rnn.W_state": lambda w: 2.0 * w})

    def grads(graph, fused):
        brick.fused_backward = fused

        def loss(p):
            (out,), (value,) = graph.evaluate(p, {"inputs": x, "mask": mask}, extra=[inner])
            return out + 1e-3 * jnp.sum(value)

        try:
            return jax.jit(jax.grad(loss))(params), _time_contractions(loss, params)
        finally:
            brick.fused_backward = True

    for graph, contractions in ((cg, 1), (doubled, 0)):
        fused, n_fused = grads(graph, True)
        plain, n_plain = grads(graph, False)
        assert (n_fused, n_plain) == (contractions, 0)
        _assert_close(fused, plain)


@pytest.mark.slow
def test_evaluation_and_forward_mode_use_the_plain_scan():
    brick, params = _brick("lstm")
    inputs = _inputs(brick)
    loss = _loss(brick, inputs)
    assert "custom_vjp" not in str(jax.make_jaxpr(loss)(params))
    assert _time_contractions(loss, params) == 1
    tangent = jax.tree_util.tree_map(jnp.ones_like, params)
    _, forward = jax.jvp(loss, (params,), (tangent,))
    grads = _grads(loss, params)
    directional = sum(jnp.sum(grads[k] * tangent[k]) for k in grads)
    np.testing.assert_allclose(forward, directional, rtol=1e-4)
    # forward over reverse (Hessian-vector products) through the custom VJP
    _, hvp = jax.jvp(jax.grad(loss), (params,), (tangent,))
    _, hvp_plain = jax.jvp(
        jax.grad(_loss(brick, inputs, fused_backward=False)), (params,), (tangent,)
    )
    _assert_close(hvp, hvp_plain)


def test_recurrent_dot_in_a_nested_transformation_is_refused():
    class Nested(SimpleRecurrent):
        @recurrent(sequences=["inputs", "mask"], states=["states"], outputs=["states"])
        def apply(self, inputs, states):
            return jax.lax.cond(
                True, lambda s: jnp.tanh(inputs + recurrent_dot(s, self.W)), lambda s: s, states
            )

    brick = Nested(dim=D, weights_init=IsotropicGaussian(0.5), name="rnn")
    brick.initialize(seed=0)
    params = brick.get_parameter_values()
    inputs = _inputs(brick)
    with pytest.raises(RecurrentError, match="fused_backward=False"):
        _grads(_loss(brick, inputs), params)
    plain = _grads(_loss(brick, inputs, fused_backward=False), params)
    assert np.all(np.isfinite(np.asarray(plain["/rnn.W"])))
