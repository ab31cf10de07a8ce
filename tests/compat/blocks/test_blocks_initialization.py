"""Blocks' tests/test_initialization.py, in bricks' idiom.

Blocks' ``scheme.generate(rng, shape)`` is kept beside bricks'
``scheme(key, shape, dtype)``; the statistics are checked as in Blocks.
"""

from __future__ import annotations

import numbers

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_equal

from bricks.core.initialization import (
    Constant,
    Identity,
    IsotropicGaussian,
    Orthogonal,
    Sparse,
    SparseND,
    Uniform,
)

F32 = np.float32


@pytest.mark.ported("tests/test_initialization.py::test_constant")
@pytest.mark.parametrize(
    "const, ground_truth",
    [
        (5, 5 * np.ones((5, 5), dtype=F32)),
        ([1, 2, 3], np.array([[1, 2, 3]] * 7, dtype=F32)),
        (np.array([[1], [2], [3]]), np.array([[1, 1], [2, 2], [3, 3]], dtype=F32)),
    ],
)
def test_constant(const, ground_truth):
    init = Constant(const).generate(None, ground_truth.shape)
    assert init.dtype == F32
    assert ground_truth.shape == init.shape
    assert_equal(ground_truth, init)
    assert str(Constant(1.0)).endswith(" constant=1.0>")


@pytest.mark.ported("tests/test_initialization.py::test_identity")
def test_identity():
    assert str(Identity(2.0)).endswith(" mult=2.0>")


@pytest.mark.ported("tests/test_initialization.py::test_gaussian")
def test_gaussian():
    rng = np.random.RandomState(1)
    for mean, std, shape in [(0, 1, (500, 600)), (5, 3, (600, 500))]:
        weights = IsotropicGaussian(std, mean).generate(rng, shape)
        assert weights.shape == shape
        assert weights.dtype == F32
        assert_allclose(weights.mean(), mean, atol=1e-2)
        assert_allclose(weights.std(), std, atol=1e-2)
    assert str(IsotropicGaussian(1.0, 2.0)).endswith(" mean=2.0, std=1.0>")


@pytest.mark.ported("tests/test_initialization.py::test_uniform")
def test_uniform():
    rng = np.random.RandomState(1)
    for mean, width, std, shape in [
        (0, 0.05, None, (500, 600)),
        (0, None, 0.001, (600, 500)),
        (5, None, 0.004, (700, 300)),
    ]:
        weights = Uniform(mean=mean, width=width, std=std).generate(rng, shape)
        assert weights.shape == shape
        assert weights.dtype == F32
        assert_allclose(weights.mean(), mean, atol=1e-2)
        std_ = width / np.sqrt(12) if width is not None else std
        assert_allclose(std_, weights.std(), atol=1e-2)
    with pytest.raises(ValueError):
        Uniform(0, 1, 1)
    assert str(Uniform(1.0, 2.0)).endswith(" mean=1.0, width=2.0>")


@pytest.mark.slow
@pytest.mark.ported("tests/test_initialization.py::test_sparse")
@pytest.mark.parametrize(
    "num_init, weights_init, sparse_init, total",
    [
        (5, Constant(1.0), None, None),
        (0.5, Constant(1.0), None, None),
        (0.5, Constant(1.0), Constant(1.0), None),
        (3, Constant(1.0), None, 30),
        (3, Constant(0.0), Constant(1.0), 70),
        (0.3, Constant(1.0), None, 30),
        (0.3, Constant(0.0), Constant(1.0), 70),
    ],
)
def test_sparse(num_init, weights_init, sparse_init, total):
    rng = np.random.RandomState(1)
    shape = (10, 10)
    weights = Sparse(num_init=num_init, weights_init=weights_init,
                     sparse_init=sparse_init).generate(rng, shape)
    assert weights.shape == shape
    assert weights.dtype == F32
    if sparse_init is None:
        if isinstance(num_init, numbers.Integral):
            assert np.count_nonzero(weights) <= weights.size - num_init * weights.shape[0]
        else:
            assert np.count_nonzero(weights) <= weights.size - num_init * weights.shape[1]
    if total is not None:
        assert np.sum(weights) == total


@pytest.mark.slow
@pytest.mark.ported("tests/test_initialization.py::test_sparse_nd")
@pytest.mark.parametrize(
    "axis, num_init, shape",
    [
        (1, 5, (10, 11)),
        (2, 3, (7, 8, 9)),
        ((2, 3), 5.0 / 6.0, (2, 3, 5, 7)),
        ((0, 1), 3, (3, 5, 7, 11)),
        ((0, 2, 3), 0.5, (2, 3, 2, 6)),
    ],
)
def test_sparse_nd(axis, num_init, shape):
    rng = np.random.RandomState(1)
    weights = SparseND(axis=axis, num_init=num_init, weights_init=Constant(1.0)).generate(
        rng, shape
    )
    axes = (axis,) if isinstance(axis, int) else axis
    assert weights.shape == shape
    assert weights.dtype == F32
    if isinstance(num_init, numbers.Integral):
        nnz = np.prod([s for i, s in enumerate(shape) if i in axes]) * num_init
    else:
        atom_size = np.prod([s for i, s in enumerate(shape) if i not in axes])
        nnz = int(num_init * atom_size) * np.prod([s for i, s in enumerate(shape) if i in axes])
    assert np.count_nonzero(weights) == nnz


@pytest.mark.slow
@pytest.mark.ported("tests/test_initialization.py::test_orthogonal")
def test_orthogonal():
    rng = np.random.RandomState(1)  # one stream for the six draws, as in Blocks
    for shape, scale in [((50, 50), 1.0), ((50, 51), 1.0), ((51, 50), 1.0), ((50, 50), 0.5),
                         ((50, 51), 0.5), ((51, 50), 0.5)]:
        W = Orthogonal(scale).generate(rng, shape)
        assert W.shape == shape
        WWT, WTW = W @ W.T, W.T @ W
        atol = 0.2
        assert WWT.shape == (shape[0], shape[0])
        assert WTW.shape == (shape[1], shape[1])
        assert_allclose(np.diag(WWT), scale**2, atol=atol)
        assert_allclose(np.diag(WTW), scale**2, atol=atol)
        assert_allclose(WWT - np.eye(shape[0]) * scale**2, 0.0, atol=atol)
        assert_allclose(WTW - np.eye(shape[1]) * scale**2, 0.0, atol=atol)
    assert str(Orthogonal(3.0)).endswith(" scale=3.0>")
