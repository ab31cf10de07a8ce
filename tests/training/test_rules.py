"""Step rules against the step values published in Blocks' own tests."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from numpy.testing import assert_allclose

from bricks.algorithms import (
    AdaDelta,
    AdaGrad,
    Adam,
    BasicMomentum,
    BasicRMSProp,
    CompositeRule,
    Momentum,
    RemoveNotFinite,
    Restrict,
    RMSProp,
    Scale,
    StepClipping,
    VariableClipping,
)
from bricks.errors import StepRuleError


def _run(rule, values_of_a, n=None):
    """Steps of ``rule`` for cost sum(a**2), a taking the given values in turn."""
    a0 = jnp.asarray(values_of_a[0], jnp.float32)
    state = rule.init({"a": a0})
    out = []
    for value in values_of_a:
        a = jnp.asarray(value, jnp.float32)
        steps, state = rule.update({"a": 2 * a}, state, {"a": a})
        out.append(np.asarray(steps["a"]))
    return out


def test_basic_momentum():
    out = _run(BasicMomentum(0.5), [[3, 4]] * 3)
    assert_allclose(out, [[6, 8], [9, 12], [10.5, 14]], rtol=1e-6)


def test_momentum():
    out = _run(Momentum(0.1, 0.5), [[3, 4]] * 3)
    assert_allclose(out, [[0.6, 0.8], [0.9, 1.2], [1.05, 1.4]], rtol=1e-6)


def test_adadelta():
    out = _run(AdaDelta(decay_rate=0.5, epsilon=1e-7), [[3, 4]] * 3)
    expected = [[0.00044721] * 2, [0.0005164] * 2, [0.00056904] * 2]
    assert_allclose(out, expected, rtol=1e-5)


@pytest.mark.parametrize("decay", [-1.0, 2.0])
def test_decay_rate_sanity(decay):
    with pytest.raises(StepRuleError):
        AdaDelta(decay)
    with pytest.raises(StepRuleError):
        BasicRMSProp(decay)
    with pytest.raises(StepRuleError):
        BasicRMSProp(0.5, -1.0)


def test_basic_rmsprop():
    out = _run(BasicRMSProp(decay_rate=0.5, max_scaling=1e5), [[3, 4], [2, 3], [1, 1.5]])
    expected = [[1.41421356] * 2, [0.9701425, 1.02899151], [0.6172134, 0.64699664]]
    assert_allclose(out, expected, rtol=1e-5)
    out = _run(BasicRMSProp(decay_rate=0.5, max_scaling=1e5), [[1e-6, 1e-6]])
    assert_allclose(out[0], [0.2, 0.2], rtol=1e-5)


def test_rmsprop():
    out = _run(RMSProp(learning_rate=0.1, decay_rate=0.5), [[3, 4], [2, 3], [1, 1.5]])
    expected = [[0.141421356] * 2, [0.09701425, 0.102899151], [0.06172134, 0.064699664]]
    assert_allclose(out, expected, rtol=1e-5)


def test_adam():
    out = _run(Adam(), [[3, 4], [2, 3], [1, 1.5]])
    expected = [[0.002] * 2, [0.0019407, 0.00196515], [0.00178724, 0.0018223]]
    assert_allclose(out, expected, rtol=1e-4)


def test_adagrad():
    out = _run(AdaGrad(), [[3, 4], [2, 3], [1, 1.5]])
    expected = [[0.002] * 2, [0.0011094, 0.0012], [0.00053452, 0.0005747]]
    assert_allclose(out, expected, rtol=1e-4)


def _apply(rule, steps, params=None):
    steps = {k: jnp.asarray(v, jnp.float32) for k, v in steps.items()}
    params = {k: jnp.zeros_like(v) for k, v in steps.items()} if params is None else params
    out, _ = rule.update(steps, rule.init(params), params)
    return {k: np.asarray(v) for k, v in out.items()}


def test_step_clipping():
    out = _apply(StepClipping(4), {"x": 3.0, "y": 4.0})
    assert_allclose([out["x"], out["y"]], [2.4, 3.2], rtol=1e-6)
    out = _apply(StepClipping(5), {"x": 3.0, "y": 4.0})
    assert_allclose([out["x"], out["y"]], [3.0, 4.0], rtol=1e-6)
    out = _apply(StepClipping(), {"x": 3.0, "y": 4.0})
    assert_allclose([out["x"], out["y"]], [3.0, 4.0])


def test_variable_clipping_blocks_values():
    def f(x):
        return jnp.asarray(x, jnp.float32)

    params = {"a": f([1, 1]), "b": f([[-1, -1, -1]]), "c": f([[[1], [-1], [1], [-1]]])}
    steps = {"a": [3, 2], "b": [[3, 9, 2]], "c": [[[1], [2], [3], [2]]]}
    out = _apply(VariableClipping(5), steps, params)
    assert_allclose(out["a"], [3, 2])
    assert_allclose(out["b"], [[0.78885438, 3.47213595, 0.34164079]], rtol=1e-5)
    assert_allclose(out["c"], [[[1], [2], [3], [2]]])
    params = {"a": f([[1, -1, 1, -1], [-1, 1, -1, 1]])}
    out = _apply(VariableClipping(10, axis=1), {"a": [[1, 2, 3, 4], [5, 6, 7, 8]]}, params)
    expected = [[1, 2, 3, 4], [3.54858826, 4.79049022, 5.06478435, 6.30668631]]
    assert_allclose(out["a"], expected, rtol=1e-5)


def test_variable_clipping():
    out = _apply(VariableClipping(5), {"a": [4, 3], "b": [[3, 9, 2]], "c": [[[1], [2], [3], [2]]]})
    assert_allclose(out["a"], [4, 3], rtol=1e-6)
    assert_allclose(out["b"], 5 * np.array([[3.0, 9.0, 2.0]]) / np.sqrt(94), rtol=1e-6)
    assert_allclose(out["c"], [[[1.0], [2.0], [3.0], [2.0]]])
    out = _apply(VariableClipping(10, axes=(1,)), {"a": [[1, 2, 3, 4], [5, 6, 7, 8]]})
    expected = np.concatenate([[[1, 2, 3, 4]], np.array([[5, 6, 7, 8]]) * 10 / np.sqrt(174)])
    assert_allclose(out["a"], expected, rtol=1e-6)
    with pytest.raises(StepRuleError):
        VariableClipping(1, axis=(1, 1))


def test_composite_rule():
    out = _apply(CompositeRule([StepClipping(4), Scale(0.1)]), {"x": 3.0, "y": 4.0})
    assert_allclose([out["x"], out["y"]], [12 / 50, 16 / 50], rtol=1e-6)


def test_composite_accepts_gradient_signed_optax():
    rule = CompositeRule([optax.clip_by_global_norm(4.0), Scale(0.1)])
    out = _apply(rule, {"x": 3.0, "y": 4.0})
    assert_allclose([out["x"], out["y"]], [0.24, 0.32], rtol=1e-6)


def test_remove_not_finite():
    params = {"p": jnp.float32(1.0), "q": jnp.float32(2.0)}
    out = _apply(RemoveNotFinite(0.1), {"p": np.nan, "q": np.inf}, params)
    assert_allclose([out["p"], out["q"]], [0.9, 1.8], rtol=1e-6)
    out = _apply(RemoveNotFinite(), {"p": np.nan, "q": 5.0}, params)
    assert_allclose([out["p"], out["q"]], [0.0, 5.0])


def test_restrict():
    steps = {str(i): float(i * i) for i in range(6)}
    out = _apply(Restrict(Scale(0.1), ["1", "4"]), steps)
    assert_allclose([out[str(i)] for i in range(6)], [0, 0.1, 4, 9, 1.6, 25], rtol=1e-6)


def test_hyperparameter_handles():
    rule = Momentum(0.1, 0.5)
    names = {name: handle for name, handle, _ in rule.named_hyperparameters()}
    assert set(names) == {"0/learning_rate", "1/momentum"}
    assert names["0/learning_rate"] == rule.learning_rate
    assert rule.learning_rate.initial_value == 0.1
    with pytest.raises(AttributeError):
        _ = Scale().momentum
