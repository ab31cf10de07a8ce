"""Outputs of the core bricks against hand-written numpy, gradients by finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from bricks.core import (
    MLP,
    Bias,
    BinaryCrossEntropy,
    CategoricalCrossEntropy,
    Fork,
    Identity,
    IsotropicGaussian,
    Linear,
    Logistic,
    LookupTable,
    Maxout,
    Merge,
    MisclassificationRate,
    Parallel,
    Rectifier,
    Softmax,
    Softplus,
    SquaredError,
    Tanh,
    WithExtraDims,
    apply_with,
    with_extra_dims,
)
from bricks.errors import InputTypeError, ShapeError

RNG = np.random.default_rng(0)
GAUSS = IsotropicGaussian(0.5)


def rand(*shape):
    return RNG.normal(size=shape).astype(np.float32)


def np_params(brick):
    return {k: np.asarray(v, np.float64) for k, v in brick.get_parameter_values().items()}


def check_grads64(fn, args, order=1):
    """Finite-difference check in float64 (bricks' float32 params are cast)."""
    with jax.enable_x64(True):
        args = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), args)
        check_grads(fn, args, order=order, modes=("fwd", "rev"), atol=1e-4, rtol=1e-4)


def close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


# -- simple bricks ---------------------------------------------------------------------


def test_linear_and_bias_against_numpy():
    lin = Linear(3, 2, weights_init=GAUSS, biases_init=GAUSS)
    lin.initialize(seed=3)
    p = np_params(lin)
    x = rand(4, 3)
    expected = np.zeros((4, 2))
    for i in range(4):
        for j in range(2):
            dot = sum(x[i, k] * p["/linear.W"][k, j] for k in range(3))
            expected[i, j] = dot + p["/linear.b"][j]
    close(lin.apply(x), expected)
    # extra leading axes broadcast
    close(lin.apply(x.reshape(2, 2, 3)), expected.reshape(2, 2, 2))

    bias = Bias(2, biases_init=GAUSS)
    bias.initialize()
    close(bias.apply(expected), expected + np_params(bias)["/bias.b"][None])


def test_linear_without_bias():
    lin = Linear(3, 2, use_bias=False, weights_init=GAUSS)
    lin.initialize()
    assert sorted(lin.get_parameter_values()) == ["/linear.W"]
    x = rand(2, 3)
    close(lin.apply(x), x.astype(np.float64) @ np_params(lin)["/linear.W"])


@pytest.mark.parametrize(
    "brick, reference",
    [
        (Identity(), lambda x: x),
        (Tanh(), np.tanh),
        (Logistic(), lambda x: 1 / (1 + np.exp(-x))),
        (Rectifier(), lambda x: np.where(x > 0, x, 0)),
        (Softplus(), lambda x: np.log(1 + np.exp(x))),
        (Softmax(), lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True)),
    ],
    ids=lambda v: type(v).__name__ if not callable(v) or hasattr(v, "apply") else "",
)
def test_activations_against_numpy(brick, reference):
    x = rand(3, 4).astype(np.float64)
    close(brick.apply(jnp.asarray(x, jnp.float32)), reference(x))


def test_softmax_log_probabilities_and_cross_entropy():
    x = rand(3, 4).astype(np.float64)
    sm = Softmax()
    log_p = x - np.log(np.exp(x).sum(-1, keepdims=True))
    close(sm.log_probabilities(jnp.asarray(x, jnp.float32)), log_p)
    y = np.array([0, 3, 1])
    close(sm.categorical_cross_entropy(jnp.asarray(y), jnp.asarray(x, jnp.float32)),
          -log_p[np.arange(3), y])


def test_maxout_against_loops():
    x = rand(2, 6)
    out = np.asarray(Maxout(3).apply(x))
    assert out.shape == (2, 2)
    for i in range(2):
        for g in range(2):
            assert out[i, g] == max(x[i, 3 * g], x[i, 3 * g + 1], x[i, 3 * g + 2])
    with pytest.raises(ShapeError, match="multiple of num_pieces=4"):
        Maxout(4).apply(x)
    check_grads64(lambda v: Maxout(3).apply(v), (x,))


