"""Sharded (FSDP-style) parameters and optimizer state: placement, equality with one device,
and everything that reads the state (issue 20)."""

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
from bricks.algorithms.parallel import as_parallel
from bricks.distributed import MIN_SHARD_SIZE, DataParallel, host_copy
from bricks.errors import ShardingError

from .fsdp_models import (
    MIN,
    STEPS,
    algorithm,
    assert_same,
    mlp_batches,
    sharded,
    train,
)
from .test_runner_parallel import _results  # summary.json and the logged train costs

ROOT = Path(__file__).resolve().parents[2]

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
        "scalar": f"replicated (1 element < min_shard_size {MIN})",
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


@pytest.mark.slow
def test_an_optax_rule_state_is_sharded_like_the_parameters():
    import optax

    data = mlp_batches(3)
    runs = []
    for parallel in (None, sharded(2)):
        trained = algorithm("mlp", parallel, step_rule=optax.adam(0.01))
        _steps(trained, data)
        runs.append(trained)
    adam = runs[1]._state["opt"][0]  # ScaleByAdamState(count, mu, nu)
    for moments in (adam.mu, adam.nu):
        assert moments["/mlp/linear_0.W"].sharding.spec == PartitionSpec(None, "data")
        assert moments["/mlp/linear_1.W"].addressable_shards[0].data.shape == (4, 3)
        assert moments["/mlp/linear_1.b"].sharding.is_fully_replicated
    assert adam.count.sharding.is_fully_replicated
    assert_same(runs[1].parameter_values(), runs[0].parameter_values())


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
def single():
    """``single(model)``: parameters and costs of the one-device run (each trained once)."""
    runs: dict = {}

    def get(model):
        if model not in runs:
            runs[model] = train(model)
        return runs[model]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "lm"])
def test_sharded_on_two_devices_equals_one(single, model):
    params, costs = train(model, sharded(2))
    assert_same(params, single(model)[0])
    assert len(costs) == STEPS
    np.testing.assert_allclose(costs, single(model)[1], rtol=1e-5)


@pytest.mark.slow
def test_sharded_in_scans_equals_one(single):
    params, costs = train("lm", sharded(2), steps_per_call=7)  # 50 = 7 x 7 + a masked chunk
    assert_same(params, single("lm")[0])
    np.testing.assert_allclose(costs, single("lm")[1], rtol=1e-5)


