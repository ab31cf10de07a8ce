"""Initialization schemes: statistics and structure of what they draw."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bricks.core import (
    Constant,
    IdentityInit,
    IsotropicGaussian,
    Linear,
    Orthogonal,
    Sparse,
    Uniform,
)
from bricks.core.initialization import InitializationError

KEY = jax.random.key(0)


def test_constant():
    np.testing.assert_array_equal(Constant(3.0)(KEY, (2, 3)), np.full((2, 3), 3.0))
    np.testing.assert_array_equal(Constant([1.0, 2.0])(KEY, (3, 2)), [[1.0, 2.0]] * 3)


def test_isotropic_gaussian_statistics():
    x = np.asarray(IsotropicGaussian(std=0.5, mean=2.0)(KEY, (200, 200)))
    assert abs(x.mean() - 2.0) < 0.01
    assert abs(x.std() - 0.5) < 0.01


@pytest.mark.parametrize("kwargs", [dict(width=2.0), dict(std=2.0 / np.sqrt(12))])
def test_uniform_width_and_std(kwargs):
    x = np.asarray(Uniform(mean=1.0, **kwargs)(KEY, (200, 200)))
    assert x.min() >= 0.0 and x.max() <= 2.0
    assert x.min() < 0.01 and x.max() > 1.99
    assert abs(x.mean() - 1.0) < 0.01
    assert abs(x.std() - 2.0 / np.sqrt(12)) < 0.01


def test_uniform_needs_exactly_one_of_width_and_std():
    with pytest.raises(InitializationError):
        Uniform()
    with pytest.raises(InitializationError):
        Uniform(width=1.0, std=1.0)


@pytest.mark.parametrize("shape", [(5, 5), (7, 3), (3, 7)])
def test_orthogonal(shape):
    q = np.asarray(Orthogonal(scale=2.0)(KEY, shape), np.float64) / 2.0
    small = min(shape)
    gram = q.T @ q if shape[0] >= shape[1] else q @ q.T
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-5)
    with pytest.raises(InitializationError):
        Orthogonal()(KEY, (2, 2, 2))


def test_identity():
    np.testing.assert_array_equal(IdentityInit(3.0)(KEY, (3, 3)), 3 * np.eye(3))
    np.testing.assert_array_equal(IdentityInit()(KEY, (2, 3)), np.eye(2, 3))


def test_sparse_exact_non_zeros_per_row():
    x = np.asarray(Sparse(num_init=3, weights_init=Constant(1.0))(KEY, (6, 10)))
    assert np.all((x != 0).sum(axis=1) == 3)
    y = np.asarray(Sparse(0.5, IsotropicGaussian(1.0), Constant(0.25))(KEY, (4, 10)))
    assert np.all((y != 0.25).sum(axis=1) == 5)
    with pytest.raises(InitializationError):
        Sparse(11, Constant(1.0))(KEY, (2, 10))


def test_flax_style_callable_as_scheme():
    lin = Linear(30, 20, weights_init=jax.nn.initializers.glorot_uniform(),
                 biases_init=jax.nn.initializers.zeros)
    lin.initialize(seed=0)
    w = np.asarray(lin.W)
    limit = np.sqrt(6 / (30 + 20))
    assert w.shape == (30, 20) and np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.8 * limit
    assert np.all(np.asarray(lin.b) == 0)
    assert lin.W.dtype == jnp.float32
