"""Blocks' tests/graph/test_bn.py, in bricks' idiom.

``with batch_normalization(bricks):`` works as in Blocks, in eager code and
inside a graph function; ``apply_batch_normalization(graph)`` switches a
whole graph.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from bricks.core import (
    MLP,
    BatchNormalization,
    BatchNormalizedMLP,
    Constant,
    IsotropicGaussian,
    Sequence,
    Tanh,
    batch_normalization,
)
from bricks.core.roles import BATCH_NORM_POPULATION_MEAN, BATCH_NORM_POPULATION_STDEV
from bricks.graph import (
    ComputationGraph,
    apply_batch_normalization,
    get_batch_normalization_updates,
)

F32 = np.float32


@pytest.mark.ported("tests/graph/test_bn.py::test_batch_normalization_simple")
def test_batch_normalization_simple():
    eps = 1e-4
    bn = BatchNormalization(input_dim=4, epsilon=eps)
    bn.initialize()
    rng = np.random.RandomState((2016, 1, 18))
    x_ = rng.uniform(size=(5, 4)).astype(F32)
    with batch_normalization(bn):
        y_ = bn.apply(x_)
    y_expected = (x_ - x_.mean(axis=0)) / np.sqrt(x_.var(axis=0) + eps)
    assert_allclose(y_, y_expected, rtol=1e-4)


@pytest.mark.ported("tests/graph/test_bn.py::test_batch_normalization_nested")
def test_batch_normalization_nested():
    eps = 1e-4
    r_dims = (0, 2, 3)
    batch_dims = (5, 4, 3, 2)
    bn = BatchNormalization(input_dim=batch_dims[1:], broadcastable=(False, True, True),
                            epsilon=eps)
    seq = Sequence([bn.apply, Tanh().apply])
    seq.initialize()
    rng = np.random.RandomState((2016, 1, 18))
    x_ = rng.uniform(size=batch_dims).astype(F32)
    with batch_normalization(seq):
        y_ = seq.apply(x_)
    y_expected = np.tanh(
        (x_ - x_.mean(axis=r_dims, keepdims=True))
        / np.sqrt(x_.var(axis=r_dims, keepdims=True) + eps)
    )
    assert_allclose(y_, y_expected, rtol=1e-4)


@pytest.mark.ported("tests/graph/test_bn.py::test_apply_batch_normalization_nested")
def test_apply_batch_normalization_nested():
    eps = 1e-8
    bn = BatchNormalization(input_dim=5, epsilon=eps)
    mlp = MLP([Sequence([bn.apply, Tanh().apply])], [9, 5], weights_init=Constant(0.4),
              biases_init=Constant(1))
    mlp.initialize()
    cg = apply_batch_normalization(ComputationGraph(lambda x: mlp.apply(x), x=(None, 9)))
    rng = np.random.RandomState((2016, 1, 18))
    x_ = rng.uniform(size=(3, 9)).astype(F32)
    y_ = cg(x=x_)
    lin = mlp.linear_transformations[0]
    W_, b_ = np.asarray(lin.W), np.asarray(lin.b)
    z_ = np.dot(x_, W_) + b_
    y_expected = np.tanh((z_ - z_.mean(axis=0)) / np.sqrt(z_.var(axis=0) + eps))
    assert_allclose(y_, y_expected, rtol=1e-3)


def _mlp(**kwargs):
    mlp = BatchNormalizedMLP([Tanh(), Tanh()], [5, 7, 9], weights_init=IsotropicGaussian(0.1),
                             **kwargs)
    mlp.initialize()
    return mlp


def simple_assertions(mlp, graph, updates, num_bricks=2, num_updates=4, mean_only=False):
    assert len(updates) == num_updates
    parameters = {p.path: p for p in graph.parameters}
    assert all(path in parameters for path, _, _ in updates)
    means = {p for p, _, _ in updates if parameters[p].has_role(BATCH_NORM_POPULATION_MEAN)}
    stdevs = {p for p, _, _ in updates if parameters[p].has_role(BATCH_NORM_POPULATION_STDEV)}
    assert means.isdisjoint(stdevs)
    assert len({parameters[p].brick for p in means}) == num_bricks
    if not mean_only:
        assert len({parameters[p].brick for p in stdevs}) == num_bricks
    else:
        assert len(stdevs) == 0


def _graph(fn):
    return ComputationGraph(fn, x=(None, 5))


@pytest.mark.ported(
    "tests/graph/test_bn.py::TestSimpleGetBatchNormalizationUpdates::"
    "test_get_batch_normalization_updates"
)
def test_get_batch_normalization_updates():
    mlp = _mlp()

    def fn(x):
        with batch_normalization(mlp):
            return mlp.apply(x)

    graph = _graph(fn)
    simple_assertions(mlp, graph, get_batch_normalization_updates(graph))


@pytest.mark.ported(
    "tests/graph/test_bn.py::TestSimpleGetBatchNormalizationUpdates::"
    "test_get_batch_normalization_updates_mean_only"
)
def test_get_batch_normalization_updates_mean_only():
    mlp = _mlp(mean_only=True)
    graph = apply_batch_normalization(_graph(lambda x: mlp.apply(x)))
    updates = get_batch_normalization_updates(graph)
    simple_assertions(mlp, graph, updates, num_updates=2, mean_only=True)


@pytest.mark.ported(
    "tests/graph/test_bn.py::TestSimpleGetBatchNormalizationUpdates::"
    "test_get_batch_normalization_updates_non_training_applications"
)
def test_get_batch_normalization_updates_non_training_applications():
    mlp = _mlp()

    def fn(x):
        y = mlp.apply(x)
        with batch_normalization(mlp):
            y_bn = mlp.apply(x)
        return y_bn, y

    graph = _graph(fn)
    simple_assertions(mlp, graph, get_batch_normalization_updates(graph))


@pytest.mark.ported(
    "tests/graph/test_bn.py::TestSimpleGetBatchNormalizationUpdates::"
    "test_get_batch_normalization_updates_no_training"
)
def test_get_batch_normalization_updates_no_training():
    mlp = _mlp()
    graph = _graph(lambda x: mlp.apply(x))
    with pytest.raises(ValueError):
        get_batch_normalization_updates(graph)


def _twice(mlp):
    def fn(x):
        with batch_normalization(mlp):
            return mlp.apply(x), mlp.apply(x)

    return _graph(fn)


@pytest.mark.ported(
    "tests/graph/test_bn.py::TestSimpleGetBatchNormalizationUpdates::"
    "test_get_batch_normalization_updates_duplicates_error"
)
def test_get_batch_normalization_updates_duplicates_error():
    with pytest.raises(ValueError):
        get_batch_normalization_updates(_twice(_mlp()))


@pytest.mark.ported(
    "tests/graph/test_bn.py::TestSimpleGetBatchNormalizationUpdates::"
    "test_get_batch_normalization_updates_allow_duplicates"
)
def test_get_batch_normalization_updates_allow_duplicates():
    mlp = _mlp()
    graph = _twice(mlp)
    updates = get_batch_normalization_updates(graph, allow_duplicates=True)
    simple_assertions(mlp, graph, updates, num_bricks=2, num_updates=8)


def test_with_brick_is_training_mode():
    """Blocks' ``with bn:`` spelling: training mode for that brick only."""
    bn = BatchNormalization(input_dim=3)
    other = BatchNormalization(input_dim=3)
    bn.initialize()
    other.initialize()
    x_ = np.random.RandomState(0).uniform(size=(6, 3)).astype(F32)
    with bn:
        y = np.asarray(bn.apply(x_))
        z = np.asarray(other.apply(x_))
    assert_allclose(y.mean(axis=0), 0.0, atol=1e-5)
    assert_allclose(z, x_, rtol=1e-5)  # inference mode: the identity at initialization
    assert_allclose(bn.apply(x_), x_, rtol=1e-5)  # and back to inference mode after