@pytest.mark.slow
def test_four_devices_sharded_equal_one_in_a_subprocess(single, tmp_path):
    code = (
        "import json, sys, jax; sys.path.insert(0, sys.argv[1])\n"
        "from tests.distributed.fsdp_models import algorithm, sharded, train\n"
        "assert len(jax.devices()) == 4\n"
        "out = {}\n"
        "for model in ('mlp', 'lm'):\n"
        "    p, c = train(model, sharded(4))\n"
        "    out[model] = {'params': {k: v.tolist() for k, v in p.items()}, 'costs': c}\n"
        "a = algorithm('lm', sharded(4))\n"
        "out['layout'] = a.parallel.describe(a.current_parameters())\n"
        "json.dump(out, open(sys.argv[2], 'w'))\n"
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    out_file = tmp_path / "out.json"
    subprocess.run([sys.executable, "-c", code, str(ROOT), str(out_file)], env=env,
                   check=True, timeout=600)
    out = json.loads(out_file.read_text())
    for model in ("mlp", "lm"):
        assert_same({k: np.asarray(v) for k, v in out[model]["params"].items()}, single(model)[0])
        np.testing.assert_allclose(out[model]["costs"], single(model)[1], rtol=1e-5)
    assert out["layout"]["/embed.W"] == "sharded on axis 0 of (12, 8): (3, 8) per device"
    assert out["layout"]["/readout.W"] == "sharded on axis 1 of (8, 12): (8, 3) per device"


# -- everything that reads the state ---------------------------------------------
def _steps(trained, data):
    for b in data:
        trained.process_batch(b)


@pytest.mark.slow
def test_a_state_saved_sharded_restores_unsharded_and_back():
    data = mlp_batches(30)
    whole = algorithm("mlp")
    _steps(whole, data)
    first = algorithm("mlp", sharded(2))
    _steps(first, data[:10])
    meta, arrays = first.get_state()
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    assert arrays["params//mlp/linear_0.W"].shape == (6, 8)  # whole, not device 0's piece
    second = algorithm("mlp")  # unsharded
    second.set_state(meta, arrays)
    _steps(second, data[10:20])
    third = algorithm("mlp", sharded(2))  # sharded again
    third.set_state(*second.get_state())
    restored = third.current_parameters()["/mlp/linear_0.W"]
    assert restored.addressable_shards[0].data.shape == (6, 4)
    _steps(third, data[20:])
    assert_same(third.parameter_values(), whole.parameter_values())
    assert int(third._state["step"]) == 30


@pytest.mark.slow
@pytest.mark.parametrize("first_sharded", [True, False])
def test_checkpoint_resumes_across_sharding(tmp_path, first_sharded):
    """25 steps (sharded or not), a checkpoint, 25 more the other way: equal to 50 steps."""
    from bricks.checkpoint import restore_main_loop
    from bricks.extensions import Checkpoint, FinishAfter, TrainingDataMonitoring
    from bricks.main_loop import MainLoop

    from .fsdp_models import stream

    def loop(parallel, steps, *extra):
        return MainLoop(algorithm("mlp", parallel), stream("mlp"), extensions=[
            TrainingDataMonitoring(["cost"], prefix="batch", after_batch=True),
            FinishAfter(after_n_batches=steps), *extra])

    whole = loop(None, STEPS)
    whole.run()
    order = [sharded(2), None] if first_sharded else [None, sharded(2)]
    first = loop(order[0], 25, Checkpoint(tmp_path / "ckpt"))
    first.run()
    second = loop(order[1], STEPS)
    restore_main_loop(second, tmp_path / "ckpt")
    second.run()
    assert second.status["iterations_done"] == STEPS
    assert_same(second.algorithm.parameter_values(), whole.algorithm.parameter_values())
    costs = [v for _, v in first.log.records("batch_cost")]
    costs += [v for i, v in second.log.records("batch_cost") if i > 25]
    np.testing.assert_allclose(costs, [v for _, v in whole.log.records("batch_cost")],
                               rtol=1e-5)


def _numpy_mlp(values, x):
    h = np.tanh(x @ values["/mlp/linear_0.W"] + values["/mlp/linear_0.b"])
    logits = h @ values["/mlp/linear_1.W"] + values["/mlp/linear_1.b"]
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


@pytest.mark.slow
def test_bricks_monitoring_and_snapshots_read_sharded_values():
    from bricks.extensions import DataStreamMonitoring, FinishAfter
    from bricks.main_loop import MainLoop

    from .fsdp_models import mlp_graph, stream

    graph, mlp = mlp_graph()
    trained = GradientDescent(cost=graph, step_rule=Scale(0.1), parallel=sharded(2))
    valid = mlp_batches(2, seed=5)
    loop = MainLoop(trained, stream("mlp", 3), extensions=[
        DataStreamMonitoring(["cost"], stream("mlp", 2), prefix="valid", after_batch=True),
        FinishAfter(after_n_batches=3)])
    loop.run()
    values = trained.parameter_values()
    x = valid[0]["features"]
    np.testing.assert_allclose(mlp.apply(x), _numpy_mlp(values, x), rtol=1e-5)  # live values
    train_data = mlp_batches(2)  # stream("mlp", 2) serves the first two batches of seed 0
    ce = [-np.log(_numpy_mlp(values, b["features"])[np.arange(8), b["targets"]]).mean()
          for b in train_data]
    logged = [v for _, v in loop.log.records("valid_cost")][-1]  # after the last step
    np.testing.assert_allclose(logged, np.mean(ce), rtol=1e-5)
    # a snapshot reads what get_state reads; hyperparameters still change without a re-compile
    meta, arrays = trained.get_state()
    snap_meta, snap_arrays = trained.snapshot().get_state()
    assert meta == snap_meta and arrays.keys() == snap_arrays.keys()
    for k in arrays:
        np.testing.assert_array_equal(arrays[k], snap_arrays[k], err_msg=k)
    compiled = trained.compilations
    trained.set_hyperparameter("learning_rate", 0.0)
    before = trained.parameter_values()
    _steps(trained, mlp_batches(1, seed=7))
    assert_same(trained.parameter_values(), before, rtol=0)
    assert trained.compilations == compiled


def _train_with_writes(parallel):
    from .fsdp_models import mlp_graph

    graph, mlp = mlp_graph()
    trained = GradientDescent(cost=graph, step_rule=Scale(0.1), parallel=parallel)
    data = mlp_batches(3)
    trained.process_batch(data[0])
    one_device = jax.device_put(np.full((6, 8), 0.5, np.float32), jax.devices()[1])
    for i, value in enumerate([np.ones((6, 8), np.float32), one_device]):
        mlp.set_parameter_values({"/mlp/linear_0.W": value})
        if parallel is not None:
            placed = trained.current_parameters()["/mlp/linear_0.W"]
            assert placed.sharding == trained.parallel.sharding_of((6, 8))
        trained.process_batch(data[1 + i])
    return trained


@pytest.mark.slow
@pytest.mark.parametrize("parallel", [DataParallel(2), sharded(2)], ids=["replicated", "sharded"])
def test_a_value_written_into_a_brick_is_placed_on_the_mesh(parallel):
    """A brick value set while training (a numpy array, or an array on one device) is placed
    as the compiled step expects it: trained from, with no re-compile and no sharding error."""
    trained = _train_with_writes(parallel)
    assert trained.compilations == 1
    assert_same(trained.parameter_values(), _train_with_writes(None).parameter_values())


@pytest.mark.slow
def test_remove_not_finite_skips_a_step_on_sharded_state():
    from bricks.algorithms import Adam, CompositeRule, RemoveNotFinite

    data = mlp_batches(6)
    data[2] = {**data[2], "features": np.full_like(data[2]["features"], np.nan)}
    runs = []
    for parallel in (None, sharded(2)):
        trained = algorithm("mlp", parallel,
                            step_rule=CompositeRule([Adam(0.01), RemoveNotFinite()]))
        _steps(trained, data)
        trained.check_finite()
        assert trained.skipped_steps == 1
        runs.append(trained.parameter_values())
    assert_same(runs[1], runs[0])
    assert all(np.isfinite(v).all() for v in runs[1].values())


@pytest.mark.slow
def test_distribute_shards_a_trained_state_and_gathers_it_back():
    data = mlp_batches(6)
    one, moved = algorithm("mlp"), algorithm("mlp")
    _steps(one, data[:3])
    _steps(moved, data[:3])
    moved.distribute(2, shard_parameters=True)
    assert moved.parallel.min_shard_size == MIN_SHARD_SIZE  # the default: (6, 8) is too small
    assert moved.current_parameters()["/mlp/linear_0.W"].sharding.is_fully_replicated
    moved.distribute(sharded(2))
    assert moved.current_parameters()["/mlp/linear_0.W"].addressable_shards[0].data.shape == (6, 4)
    _steps(one, data[3:5])
    _steps(moved, data[3:5])
    moved.distribute(None)
    assert len(moved.current_parameters()["/mlp/linear_0.W"].sharding.device_set) == 1
    _steps(one, data[5:])
    _steps(moved, data[5:])
    assert_same(moved.parameter_values(), one.parameter_values())


# -- the runner ------------------------------------------------------------------
CONFIG = str(Path(__file__).with_name("fsdp_config.py"))


def _run(*args: str, devices: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    return subprocess.run([sys.executable, "-m", "experiments.run", CONFIG, *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=400)


def test_runner_refuses_sharding_it_cannot_do(tmp_path, capsys):
    from experiments.run import main

    out = str(tmp_path / "r")
    assert main([CONFIG, "--output-dir", out, "--devices", "1", "--shard-parameters"]) == 2
    assert "--shard-parameters splits parameters over several devices" in capsys.readouterr().err
    assert main([CONFIG, "--output-dir", out + "2", "--devices", "2", "--min-shard-size", "9"]) == 2
    assert "--min-shard-size is the threshold of --shard-parameters" in capsys.readouterr().err


@pytest.mark.slow
def test_runner_shards_parameters_on_two_devices(tmp_path):
    from experiments.run import main

    run = tmp_path / "d"
    assert main([CONFIG, "--output-dir", str(run), "--devices", "2", "--shard-parameters",
                 "--min-shard-size", str(MIN)]) == 0
    summary, costs = _results(run)
    assert summary["parallel"] == (
        "data-parallel over 2 devices, 1 process(es); parameters and optimizer state sharded "
        f"FSDP-style: 2 of 4 arrays (86.7% of 83 elements; min_shard_size {MIN})")
    layout = summary["results"]["layout"]
    assert layout["/mlp/linear_0.W"] == "sharded on axis 1 of (6, 8): (6, 4) per device"
    single, single_costs = train("mlp", steps=4)
    np.testing.assert_allclose(costs, single_costs, rtol=1e-5)
    assert_same({k: np.asarray(v) for k, v in summary["results"]["params"].items()}, single)


@pytest.mark.slow
def test_two_processes_sharded_save_and_resume_on_one_process(tmp_path):
    """Each weight split over 2 processes (1 device each): parameter_values and the checkpoint
    gather it; the run resumes unsharded on one process and equals the uninterrupted run."""
    first = _run("--output-dir", str(tmp_path / "p"), "--processes", "2", "--shard-parameters",
                 "--min-shard-size", str(MIN), "--set", "num_batches=6")
    assert first.returncode == 0, first.stdout + first.stderr
    summary, _ = _results(tmp_path / "p")
    assert summary["parallel"].startswith("data-parallel over 2 devices, 2 process(es); para")
    single, _ = train("mlp", steps=6)
    assert_same({k: np.asarray(v) for k, v in summary["results"]["params"].items()}, single)
    resumed = _run("--output-dir", str(tmp_path / "p"), "--resume", "--set", "num_batches=12",
                   "--allow-config-change")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "ckpt-000000006" in resumed.stdout
    summary, costs = _results(tmp_path / "p")
    assert summary["parallel"] == "one device" and summary["iterations_done"] == 12
    single, single_costs = train("mlp", steps=12)
    np.testing.assert_allclose(costs[-12:], single_costs, rtol=1e-5)
    assert_same({k: np.asarray(v) for k, v in summary["results"]["params"].items()}, single)


def test_placement_docstring_examples_run():
    import doctest

    import bricks.distributed._placement as placement

    result = doctest.testmod(placement, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0
