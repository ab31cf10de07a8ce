"""GradientDescent / MainLoop data-parallel over local devices equals the one-device run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from bricks.algorithms import GradientDescent, Scale
from bricks.distributed import DataParallel
from bricks.errors import BatchShardingError

from .dp_models import STEPS, batches, train

ROOT = Path(__file__).resolve().parents[2]


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.fixture(scope="module")
def single():
    return train(None)


@pytest.mark.slow
def test_two_devices_equal_one(single):
    assert len(jax.devices()) == 2  # tests/conftest.py
    params, costs = train(2)
    _assert_same(params, single[0])
    assert len(costs) == STEPS
    np.testing.assert_allclose(costs, single[1], rtol=1e-5)


@pytest.mark.slow
def test_two_devices_in_scans_equal_one(single):
    params, costs = train(2, steps_per_call=5)
    _assert_same(params, single[0])
    np.testing.assert_allclose(costs, single[1], rtol=1e-5)


def test_state_and_batch_are_placed_on_the_mesh():
    from .dp_models import mlp_algorithm

    algorithm = mlp_algorithm(2)
    algorithm.process_batch(batches(1)[0])
    state = algorithm._state
    for leaf in jax.tree_util.tree_leaves(state):
        assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 2
    sharded = algorithm.parallel.shard_batch(batches(1)[0])
    assert sharded["features"].sharding.spec == PartitionSpec("data")
    assert {s.data.shape for s in sharded["features"].addressable_shards} == {(4, 5)}


def test_sgd_against_numpy_on_two_devices():
    rng = np.random.RandomState(1)
    x, y = rng.randn(6, 4).astype(np.float32), rng.randn(6).astype(np.float32)
    algorithm = GradientDescent(
        cost=lambda p, x, y: ((x @ p["w"] - y) ** 2).mean(),
        parameters={"w": np.zeros(4, np.float32)}, step_rule=Scale(0.1), parallel=2)
    w = np.zeros(4, np.float32)
    for _ in range(3):
        algorithm.process_batch({"x": x, "y": y})
        w = w - 0.1 * 2 * x.T @ (x @ w - y) / len(y)
    np.testing.assert_allclose(algorithm.parameter_values()["w"], w, rtol=1e-5)


def test_indivisible_batch_is_refused_by_name():
    algorithm = GradientDescent(
        cost=lambda p, x: (p["w"] * x).sum(), parameters={"w": np.ones(3, np.float32)},
        parallel=2)
    with pytest.raises(BatchShardingError, match=r"'x'.*3 rows.*2 devices"):
        algorithm.process_batch({"x": np.ones((3, 3), np.float32)})


def test_time_major_batch_axis():
    parallel = DataParallel(2, batch_axes={"x": 1})
    x = parallel.shard_batch({"x": np.ones((5, 4, 3), np.float32)})["x"]
    assert {s.data.shape for s in x.addressable_shards} == {(5, 2, 3)}
    with pytest.raises(BatchShardingError, match="no batch axis 1"):
        parallel.shard_batch({"x": np.ones(4, np.float32)})


@pytest.mark.slow
def test_restored_state_is_replicated_and_trains_on(single):
    from .dp_models import mlp_algorithm

    one = mlp_algorithm(None)
    data = batches()
    for b in data[:10]:
        one.process_batch(b)
    meta, arrays = one.get_state()
    two = mlp_algorithm(2)
    two.set_state(meta, arrays)
    for b in data[10:20]:
        one.process_batch(b)
        two.process_batch(b)
    _assert_same(two.parameter_values(), one.parameter_values())


@pytest.mark.slow
def test_four_devices_equal_one_in_a_subprocess(single, tmp_path):
    code = (
        "import json, sys, jax; sys.path.insert(0, sys.argv[1])\n"
        "from tests.distributed.dp_models import train\n"
        "assert len(jax.devices()) == 4\n"
        "p, c = train(4)\n"
        "out = {'params': {k: v.tolist() for k, v in p.items()}, 'costs': c}\n"
        "json.dump(out, open(sys.argv[2], 'w'))\n"
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    out_file = tmp_path / "out.json"
    command = [sys.executable, "-c", code, str(ROOT), str(out_file)]
    subprocess.run(command, env=env, check=True, timeout=300)
    out = json.loads(out_file.read_text())
    _assert_same({k: np.asarray(v) for k, v in out["params"].items()}, single[0])
    np.testing.assert_allclose(out["costs"], single[1], rtol=1e-5)


@pytest.mark.slow
def test_distribute_moves_a_trained_state_onto_the_mesh_and_back():
    from .dp_models import mlp_algorithm

    data = batches(6)
    one, moved = mlp_algorithm(None), mlp_algorithm(None)
    for b in data[:3]:
        one.process_batch(b)
        moved.process_batch(b)
    moved.distribute(2)
    assert len(moved.current_parameters()["/mlp/linear_0.W"].sharding.device_set) == 2
    for b in data[3:5]:
        one.process_batch(b)
        moved.process_batch(b)
    moved.distribute(None)
    assert len(moved.current_parameters()["/mlp/linear_0.W"].sharding.device_set) == 1
    one.process_batch(data[5])
    moved.process_batch(data[5])
    _assert_same(moved.parameter_values(), one.parameter_values())


@pytest.mark.slow
def test_checkpoint_on_two_devices_resumes_on_one_with_the_same_batches():
    """Topology change: 25 steps on 2 devices, the main loop's state, 25 more on 1 device."""
    from bricks.extensions import FinishAfter, TrainingDataMonitoring
    from bricks.main_loop import MainLoop

    from .dp_models import mlp_algorithm, stream

    def loop(parallel, steps):
        return MainLoop(mlp_algorithm(parallel), stream(), extensions=[
            TrainingDataMonitoring(["cost"], prefix="batch", after_batch=True),
            FinishAfter(after_n_batches=steps)])

    whole = loop(None, 50)
    whole.run()
    first = loop(2, 25)
    first.run()
    state, arrays = first.get_state()
    state = json.loads(json.dumps(state))
    assert state["data_stream"]["iterator"] == {"position": 25}
    second = loop(None, 50)
    second.set_state(state, arrays)
    second.run()
    _assert_same(second.algorithm.parameter_values(), whole.algorithm.parameter_values())
    costs = [v for _, v in second.log.records("batch_cost")]
    np.testing.assert_allclose(costs, [v for _, v in whole.log.records("batch_cost")], rtol=1e-5)
