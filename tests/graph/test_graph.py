"""ComputationGraph: selection, evaluation, transforms, batch normalization.

Every numerical check compares against numpy computed by hand from the
parameter values, never against the graph itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bricks.core import (
    BIAS,
    INPUT,
    MLP,
    OUTPUT,
    PARAMETER,
    WEIGHT,
    Brick,
    Constant,
    IsotropicGaussian,
    Linear,
    Softmax,
    Tanh,
    application,
    scan,
)
from bricks.core.roles import AUXILIARY, BATCH_NORM_POPULATION_MEAN
from bricks.errors import GraphError, ShapeError
from bricks.graph import (
    ComputationGraph,
    VariableFilter,
    apply_dropout,
    apply_noise,
)


def _mlp(seed: int = 1) -> MLP:
    mlp = MLP(
        [Tanh(), Softmax()],
        [4, 5, 3],
        weights_init=IsotropicGaussian(0.5),
        biases_init=IsotropicGaussian(0.1),
    )
    mlp.initialize(seed=seed)
    return mlp


def _np_mlp(p: dict, x: np.ndarray, hidden_fn=lambda h: h) -> np.ndarray:
    h = np.tanh(x @ np.asarray(p["/mlp/linear_0.W"]) + np.asarray(p["/mlp/linear_0.b"]))
    h = hidden_fn(h)
    z = h @ np.asarray(p["/mlp/linear_1.W"]) + np.asarray(p["/mlp/linear_1.b"])
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture
def graph():
    mlp = _mlp()

    def cost(features):
        return mlp.apply(features).sum(axis=-1).mean()

    def probs(features):
        return mlp.apply(features)

    return mlp, ComputationGraph(probs, features=(None, 4))


X = np.random.RandomState(0).randn(6, 4).astype("float32")


def test_selection_by_role_brick_name_and_regex(graph):
    mlp, cg = graph
    weights = VariableFilter(roles=[WEIGHT])(cg.variables)
    biases = VariableFilter(roles=[BIAS])(cg.variables)
    params = VariableFilter(roles=[PARAMETER])(cg.variables)
    assert [v.path for v in weights] == ["/mlp/linear_0.W", "/mlp/linear_1.W"]
    assert [v.path for v in biases] == ["/mlp/linear_0.b", "/mlp/linear_1.b"]
    assert set(params) == set(weights) | set(biases)  # sub-roles match their parent
    assert {v.path for v in cg.parameters} == {v.path for v in params}
    tanh_out = VariableFilter(bricks=[Tanh], roles=[OUTPUT])(cg.variables)
    assert [v.tag for v in tanh_out] == ["/mlp/tanh.apply.output"]
    # a brick instance works as well as a class
    lin0 = mlp.linear_transformations[0]
    assert [v.tag for v in VariableFilter(bricks=[lin0], roles=[INPUT])(cg.variables)] == [
        "/mlp/linear_0.apply.input_"
    ]
    assert [v.name for v in VariableFilter(name_regex="^W$")(cg.variables)] == ["W", "W"]
    assert len(VariableFilter(roles=[WEIGHT, OUTPUT], each_role=True)(cg.variables)) == 0
    apps = VariableFilter(applications=[mlp.apply])(cg.variables)
    assert [v.tag for v in apps] == ["/mlp.apply.input_", "/mlp.apply.output"]
    assert tanh_out[0].shape[1] == 5
    assert cg.inputs == ["features"] and [o.name for o in cg.outputs] == ["probs"]
    assert set(cg.bricks) == {mlp, *mlp.children}


def test_evaluate_matches_numpy_and_returns_intermediates(graph):
    mlp, cg = graph
    p = cg.parameter_values()
    hidden = VariableFilter(bricks=[Tanh], roles=[OUTPUT])(cg.variables)[0]
    (out,), (h,) = cg.compile(extra=[hidden])(p, {"features": X})
    np.testing.assert_allclose(out, _np_mlp(p, X), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        h,
        np.tanh(X @ np.asarray(p["/mlp/linear_0.W"]) + np.asarray(p["/mlp/linear_0.b"])),
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(cg(features=X), out)


def test_traced_once_per_input_shape(graph):
    mlp, cg = graph
    calls = []
    orig = cg.fn

    def counted(features):
        calls.append(1)
        return orig(features)

    cg.fn = counted
    f = cg.compile()
    p = cg.parameter_values()
    for _ in range(3):
        f(p, {"features": X})
    f(p, {"features": X[:2]})
    f(p, {"features": X[:2]})
    assert len(calls) == 2


def test_input_errors_name_the_input(graph):
    _, cg = graph
    p = cg.parameter_values()
    with pytest.raises(GraphError, match="missing inputs"):
        cg.evaluate(p, {})
    with pytest.raises(GraphError, match="did you mean 'features'"):
        cg.evaluate(p, {"features": X, "featurs": X})
    with pytest.raises(
        ShapeError, match=r"input 'features': expected shape \('\?', 4\), got \(6, 3\)"
    ):
        cg.evaluate(p, {"features": X[:, :3]})


def test_replace_matches_hand_written_and_leaves_original(graph):
    _, cg = graph
    p = cg.parameter_values()
    hidden = VariableFilter(bricks=[Tanh], roles=[OUTPUT])(cg.variables)[0]
    doubled = cg.replace({hidden: lambda h: 2 * h})
    np.testing.assert_allclose(
        doubled(features=X), _np_mlp(p, X, lambda h: 2 * h), rtol=1e-5, atol=1e-6
    )
    zeros = cg.replace({hidden.tag: 0.0})
    np.testing.assert_allclose(zeros(features=X), _np_mlp(p, X, lambda h: 0 * h), rtol=1e-5)
    np.testing.assert_allclose(cg(features=X), _np_mlp(p, X), rtol=1e-5, atol=1e-6)
    with pytest.raises(GraphError, match="shape"):
        cg.replace({hidden: np.ones((2, 2))}).evaluate(p, {"features": X})


def test_dropout_matches_hand_written_mask(graph):
    _, cg = graph
    p = cg.parameter_values()
    hidden = VariableFilter(bricks=[Tanh], roles=[OUTPUT])(cg.variables)[0]
    dropped = apply_dropout(cg, [hidden], 0.5)
    assert dropped.needs_key and not cg.needs_key
    key = jax.random.key(3)
    (out,), (h,) = dropped.evaluate(p, {"features": X}, key=key, extra=[hidden])
    h = np.asarray(h)
    mask = h != 0
    h_ref = np.tanh(X @ np.asarray(p["/mlp/linear_0.W"]) + np.asarray(p["/mlp/linear_0.b"]))
    np.testing.assert_allclose(h[mask], 2 * h_ref[mask], rtol=1e-5)
    np.testing.assert_allclose(out, _np_mlp(p, X, lambda _: h), rtol=1e-5, atol=1e-6)
    # deterministic given the key, fresh for another key
    (again,), _ = dropped.evaluate(p, {"features": X}, key=key)
    (other,), _ = dropped.evaluate(p, {"features": X}, key=jax.random.key(4))
    np.testing.assert_array_equal(out, again)
    assert not np.allclose(out, other)
    with pytest.raises(GraphError, match="PRNG key"):
        dropped.evaluate(p, {"features": X})


def test_dropout_statistics_on_a_large_tensor():
    def f(x):
        return Tanh().apply(x)

    cg = ComputationGraph(f, x=(1000, 1000))
    out_var = VariableFilter(roles=[OUTPUT])(cg.variables)
    dropped = apply_dropout(cg, out_var, 0.3)
    x = jnp.full((1000, 1000), 0.5)
    (y,), _ = dropped.evaluate({}, {"x": x}, key=jax.random.key(0))
    y = np.asarray(y)
    zero_frac = (y == 0).mean()
    assert abs(zero_frac - 0.3) < 0.005
    np.testing.assert_allclose(y[y != 0], np.tanh(0.5) / 0.7, rtol=1e-5)
    custom = apply_dropout(cg, out_var, 0.3, custom_divisor=2.0)
    (y2,), _ = custom.evaluate({}, {"x": x}, key=jax.random.key(0))
    np.testing.assert_allclose(np.asarray(y2)[np.asarray(y2) != 0], np.tanh(0.5) / 2, rtol=1e-5)


def test_noise_on_parameters_and_composition(graph):
    _, cg = graph
    p = cg.parameter_values()
    w0 = VariableFilter(roles=[WEIGHT])(cg.variables)[:1]
    noisy = apply_noise(cg, w0, std=0.1)
    key = jax.random.key(0)
    (_,), (w,) = noisy.evaluate(p, {"features": X}, key=key, extra=w0)
    # the extra value of a parameter is the clean value given
    np.testing.assert_array_equal(w, p["/mlp/linear_0.W"])
    (out,), _ = noisy.evaluate(p, {"features": X}, key=key)
    assert not np.allclose(out, cg(features=X))
    hidden = VariableFilter(bricks=[Tanh], roles=[OUTPUT])(cg.variables)
    both = apply_dropout(noisy, hidden, 0.5)
    (out2,), _ = both.evaluate(p, {"features": X}, key=key)
    assert both.needs_key and out2.shape == out.shape
    assert len(noisy._interventions) == 1 and len(both._interventions) == 2


class Accumulate(Brick):
    """A tiny loop brick: running sum of tanh(x W) over time."""

    def __init__(self, dim, **kw):
        super().__init__(**kw)
        self.dim = dim
        self.inner = Linear(
            dim, dim, weights_init=IsotropicGaussian(0.5), use_bias=False, name="inner"
        )
        self.children.append(self.inner)

    @application(inputs=["x"], outputs=["total"])
    def apply(self, x):
        def step(carry, x_t):
            h = Tanh(name="act").apply(self.inner.apply(x_t))
            return carry + h, h

        total, _ = scan(step, jnp.zeros(x.shape[1:]), x, name=f"{self.path}.apply.scan")
        return total


def test_scan_inner_variables_are_visible_and_droppable():
    acc = Accumulate(3, name="acc")
    acc.initialize(seed=0)
    cg = ComputationGraph(lambda x: acc.apply(x), x=(None, None, 3))
    inner = VariableFilter(bricks=[Linear], roles=[OUTPUT], scan=True)(cg.variables)
    assert len(inner) == 1 and inner[0].scan_scope == "/acc.apply.scan"
    assert inner[0].tag.startswith("/acc.apply.scan/")
    p = cg.parameter_values()
    x = np.random.RandomState(1).randn(7, 2, 3).astype("float32")
    W = np.asarray(p["/acc/inner.W"])
    (total,), (per_step,) = cg.evaluate(p, {"x": x}, extra=inner)
    np.testing.assert_allclose(per_step, x @ W, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(total, np.tanh(x @ W).sum(0), rtol=1e-5, atol=1e-5)
    dropped = apply_dropout(cg, inner, 0.5)
    (t2,), (ps2,) = dropped.evaluate(p, {"x": x}, key=jax.random.key(0), extra=inner)
    ps2 = np.asarray(ps2)
    masks = ps2 != 0
    # a fresh mask at every step
    assert len({m.tobytes() for m in masks}) > 1
    np.testing.assert_allclose(ps2[masks], 2 * (x @ W)[masks], rtol=1e-5)
    np.testing.assert_allclose(t2, np.tanh(ps2).sum(0), rtol=1e-5, atol=1e-5)
    # grads flow through the intervened scan
    g = jax.grad(lambda p: dropped.evaluate(p, {"x": x}, key=jax.random.key(0))[0][0].sum())(p)
    assert np.isfinite(np.asarray(g["/acc/inner.W"])).all()


def test_transform_outputs_adds_l2_of_selected_weights(graph):
    mlp, _ = graph

    def cost(features):
        return mlp.apply(features).sum(axis=-1).mean()

    cg = ComputationGraph(cost, features=(None, 4))
    weights = VariableFilter(roles=[WEIGHT])(cg.variables)
    reg = cg.transform_outputs(lambda c, *ws: c + 0.01 * sum((w**2).sum() for w in ws), weights)
    p = cg.parameter_values()
    expected = 1.0 + 0.01 * sum(float((np.asarray(p[w.path]) ** 2).sum()) for w in weights)
    np.testing.assert_allclose(reg(features=X), expected, rtol=1e-5)
    assert reg.outputs[0].name == "cost"


def test_auxiliary_variables_and_printing():
    class Penalized(Linear):
        @application(inputs=["input_"], outputs=["output"])
        def apply(self, input_):
            self.add_auxiliary_variable((self.W**2).sum(), name="l2")
            return input_ @ self.W

    lin = Penalized(2, 2, weights_init=Constant(1.0), use_bias=False, name="pen")
    lin.initialize()
    cg = ComputationGraph(lambda x: lin.apply(x), x=(None, 2))
    (aux,) = cg.auxiliary_variables
    assert aux.name == "l2" and aux.has_role(AUXILIARY)
    (_,), (val,) = cg.evaluate(
        cg.parameter_values(), {"x": np.ones((1, 2), "float32")}, extra=[aux]
    )
    assert float(val) == 4.0
    # str(cg) groups by brick: the tags are the brick path plus the rows' suffixes
    lines = str(cg).splitlines()
    group = lines.index("/pen  Penalized")
    assert lines[group + 1].split() == [".W", "WEIGHT", "(2,", "2)", "4"]
    assert any(line.split()[:3] == [".l2", "AUXILIARY", "()"] for line in lines[group:])
    # the flat table keeps the full tags and dtypes
    table = cg.table()
    assert "/pen.l2" in table and "AUXILIARY" in table and "float32" in table
    assert "/pen.W" in table and "(2, 2)" in table


def test_duplicate_brick_paths_are_an_error():
    a = Linear(2, 2, weights_init=Constant(1.0), biases_init=Constant(0.0), name="lin")
    b = Linear(2, 2, weights_init=Constant(1.0), biases_init=Constant(0.0), name="lin")
    with pytest.raises(GraphError, match="path '/lin'"):
        ComputationGraph(lambda x: b.apply(a.apply(x)), x=(None, 2))


def test_population_roles_are_not_parameters():
    assert not BATCH_NORM_POPULATION_MEAN.is_a(PARAMETER)