def test_lookup_table_any_index_shape():
    table = LookupTable(5, 3, weights_init=GAUSS)
    table.initialize()
    w = np_params(table)["/lookuptable.W"]
    idx = np.array([[0, 4, 2], [1, 1, 3]])
    out = np.asarray(table.apply(jnp.asarray(idx)))
    assert out.shape == (2, 3, 3)
    for i in range(2):
        for j in range(3):
            close(out[i, j], w[idx[i, j]])
    close(table.apply(jnp.asarray(2)), w[2])
    with pytest.raises(InputTypeError, match="integer indices"):
        table.apply(jnp.ones(2))
    # gradient with respect to the table: rows used twice get twice the gradient
    params = table.get_parameter_values()
    g = jax.grad(lambda p: apply_with(p, table.apply, jnp.asarray(idx)).sum())(params)
    counts = np.bincount(idx.ravel(), minlength=5)[:, None] * np.ones((1, 3))
    close(g["/lookuptable.W"], counts)


def test_mlp_against_numpy_and_grads():
    mlp = MLP([Tanh(), None], [3, 4, 2], weights_init=GAUSS, biases_init=GAUSS)
    mlp.initialize(seed=2)
    p = np_params(mlp)
    x = rand(5, 3)
    h = np.tanh(x @ p["/mlp/linear_0.W"] + p["/mlp/linear_0.b"])
    close(mlp.apply(x), h @ p["/mlp/linear_1.W"] + p["/mlp/linear_1.b"])
    params = mlp.get_parameter_values()
    check_grads64(lambda ps, v: apply_with(ps, mlp.apply, v), (params, x), order=2)


# -- parallel ----------------------------------------------------------------------------


def test_parallel_fork_merge_against_numpy():
    kw = dict(weights_init=GAUSS, biases_init=GAUSS)
    xa, xb = rand(2, 2), rand(2, 3)

    par = Parallel(["a", "b"], {"a": 2, "b": 3}, [4, 5], **kw)
    par.initialize()
    p = np_params(par)
    ya, yb = par.apply(b=xb, a=xa)
    close(ya, xa @ p["/parallel/transform_a.W"] + p["/parallel/transform_a.b"])
    close(yb, xb @ p["/parallel/transform_b.W"] + p["/parallel/transform_b.b"])
    assert par.apply.inputs == par.apply.outputs == ["a", "b"]

    fork = Fork(["u", "v"], 3, [2, 4], **kw)
    fork.initialize()
    p = np_params(fork)
    yu, yv = fork.apply(xb)
    close(yu, xb @ p["/fork/fork_u.W"] + p["/fork/fork_u.b"])
    close(yv, xb @ p["/fork/fork_v.W"] + p["/fork/fork_v.b"])
    assert fork.get_dim("v") == 4 and fork.get_dim("input_") == 3

    merge = Merge(["a", "b"], [2, 3], 4, **kw)
    merge.initialize()
    p = np_params(merge)
    expected = (xa @ p["/merge/transform_a.W"] + p["/merge/transform_a.b"]
                + xb @ p["/merge/transform_b.W"] + p["/merge/transform_b.b"])
    close(merge.apply(xa, xb), expected)
    check_grads64(lambda ps, a, b: apply_with(ps, merge.apply, a, b),
                  (merge.get_parameter_values(), xa, xb))


def test_parallel_prototype_copies_keep_explicit_settings():
    fork = Fork(["u", "v"], 3, [2, 2], prototype=Linear(use_bias=False), weights_init=GAUSS)
    fork.initialize()
    assert sorted(fork.get_parameter_values()) == ["/fork/fork_u.W", "/fork/fork_v.W"]
    p = fork.get_parameter_values()
    assert not np.allclose(p["/fork/fork_u.W"], p["/fork/fork_v.W"])  # sibling keys differ


def test_parallel_with_mlp_prototype():
    proto = MLP([Tanh(), None], [None, 5, None])
    par = Parallel(["a"], [2], [3], prototype=proto, weights_init=GAUSS, biases_init=GAUSS)
    par.initialize()
    assert par.apply(rand(4, 2)).shape == (4, 3)
    assert par.transforms[0].dims == [2, 5, 3]


def test_with_extra_dims():
    lin = Linear(3, 2, weights_init=GAUSS, biases_init=GAUSS)
    lin.initialize()
    p = np_params(lin)
    x = rand(2, 4, 5, 3)

    def needs_rank_2(v):
        if v.ndim != 2:
            raise AssertionError(v.shape)
        return lin.apply(v)

    expected = x @ p["/linear.W"] + p["/linear.b"]
    close(with_extra_dims(needs_rank_2, 2)(x), expected)
    wrapped = WithExtraDims(lin.apply, extra_ndim=1)
    assert lin.path == "/withextradims/linear"
    close(wrapped.apply(x.reshape(8, 5, 3)), expected.reshape(8, 5, 2))
    assert wrapped.apply.inputs == ["input_"]
    with pytest.raises(ShapeError, match="disagree"):
        with_extra_dims(lambda a, b: a, 1)(jnp.ones((2, 3, 1)), jnp.ones((3, 2, 1)))


