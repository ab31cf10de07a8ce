"""jit, grad, vmap, remat, graph visibility and compile size of recurrent bricks."""

from __future__ import annotations

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from bricks.core import (
    INITIAL_STATE,
    OUTPUT,
    Brick,
    Constant,
    IsotropicGaussian,
    Recorder,
    apply_with,
)
from bricks.core.tracing import Frame, use_frame
from bricks.errors import InitialStateError, RecurrentError
from bricks.recurrent import (
    LSTM,
    BaseRecurrent,
    Bidirectional,
    GatedRecurrent,
    RecurrentStack,
    SimpleRecurrent,
    recurrent,
)

T, B, D = 4, 2, 3


def _lstm(name="lstm"):
    lstm = LSTM(dim=D, weights_init=IsotropicGaussian(0.5), name=name)
    lstm.initialize(seed=0)
    return lstm


def _data(T=T, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(T, B, 4 * D)).astype(np.float32)
    mask = np.ones((T, B), np.float32)
    mask[T - 1 :, 1] = 0
    return jnp.asarray(x), jnp.asarray(mask)


def test_jit_grad_vmap_through_apply_with():
    lstm = _lstm()
    params = lstm.get_parameter_values()
    x, mask = _data()
    eager = lstm.apply(x, mask=mask)[0]

    f = jax.jit(lambda p, x, m: apply_with(p, lstm.apply, x, mask=m)[0])
    np.testing.assert_allclose(f(params, x, mask), eager, rtol=1e-5, atol=1e-6)

    loss = lambda p, x: jnp.sum(apply_with(p, lstm.apply, x, mask=mask)[0] ** 2)  # noqa: E731
    grads = jax.jit(jax.grad(loss))(params, x)
    assert set(grads) == set(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads.values())
    assert float(jnp.abs(grads["/lstm.initial_state"]).sum()) > 0

    xs = jnp.stack([x, 2 * x, -x])
    batched = jax.jit(jax.vmap(f, in_axes=(None, 0, None)))(params, xs, mask)
    for i in range(3):
        np.testing.assert_allclose(batched[i], f(params, xs[i], mask), rtol=1e-5, atol=1e-6)


def test_check_grads_through_scan():
    for brick, width in (
        (_lstm(), 4 * D),
        (SimpleRecurrent(dim=D, weights_init=IsotropicGaussian(0.5), name="rnn"), D),
    ):
        brick.initialize(seed=1)
        params = brick.get_parameter_values()
        x, mask = _data()
        x = x[..., :width]

        def f(p, x, brick=brick, mask=mask):
            out = apply_with(p, brick.apply, x, mask=mask, reverse=True)
            out = out[0] if isinstance(out, tuple) else out
            return jnp.sum(jnp.sin(out))

        check_grads(jax.jit(f), (params, x), order=1, modes=["rev"], atol=2e-2, rtol=2e-2, eps=1e-2)


def test_remat_same_values_and_gradients():
    lstm = _lstm()
    params = lstm.get_parameter_values()
    x, mask = _data()

    def loss(p, remat):
        return jnp.sum(apply_with(p, lstm.apply, x, mask=mask, remat=remat)[0] ** 2)

    g0 = jax.grad(loss)(params, False)
    g1 = jax.grad(loss)(params, True)
    for k in g0:
        np.testing.assert_allclose(g0[k], g1[k], rtol=1e-5, atol=1e-6)
    text = str(jax.make_jaxpr(jax.grad(loss), static_argnums=1)(params, True))
    assert "remat" in text  # jax.checkpoint traces to the remat2 primitive
    lstm.remat = True  # the brick's default
    assert "remat" in str(jax.make_jaxpr(lambda p: loss(p, None))(params))
    lstm.remat = False
    assert "remat" not in str(jax.make_jaxpr(lambda p: loss(p, None))(params))


def _count_eqns(jaxpr):
    n = 0
    for eqn in jaxpr.eqns:
        n += 1
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            n += _count_eqns(sub)
    return n


@pytest.mark.parametrize("kind", ["lstm", "stack", "stack_low_memory", "bidirectional"])
def test_compile_size_does_not_grow_with_length(kind):
    if kind == "lstm":
        brick = _lstm()
        fn = lambda x, m: brick.apply(x, mask=m)  # noqa: E731
    elif kind == "bidirectional":
        brick = Bidirectional(LSTM(dim=D), weights_init=IsotropicGaussian(0.1))
        fn = lambda x, m: brick.apply(x, mask=m)  # noqa: E731
    else:
        brick = RecurrentStack(
            [LSTM(dim=D), LSTM(dim=D)], weights_init=IsotropicGaussian(0.1), biases_init=Constant(0)
        )
        low = kind == "stack_low_memory"
        fn = lambda x, m: brick.apply(x, mask=m, low_memory=low)  # noqa: E731
    brick.initialize(seed=0)
    params = brick.get_parameter_values()

    def loss(p, x, m):
        out = apply_with(p, fn, x, m)
        return sum(jnp.sum(o) for o in jax.tree_util.tree_leaves(out))

    sizes = []
    for steps in (10, 1000):
        x = jax.ShapeDtypeStruct((steps, B, 4 * D), jnp.float32)
        m = jax.ShapeDtypeStruct((steps, B), jnp.float32)
        sizes.append(_count_eqns(jax.make_jaxpr(jax.grad(loss))(params, x, m).jaxpr))
    assert sizes[0] == sizes[1]


