"""CategoricalCrossEntropy of a Softmax output is exact for saturated logits (issue 14, item 5).

Theano rewrote ``log(softmax(x))`` into log-softmax, so Blocks' standard
``CategoricalCrossEntropy().apply(y, Softmax().apply(x))`` was exact; bricks
uses the softmax's input. Checked against a float64 numpy log-sum-exp.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bricks.core import (
    AUXILIARY,
    MLP,
    CategoricalCrossEntropy,
    Constant,
    IsotropicGaussian,
    Softmax,
    Tanh,
)
from bricks.graph import ComputationGraph

N, K = 40, 7


def _nll_reference(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean NLL and its gradient w.r.t. the logits, in float64 numpy."""
    x = np.asarray(x, np.float64)
    onehot = np.eye(x.shape[-1])[y] if y.ndim < x.ndim else np.asarray(y, np.float64)
    m = x.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(x - m).sum(axis=-1, keepdims=True)) + m
    log_p = x - lse
    value = float(np.mean(-(onehot * log_p).sum(axis=-1)))
    grad = (np.exp(log_p) * onehot.sum(-1, keepdims=True) - onehot) / x.shape[0]
    return value, grad


def _data(scale: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(0)
    x = (rng.randn(N, K) * scale).astype(np.float32)
    return x, rng.randint(0, K, N)


def _cost(x, y):
    return CategoricalCrossEntropy().apply(y, Softmax().apply(x))


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
@pytest.mark.parametrize("one_hot", [False, True])
def test_value_and_gradient_match_log_sum_exp(scale, one_hot):
    x, labels = _data(scale)
    y = np.eye(K, dtype=np.float32)[labels] if one_hot else labels
    want, want_grad = _nll_reference(x, labels)
    assert float(_cost(x, y)) == pytest.approx(want, rel=1e-5, abs=1e-5)
    assert float(jax.jit(_cost)(x, y)) == pytest.approx(want, rel=1e-5, abs=1e-5)
    grad = np.asarray(jax.jit(jax.grad(_cost))(jnp.asarray(x), y))
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6)


def test_saturated_repro_from_the_issue_is_not_clipped():
    x, y = _data(30.0)
    want, _ = _nll_reference(x, y)
    assert want > 30  # the old floor at eps capped the per-example cost at ~15.9
    assert float(_cost(x, y)) == pytest.approx(want, rel=1e-5)


def test_softmax_categorical_cross_entropy_is_exact():
    x, y = _data(1e4)
    want, want_grad = _nll_reference(x, y)

    def cost(x):
        return Softmax().categorical_cross_entropy(y, x).mean()

    assert float(cost(x)) == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(jax.grad(cost)(jnp.asarray(x)), want_grad, rtol=1e-4, atol=1e-6)


def test_other_probabilities_still_use_the_floor():
    # probabilities that are not a softmax output keep the documented eps floor
    probs = jnp.array([[0.0, 1.0]])
    got = float(CategoricalCrossEntropy().apply(jnp.array([0]), probs))
    assert got == pytest.approx(-np.log(np.finfo(np.float32).eps), rel=1e-6)
    # a derived array (not the softmax output itself) is not linked to the logits
    x = jnp.array([[0.0, 100.0]])
    derived = Softmax().apply(x) * 1.0
    assert float(CategoricalCrossEntropy().apply(jnp.array([0]), derived)) == pytest.approx(
        -np.log(np.finfo(np.float32).eps), rel=1e-6
    )


def _mlp() -> MLP:
    mlp = MLP(
        [Tanh(), Softmax()],
        [4, 6, K],
        weights_init=IsotropicGaussian(1.0),
        biases_init=Constant(0.0),
        name="mlp",
    )
    mlp.initialize(seed=1)
    return mlp


@pytest.mark.slow
def test_graph_is_exact_and_keeps_its_annotations():
    mlp = _mlp()

    def cost(x, y):
        return CategoricalCrossEntropy().apply(y, mlp.apply(x))

    cg = ComputationGraph(cost, x=(None, 4), y=((None,), "int32"))
    # the application inputs and outputs, in trace order, as before logits were remembered
    tags = [v.tag for v in cg.variables if v.path is None and not v.has_role(AUXILIARY)]
    assert tags == [
        "/mlp.apply.input_",
        "/mlp/linear_0.apply.input_",
        "/mlp/linear_0.apply.output",
        "/mlp/tanh.apply.input_",
        "/mlp/tanh.apply.output",
        "/mlp/linear_1.apply.input_",
        "/mlp/linear_1.apply.output",
        "/mlp/softmax.apply.input_",
        "/mlp/softmax.apply.output",
        "/mlp.apply.output",
        "/categoricalcrossentropy.apply.y",
        "/categoricalcrossentropy.apply.y_hat",
        "/categoricalcrossentropy.apply.cost",
    ]
    assert sorted(p.path for p in cg.parameters) == [
        "/mlp/linear_0.W",
        "/mlp/linear_0.b",
        "/mlp/linear_1.W",
        "/mlp/linear_1.b",
    ]
    # saturate the output layer so the softmax underflows for most classes
    params = cg.parameter_values()
    params["/mlp/linear_1.W"] = params["/mlp/linear_1.W"] * 3000.0
    rng = np.random.RandomState(2)
    x = rng.randn(N, 4).astype(np.float32)
    y = rng.randint(0, K, N)
    (value,), (logits,) = cg.compile(["/mlp/linear_1.apply.output"])(params, {"x": x, "y": y})
    want, _ = _nll_reference(np.asarray(logits), y)
    assert want > 100
    assert float(value) == pytest.approx(want, rel=1e-5)

    def total(p):
        return cg.evaluate(p, {"x": x, "y": y})[0][0]

    grads = jax.jit(jax.grad(total))(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads.values())
    assert float(jnp.abs(grads["/mlp/linear_1.W"]).sum()) > 0


def test_replaced_softmax_output_is_used_as_probabilities():
    mlp = _mlp()

    def cost(x, y):
        return CategoricalCrossEntropy().apply(y, mlp.apply(x))

    cg = ComputationGraph(cost, x=(None, 4), y=((None,), "int32"))
    uniform = cg.replace({"/mlp/softmax.apply.output": lambda p: jnp.full_like(p, 1.0 / K)})
    x = np.ones((3, 4), np.float32)
    assert float(uniform(x=x, y=np.zeros(3, np.int32))) == pytest.approx(np.log(K), rel=1e-6)


def test_softmax_of_a_softmax_and_many_outputs_are_forgotten():
    import gc

    from bricks.core import _logits

    before = len(_logits._LOGITS)
    x = jnp.asarray(np.random.RandomState(1).randn(4, 3), jnp.float32)
    for _ in range(50):
        twice = Softmax().apply(Softmax().apply(x))  # the inner output is the outer's logits
        assert float(CategoricalCrossEntropy().apply(jnp.zeros(4, jnp.int32), twice)) > 0
    del twice
    gc.collect()
    assert len(_logits._LOGITS) <= before + 1
