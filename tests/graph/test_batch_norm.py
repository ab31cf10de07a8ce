"""Batch normalization: training mode vs numpy, inference mode, population updates."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from bricks.core import (
    BatchNormalization,
    BatchNormalizedMLP,
    IsotropicGaussian,
    Tanh,
    batch_normalization,
)
from bricks.core.roles import BATCH_NORM_MINIBATCH_ESTIMATE, PARAMETER
from bricks.errors import GraphError
from bricks.graph import (
    ComputationGraph,
    VariableFilter,
    apply_batch_normalization,
    get_batch_normalization_updates,
)

X = (np.random.RandomState(0).randn(8, 3) * [1.0, 3.0, 0.5] + [2.0, -1.0, 0.0]).astype("float32")


def test_inference_is_identity_at_init_and_training_normalizes():
    bn = BatchNormalization(3, epsilon=1e-4, name="bn")
    bn.initialize()
    np.testing.assert_allclose(bn.apply(X), X, rtol=1e-6)
    cg = ComputationGraph(lambda x: bn.apply(x), x=(None, 3))
    np.testing.assert_allclose(cg(x=X), X, rtol=1e-6)
    train = apply_batch_normalization(cg)
    ref = (X - X.mean(0)) / np.sqrt(X.var(0) + 1e-4)
    np.testing.assert_allclose(train(x=X), ref, rtol=1e-4, atol=1e-5)
    with batch_normalization(True):
        np.testing.assert_allclose(bn.apply(X), ref, rtol=1e-4, atol=1e-5)
    # the original graph is still in inference mode
    np.testing.assert_allclose(cg(x=X), X, rtol=1e-6)


def test_population_updates_move_towards_minibatch_statistics():
    bn = BatchNormalization(3, name="bn")
    bn.initialize()
    cg = apply_batch_normalization(ComputationGraph(lambda x: bn.apply(x), x=(None, 3)))
    updates = get_batch_normalization_updates(cg, alpha=0.5)
    assert {u[0] for u in updates} == {"/bn.population_mean", "/bn.population_stdev"}
    assert all(u[1].has_role(BATCH_NORM_MINIBATCH_ESTIMATE) for u in updates)
    p = cg.parameter_values()
    for _ in range(30):
        _, vals = cg.evaluate(p, {"x": X}, extra=[u[1] for u in updates])
        p = dict(p)
        for (path, _, fn), v in zip(updates, vals, strict=True):
            p[path] = fn(p[path], v)
    np.testing.assert_allclose(p["/bn.population_mean"], X.mean(0), rtol=1e-4)
    np.testing.assert_allclose(p["/bn.population_stdev"], np.sqrt(X.var(0) + 1e-4), rtol=1e-4)
    cg.set_parameter_values(p)
    # inference now uses the population statistics
    np.testing.assert_allclose(
        bn.apply(X), (X - X.mean(0)) / np.sqrt(X.var(0) + 1e-4), rtol=1e-3, atol=1e-4
    )
    with_updates = cg.add_updates(updates)
    assert len(with_updates.state_updates) == 2 and cg.state_updates == []


def test_batch_normalized_mlp_and_conv_layout():
    mlp = BatchNormalizedMLP([Tanh(), None], [3, 4, 2], weights_init=IsotropicGaussian(0.5))
    mlp.initialize(seed=2)
    cg = ComputationGraph(lambda x: mlp.apply(x), x=(None, 3))
    trainable = VariableFilter(roles=[PARAMETER])(cg.parameters)
    assert all("population" not in v.path for v in trainable)
    assert not any(v.path.endswith(".b") for v in cg.parameters)  # linear maps have no bias
    train = apply_batch_normalization(cg)
    out = np.asarray(train(x=X))
    # the last layer has no activation: its output is normalized per feature
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-5)
    # per-channel statistics on NCHW images
    bn = BatchNormalization((2, 3, 3), broadcastable=(False, True, True), name="bn2d")
    bn.initialize()
    imgs = np.random.RandomState(1).randn(4, 2, 3, 3).astype("float32") * 3 + 1
    with batch_normalization():
        y = np.asarray(bn.apply(jnp.asarray(imgs)))
    m = imgs.mean(axis=(0, 2, 3), keepdims=True)
    s = np.sqrt(imgs.var(axis=(0, 2, 3), keepdims=True) + 1e-4)
    np.testing.assert_allclose(y, (imgs - m) / s, rtol=1e-4, atol=1e-4)


def test_errors():
    bn = BatchNormalization(3, name="bn")
    bn.initialize()
    cg = ComputationGraph(lambda x: bn.apply(x), x=(None, 3))
    with pytest.raises(GraphError, match="training mode"):
        get_batch_normalization_updates(cg)
    with pytest.raises(GraphError, match="no BatchNormalization"):
        apply_batch_normalization(ComputationGraph(lambda x: x * 2, x=(None, 3)))