def test_step_variables_visible_in_recorder():
    lstm = _lstm()
    params = lstm.get_parameter_values()
    rec = Recorder()

    def run(x, m):
        with use_frame(Frame(params=params, recorder=rec)):
            return lstm.apply(x, mask=m)

    jax.eval_shape(
        run,
        jax.ShapeDtypeStruct((T, B, 4 * D), jnp.float32),
        jax.ShapeDtypeStruct((T, B), jnp.float32),
    )
    inner = [v for v in rec.variables.values() if v.scan_scope is not None]
    outputs = {v.name: v for v in inner if v.brick is lstm and OUTPUT in v.roles}
    assert set(outputs) == {"states", "cells"}
    assert outputs["states"].shape == (T, B, D)
    assert outputs["states"].application == "apply"
    # the gate activations (children's outputs) are there too, per step
    gates = [v for v in inner if v.brick is lstm.gate_activation and OUTPUT in v.roles]
    assert len(gates) == 3 and all(v.shape == (T, B, D) for v in gates)
    # the whole-sequence outputs are recorded outside the scan
    outer = [v for v in rec.variables.values() if v.scan_scope is None and v.brick is lstm]
    assert {v.name for v in outer if OUTPUT in v.roles} == {"states", "cells"}
    assert {p for p in rec.parameters if rec.parameters[p].has_role(INITIAL_STATE)} == {
        "/lstm.initial_state",
        "/lstm.initial_cells",
    }


def test_variable_filter_and_dropout_inside_scan():
    graph = pytest.importorskip("bricks.graph")
    stack = RecurrentStack(
        [LSTM(dim=D), GatedRecurrent(dim=D)],
        weights_init=IsotropicGaussian(0.3),
        biases_init=Constant(0),
    )
    stack.initialize(seed=0)

    def cost(x, mask):
        return sum(jnp.sum(o) for o in stack.apply(x, mask=mask, low_memory=True))

    cg = graph.ComputationGraph(cost, x=(T, B, 4 * D), mask=(T, B))
    found = graph.VariableFilter(bricks=[LSTM], roles=[OUTPUT], name="states", scan=True)(
        cg.variables
    )
    assert len(found) == 1 and found[0].shape == (T, B, D)
    gru = graph.VariableFilter(bricks=[GatedRecurrent], roles=[OUTPUT], scan=True)(cg.variables)
    assert {v.name for v in gru} == {"states"}
    inits = graph.VariableFilter(roles=[INITIAL_STATE])(cg.parameters)
    assert len(inits) == 3
    x, mask = _data()
    dropped = graph.apply_dropout(cg, found, 0.5)
    a = dropped(jax.random.key(0), x=x, mask=mask)
    b = dropped(jax.random.key(1), x=x, mask=mask)
    plain = cg(x=x, mask=mask)
    assert float(a) != float(b) and float(a) != float(plain)


class _NoDims(BaseRecurrent):
    @recurrent(sequences=["inputs"], states=["acc"], outputs=["acc"])
    def apply(self, inputs, acc):
        return acc + inputs


class _Broken(Brick):
    @recurrent(sequences=["inputs"], states=["acc"], outputs=["out"])
    def apply(self, inputs, acc):
        return acc + inputs


def test_errors():
    x = jnp.ones((T, B, D))
    with pytest.raises(InitialStateError, match="'acc'"):
        _NoDims().apply(x)
    np.testing.assert_allclose(_NoDims().apply(x, acc=jnp.zeros((B, D)))[-1], T)
    with pytest.raises(RecurrentError, match="not among its outputs"):
        _Broken().apply(x, acc=jnp.zeros((B, D)))
    lstm = _lstm()
    with pytest.raises(RecurrentError, match="disagree"):
        lstm.apply(jnp.ones((T, B, 4 * D)), mask=jnp.ones((T + 1, B)))
    with pytest.raises(RecurrentError, match="time-major"):
        lstm.apply(jnp.ones((4 * D,)))
    with pytest.raises(RecurrentError, match="reserves"):
        recurrent(states=["s"])(lambda self, s, reverse: s)
