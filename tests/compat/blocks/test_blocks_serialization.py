"""Blocks' tests/test_serialization.py as checkpoint semantics: bricks never pickles.

Blocks pickled objects into a tar file with their parameters as ``.npy``
members (``dump``, ``load``, ``load_parameters``, ``add_to_dump``,
``secure_dump``). bricks writes checkpoint directories in open formats
(:mod:`bricks.checkpoint`): parameters by path, JSON state, checksums, an
atomic rename; ``Checkpoint(save_separately=[...])`` adds named files.
"""

import json

import numpy as np
import pytest
from numpy.testing import assert_allclose

from bricks.algorithms import GradientDescent, Scale
from bricks.checkpoint import (
    CheckpointManager,
    load_parameters,
    read_checkpoint,
    read_resume_state,
    write_checkpoint,
)
from bricks.core import MLP, Constant, Linear
from bricks.errors import BrickTreeError, CheckpointWriteError
from bricks.extensions import Checkpoint, FinishAfter
from bricks.graph import ComputationGraph
from bricks.main_loop import MainLoop

ported = pytest.mark.ported
ORIG = "tests/test_serialization.py::"


def _mlp(name="mlp"):
    mlp = MLP([None, None], [10, 10, 10], weights_init=Constant(1.0), use_bias=False, name=name)
    mlp.initialize()
    return mlp


def _double_second(mlp):
    second = mlp.linear_transformations[1]
    path = f"{second.path}.W"
    second.set_parameter_values({path: np.asarray(second.get_parameter_values()[path]) * 2})


@ported(ORIG + "test_renamer")
def test_renamer(tmp_path):
    # Blocks named shared variables for the dump ('|linear.W', 'named',
    # 'parameter_2' ...); bricks stores each value under its unique path,
    # and values outside bricks under the names they were given
    layer = Linear(10, 10, name="linear", weights_init=Constant(0.0), biases_init=Constant(0.0))
    layer.initialize()
    arrays = {**layer.get_parameter_values(), "named": np.zeros(2), "tag_named": np.zeros(2)}
    manager = CheckpointManager(tmp_path)
    manager.save(0, {}, arrays)
    assert set(load_parameters(tmp_path)) == {"/linear.W", "/linear.b", "named", "tag_named"}


@ported(ORIG + "test_serialization")
def test_serialization(tmp_path):
    mlp = _mlp()
    _double_second(mlp)
    CheckpointManager(tmp_path / "dump").save(0, {}, mlp.get_parameter_values())
    numpy_data = load_parameters(tmp_path / "dump")
    assert set(numpy_data) == {"/mlp/linear_0.W", "/mlp/linear_1.W"}
    assert_allclose(numpy_data["/mlp/linear_0.W"], np.ones((10, 10)))
    assert numpy_data["/mlp/linear_0.W"].dtype == np.float32
    # "loading" is setting the values into a model built by code
    fresh = _mlp()
    fresh.set_parameter_values(numpy_data)
    assert_allclose(fresh.linear_transformations[1].get_parameter_values()["/mlp/linear_1.W"], 2)
    # Blocks renamed duplicates '/mlp/linear.W_2'; bricks refuses two parameters on one path
    for child in fresh.children:
        child.name = "linear"
    with pytest.raises(BrickTreeError, match="share the path"):
        fresh.get_parameter_values()
    # only parameters (Blocks' dump(None, f, parameters=...)): nothing else is stored
    state, arrays, _ = read_checkpoint(next((tmp_path / "dump").glob("ckpt-*")))
    assert state == {} and set(arrays) == set(numpy_data)


def _trained_loop(path, save_separately):
    mlp = _mlp()
    graph = ComputationGraph(lambda x: mlp.apply(x).mean(), x=(None, 10))
    stream = [{"x": np.ones((2, 10), np.float32)}] * 3
    checkpoint = Checkpoint(path, save_separately=save_separately)
    algorithm = GradientDescent(cost=graph, step_rule=Scale(0.01))
    loop = MainLoop(
        algorithm, stream, model=graph, extensions=[FinishAfter(after_n_batches=2), checkpoint]
    )
    loop.run()
    return loop, graph


@ported(ORIG + "test_add_to_dump")
def test_add_to_dump(tmp_path):
    # Blocks added named objects to a dump; bricks writes named files beside
    # each checkpoint, in open formats
    loop, graph = _trained_loop(tmp_path, ["parameters", "model", "log"])
    names = {p.name for p in tmp_path.iterdir() if not p.name.startswith(".")}
    assert {"parameters.npz", "model.npz", "log.json"} <= names
    with np.load(tmp_path / "parameters.npz", allow_pickle=False) as saved:
        assert set(saved.files) == set(graph.parameter_values())
        for path, value in loop.algorithm.parameter_values().items():
            assert_allclose(saved[path], value)
    # a name with no open format is refused (Blocks refused reserved names)
    checkpoint = Checkpoint(tmp_path / "other", save_separately=["data_stream"], name="c2")
    checkpoint.main_loop = loop
    with pytest.raises(CheckpointWriteError, match="open format"):
        checkpoint.do("after_epoch")


@ported(ORIG + "test_secure_dump")
def test_secure_dump(tmp_path):
    # Blocks wrote to a temporary file and moved it into place only when the
    # pickling succeeded; a bricks checkpoint is written the same way
    good = write_checkpoint(tmp_path, "ckpt-000000001", {"a": 1}, {"x": np.ones(2)})
    with pytest.raises(CheckpointWriteError):
        write_checkpoint(tmp_path, "ckpt-000000002", {"a": 1}, {"x": np.array([object()])})
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.name]  # nothing half-written
    state, arrays, _ = read_checkpoint(good)
    assert state == {"a": 1}
    assert_allclose(arrays["x"], 1)


@ported(ORIG + "test_dump_and_add_to_dump")
def test_dump_and_add_to_dump(tmp_path):
    loop, _ = _trained_loop(tmp_path, ["log"])
    state, _, _ = read_resume_state(tmp_path)
    assert state["log"]["status"]["iterations_done"] == 2  # the main object
    log = json.loads((tmp_path / "log.json").read_text())  # the added one
    assert log["status"]["iterations_done"] == 2


@ported(ORIG + "test_protocol0_regression")
def test_protocol0_regression(tmp_path):
    # a brick's parameters round-trip exactly (shape, dtype, values), whatever they hold
    brick = Linear(5, 10, weights_init=Constant(0.5), biases_init=Constant(-1.0))
    brick.initialize()
    values = brick.get_parameter_values()
    CheckpointManager(tmp_path).save(0, {}, values)
    loaded = load_parameters(tmp_path)
    for path, value in values.items():
        assert loaded[path].dtype == np.asarray(value).dtype
        np.testing.assert_array_equal(loaded[path], value)
