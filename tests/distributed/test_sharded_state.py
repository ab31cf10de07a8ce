"""Sharded (FSDP-style) parameters and optimizer state: placement, equality with one device,
and everything that reads the state (issue 20)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from bricks.algorithms import GradientDescent, Scale
from bricks.algorithms.parallel import as_parallel
from bricks.distributed import MIN_SHARD_SIZE, DataParallel, host_copy
from bricks.errors import ShardingError

from .fsdp_models import (
    MIN,
    STEPS,
    algorithm,
    assert_same,
    lm_batches,
    mlp_batches,
    sharded,
    train,
)

MLP_LAYOUT = {  # path: (split axis or None, the shape of device 0's piece on 2 devices)
    "/mlp/linear_0.W": (1, (6, 4)),
    "/mlp/linear_0.b": (None, (8,)),  # 8 elements < MIN
    "/mlp/linear_1.W": (0, (4, 3)),
    "/mlp/linear_1.b": (None, (3,)),  # no axis divides by 2
}


# -- which axis --------------------------------------------------------------
def test_the_largest_divisible_axis_is_split():
    parallel = DataParallel(2, shard_parameters=True, min_shard_size=4)
    assert parallel.shard_axis((6, 8)) == 1
    assert parallel.shard_axis((8, 6)) == 0
    assert parallel.shard_axis((3, 4, 4)) == 1  # equal lengths: the first
    assert parallel.shard_axis((5, 7)) is None  # no axis divides by 2
    assert parallel.shard_axis((3,)) is None  # under min_shard_size
    assert parallel.shard_axis(()) is None
    assert DataParallel(2).shard_axis((1024, 1024)) is None  # sharding off
    assert DataParallel(1, shard_parameters=True, min_shard_size=0).shard_axis((4, 4)) is None
    assert DataParallel(2, shard_parameters=True).min_shard_size == MIN_SHARD_SIZE
    assert parallel.sharding_of((6, 8)).spec == PartitionSpec(None, "data")
    assert parallel.sharding_of((5, 7)).spec == PartitionSpec()


def test_describe_says_how_each_array_is_placed():
    described = sharded(2).describe(
        {"w": np.zeros((6, 8)), "b": (8,), "odd": (5, 7), "scalar": ()}
    )
    assert described == {
        "w": "sharded on axis 1 of (6, 8): (6, 4) per device",
        "b": f"replicated (8 elements < min_shard_size {MIN})",
        "odd": "replicated (no axis of (5, 7) divides by 2)",
        "scalar": f"replicated (1 elements < min_shard_size {MIN})",
    }
    assert DataParallel(2).describe({"w": (6, 8)}) == {"w": "replicated"}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"shard_parameters": "yes"}, "shard_parameters must be True or False, got 'yes'"),
        ({"shard_parameters": True, "min_shard_size": -1}, "min_shard_size.*>= 0, got -1"),
        ({"shard_parameters": True, "min_shard_size": 1.5}, "got 1.5"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ShardingError, match=match):
        DataParallel(2, **kwargs)


def test_sharding_without_a_mesh_or_against_the_mesh_is_refused():
    with pytest.raises(ShardingError, match="needs a mesh.*parallel="):
        as_parallel(None, shard_parameters=True)
    with pytest.raises(ShardingError, match=r"DataParallel\(..., shard_parameters=True\)"):
        as_parallel(DataParallel(2), shard_parameters=True)
    with pytest.raises(ShardingError, match="needs a mesh"):
        GradientDescent(cost=lambda p, x: (p["w"] * x).sum(),
                        parameters={"w": np.ones(2, np.float32)}, shard_parameters=True)
    assert as_parallel(2, shard_parameters=True).shard_parameters
    assert isinstance(ShardingError("x"), ValueError)


# -- placement -----------------------------------------------------------------
def test_parameters_and_adam_moments_are_sharded_the_rest_replicated():
    trained = algorithm("mlp", sharded(2))
    trained.process_batch(mlp_batches(1)[0])
    state = trained._state
    (mean, var, time), hyper = state["opt"].buffers, state["opt"].hyperparams
    for path, (axis, piece) in MLP_LAYOUT.items():
        for value in (state["params"][path], mean[path], var[path]):
            spec = PartitionSpec() if axis is None else PartitionSpec(*[None] * axis, "data")
            assert value.sharding.spec == spec, path
            assert len(value.sharding.device_set) == 2
            assert value.addressable_shards[0].data.shape == piece, path
    for leaf in jax.tree_util.tree_leaves((time, hyper, state["acc"], state["step"])):
        assert leaf.sharding.is_fully_replicated
    described = trained.parallel.describe(trained.current_parameters())
    assert described["/mlp/linear_0.W"] == "sharded on axis 1 of (6, 8): (6, 4) per device"


def test_the_sharded_state_is_donated():
    trained = algorithm("mlp", sharded(2))
    data = mlp_batches(2)
    trained.process_batch(data[0])
    before = trained._state["params"]["/mlp/linear_0.W"]
    moment = trained._state["opt"].buffers[0]["/mlp/linear_0.W"]
    trained.process_batch(data[1])
    assert before.is_deleted() and moment.is_deleted()
    after = trained._state["params"]["/mlp/linear_0.W"]
    assert after.sharding.spec == PartitionSpec(None, "data")


def test_sgd_against_numpy_with_the_weight_sharded():
    rng = np.random.RandomState(1)
    x, y = rng.randn(6, 4).astype(np.float32), rng.randn(6).astype(np.float32)
    trained = GradientDescent(
        cost=lambda p, x, y: ((x @ p["w"] - y) ** 2).mean(),
        parameters={"w": np.zeros(4, np.float32)}, step_rule=Scale(0.1),
        parallel=DataParallel(2, shard_parameters=True, min_shard_size=0))
    w = np.zeros(4, np.float32)
    for _ in range(3):
        trained.process_batch({"x": x, "y": y})
        w = w - 0.1 * 2 * x.T @ (x @ w - y) / len(y)
    assert trained.current_parameters()["w"].addressable_shards[0].data.shape == (2,)
    np.testing.assert_allclose(trained.parameter_values()["w"], w, rtol=1e-5)


def test_host_copy_reads_every_sharding():
    parallel = sharded(2)
    tree = {"w": np.arange(48, dtype=np.float32).reshape(6, 8), "s": np.float32(2)}
    placed = parallel.place_state(tree, parallel.shardings(tree))
    assert placed["w"].sharding.spec == PartitionSpec(None, "data")
    back = host_copy(placed)
    assert isinstance(back["w"], np.ndarray)
    np.testing.assert_array_equal(back["w"], tree["w"])
    assert float(back["s"]) == 2.0


# -- equality with one device --------------------------------------------------
@pytest.fixture(scope="module")
def single_mlp():
    return train("mlp")


@pytest.fixture(scope="module")
def single_lm():
    return train("lm")


@pytest.mark.slow
def test_sharded_mlp_on_two_devices_equals_one(single_mlp):
    params, costs = train("mlp", sharded(2))
    assert_same(params, single_mlp[0])
    assert len(costs) == STEPS
    np.testing.assert_allclose(costs, single_mlp[1], rtol=1e-5)


@pytest.mark.slow
def test_sharded_lstm_lm_on_two_devices_equals_one(single_lm):
    params, costs = train("lm", sharded(2))
    assert_same(params, single_lm[0])
    assert len(costs) == STEPS
    np.testing.assert_allclose(costs, single_lm[1], rtol=1e-5)


@pytest.mark.slow
def test_sharded_in_scans_equals_one(single_lm):
    params, costs = train("lm", sharded(2), steps_per_call=7)  # 50 = 7 x 7 + a masked chunk
    assert_same(params, single_lm[0])
    np.testing.assert_allclose(costs, single_lm[1], rtol=1e-5)