# -- costs -------------------------------------------------------------------------------


def test_squared_error():
    y, y_hat = rand(4, 3), rand(4, 3)
    expected = np.mean([sum((y[i, j] - y_hat[i, j]) ** 2 for j in range(3)) for i in range(4)])
    close(SquaredError().apply(y, y_hat), expected)
    check_grads64(lambda a: SquaredError().apply(y.astype(np.float64), a), (y_hat,))
    with pytest.raises(ShapeError):
        SquaredError().apply(y, y_hat[:, :2])


def _probs(n, k):
    z = np.exp(rand(n, k).astype(np.float64))
    return z / z.sum(-1, keepdims=True)


def test_categorical_cross_entropy():
    probs = _probs(4, 3)
    y = np.array([0, 2, 1, 2])
    expected = -np.mean([np.log(probs[i, y[i]]) for i in range(4)])
    cce = CategoricalCrossEntropy()
    close(cce.apply(y, probs.astype(np.float32)), expected)
    onehot = np.eye(3)[y]
    close(cce.apply(onehot, probs.astype(np.float32)), expected)
    logits = np.log(probs) + 7.0  # softmax is shift invariant
    close(CategoricalCrossEntropy(from_logits=True).apply(y, logits.astype(np.float32)), expected)
    # a zero probability gives a large finite cost, and a finite gradient
    zero = jnp.array([[0.0, 1.0]])
    assert np.isfinite(cce.apply(jnp.array([0]), zero))
    assert np.all(np.isfinite(jax.grad(lambda q: cce.apply(jnp.array([0]), q))(zero)))
    # from logits stays finite for huge scores
    assert np.isfinite(CategoricalCrossEntropy(from_logits=True).apply(
        jnp.array([0]), jnp.array([[-1e4, 1e4]])))
    check_grads64(lambda q: cce.apply(jnp.asarray(y), q), (probs,))
    check_grads64(lambda z: CategoricalCrossEntropy(from_logits=True).apply(jnp.asarray(y), z),
                  (logits,))
    with pytest.raises(ShapeError):
        cce.apply(np.array([0, 1]), probs)


def test_binary_cross_entropy():
    y = (rand(4, 3) > 0).astype(np.float64)
    p = 1 / (1 + np.exp(-rand(4, 3).astype(np.float64)))
    expected = np.mean([
        -sum(y[i, j] * np.log(p[i, j]) + (1 - y[i, j]) * np.log(1 - p[i, j]) for j in range(3))
        for i in range(4)
    ])
    close(BinaryCrossEntropy().apply(y, p.astype(np.float32)), expected, 1e-4)
    logits = np.log(p) - np.log(1 - p)
    close(BinaryCrossEntropy(from_logits=True).apply(y, logits.astype(np.float32)), expected, 1e-4)
    assert np.isfinite(BinaryCrossEntropy().apply(jnp.ones((1, 1)), jnp.zeros((1, 1))))
    check_grads64(lambda q: BinaryCrossEntropy().apply(y, q), (p,))
    check_grads64(lambda z: BinaryCrossEntropy(from_logits=True).apply(y, z), (logits,))


def test_misclassification_rate_top_k_and_ties():
    scores = np.array([
        [0.1, 0.7, 0.2],   # target 1: top-1 correct
        [0.5, 0.3, 0.2],   # target 1: second best
        [0.4, 0.4, 0.2],   # target 0: tied for first -> error at top-1, correct at top-2
        [1 / 3, 1 / 3, 1 / 3],  # uniform: error at top-1 and top-2, correct at top-3
    ], np.float32)
    y = np.array([1, 1, 0, 2])
    errors_top1 = [0, 1, 1, 1]
    errors_top2 = [0, 0, 0, 1]
    close(MisclassificationRate().apply(y, scores), np.mean(errors_top1))
    close(MisclassificationRate(top_k=2).apply(y, scores), np.mean(errors_top2))
    close(MisclassificationRate(top_k=3).apply(y, scores), 0.0)
    assert MisclassificationRate().apply.outputs == ["error_rate"]
