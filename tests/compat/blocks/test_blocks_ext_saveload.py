"""Blocks' tests/extensions/test_saveload.py as checkpoint semantics (bricks never pickles).

Blocks saved the pickled main loop into one ``.tar`` file; bricks writes a
checkpoint directory (``ckpt-NNNNNNNNN``) in open formats, and
``save_separately=["log"]`` adds ``log.json`` beside it.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from bricks.algorithms import GradientDescent
from bricks.core import MLP, Constant
from bricks.data import IndexableDataset
from bricks.errors import CheckpointError
from bricks.extensions import Checkpoint, FinishAfter, Load
from bricks.graph import ComputationGraph
from bricks.main_loop import MainLoop

ported = pytest.mark.ported
ORIG = "tests/extensions/test_saveload.py::TestCheckpoint::"


class Setup:
    """Blocks' setUp: train 5 batches and checkpoint into ``path``."""

    def __init__(self, path):
        self.mlp = MLP([None], [10, 10], weights_init=Constant(1.0), use_bias=False)
        self.mlp.initialize()
        self.linear = self.mlp.linear_transformations[0]
        self.data = np.random.RandomState(1).rand(10, 10).astype(np.float32)
        self.path = path
        self.model = ComputationGraph(lambda data: self.mlp.apply(data).mean(), data=(10,))
        self.algorithm = GradientDescent(cost=self.model)
        self.main_loop = MainLoop(
            self.algorithm,
            self.stream(),
            model=self.model,
            extensions=[FinishAfter(after_n_batches=5), Checkpoint(path, save_separately=["log"])],
        )
        self.main_loop.run()

    def stream(self):
        return IndexableDataset({"data": self.data}).get_example_stream()

    def W(self):
        return np.asarray(self.linear.get_parameter_values()[f"{self.linear.path}.W"])


@pytest.fixture
def setup(tmp_path):
    return Setup(tmp_path / "myweirdmodel")


@ported(ORIG + "test_save_and_load")
def test_save_and_load(setup):
    old_value = setup.W()
    assert not np.allclose(old_value, 1.0)  # trained: the bricks show the trained values
    setup.linear.set_parameter_values({f"{setup.linear.path}.W": old_value * 2})
    new_main_loop = MainLoop(
        setup.algorithm, setup.stream(), model=setup.model, extensions=[Load(setup.path)]
    )
    new_main_loop._run_extensions("before_training")
    assert_allclose(setup.W(), old_value)
    assert (setup.path / "log.json").is_file()


@ported(ORIG + "test_load_log_and_iteration_state")
def test_load_log_and_iteration_state(setup):
    stream = setup.stream()
    new_main_loop = MainLoop(
        setup.algorithm, stream, model=setup.model, extensions=[Load(setup.path)]
    )
    new_main_loop._run_extensions("before_training")
    assert new_main_loop.log.status == setup.main_loop.log.status  # exactly as saved
    new = next(iter(stream.get_epoch_iterator(as_dict=True)))["data"]
    old = next(setup.main_loop.iteration_state)["data"]
    assert_allclose(new, old)
    assert_allclose(new, setup.data[5])
    # once it runs, the main loop marks the resumption (Blocks' log.resume())
    new_main_loop.extensions.append(FinishAfter(after_n_batches=6, name="again"))
    new_main_loop.extensions[-1].set_main_loop(new_main_loop)
    new_main_loop.extensions[0].conditions = []  # loaded already
    new_main_loop.run()
    assert new_main_loop.log.status["resumed_from"] == 5
    assert new_main_loop.log.status["iterations_done"] == 6


@ported(ORIG + "test_load_nonexisting")
def test_load_nonexisting(setup, tmp_path):
    load = Load(tmp_path / "mynonexisting")
    load.main_loop = setup.main_loop
    load.do("before_training")  # nothing there yet: training starts from scratch
    assert load.loaded_from is None


@ported(ORIG + "test_loading_exception")
def test_loading_exception(setup, tmp_path):
    path = tmp_path / "not_a_checkpoint"
    path.write_text("a")
    load = Load(path)
    load.main_loop = setup.main_loop
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load.do("before_training")


@ported(ORIG + "test_checkpoint_exception")
def test_checkpoint_exception(setup, tmp_path):
    checkpoint = Checkpoint(tmp_path / "elsewhere", save_separately=["foo"])
    checkpoint.main_loop = setup.main_loop
    with pytest.raises(AttributeError, match="'foo'"):
        checkpoint.do(None)
    assert not (tmp_path / "elsewhere").exists() or not any((tmp_path / "elsewhere").iterdir())
