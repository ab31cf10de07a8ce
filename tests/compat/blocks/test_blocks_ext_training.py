"""Blocks' tests/extensions/test_training.py and test_timing.py in bricks' idiom."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from bricks.algorithms import GradientDescent, Scale
from bricks.checkpoint import read_resume_state
from bricks.data import IterableDataset
from bricks.errors import ExtensionError
from bricks.extensions import (
    Checkpoint,
    FinishAfter,
    OnLogRecord,
    SharedVariableModifier,
    Timing,
    TrackTheBest,
    TrainingExtension,
)
from bricks.main_loop import MainLoop

from ._blocks_training_mocks import mock_main_loop

ported = pytest.mark.ported
ORIG = "tests/extensions/test_training.py::"


def _regression_loop(extensions, step_rule):
    weights = np.array([-1, 1], np.float32)
    features = [np.array(f, np.float32) for f in [[1, 2], [3, 4], [5, 6]]]
    targets = [np.float32((weights * f).sum()) for f in features]
    dataset = IterableDataset(dict(features=features, targets=targets))

    def cost(params, features, targets):
        return ((features * params["W"]).sum() - targets) ** 2

    sgd = GradientDescent(
        cost=cost, parameters={"W": np.zeros(2, np.float32)}, step_rule=step_rule
    )
    return MainLoop(sgd, dataset.get_example_stream(), extensions=extensions)


@ported(ORIG + "test_shared_variable_modifier")
def test_shared_variable_modifier():
    step_rule = Scale(0.001)
    modifier = SharedVariableModifier(step_rule.learning_rate, lambda n: np.float32(10.0 / n))
    main_loop = _regression_loop([FinishAfter(after_n_epochs=1), modifier], step_rule)
    main_loop.run()
    value = main_loop.algorithm.get_hyperparameter(step_rule.learning_rate)
    assert_allclose(value, np.float32(10.0 / 3), rtol=1e-6)


@ported(ORIG + "test_shared_variable_modifier_two_parameters")
def test_shared_variable_modifier_two_parameters():
    step_rule = Scale(0.001)
    modifier = SharedVariableModifier(step_rule.learning_rate, lambda _, val: val * 0.2)
    main_loop = _regression_loop([FinishAfter(after_n_epochs=1), modifier], step_rule)
    main_loop.run()
    value = main_loop.algorithm.get_hyperparameter(step_rule.learning_rate)
    assert_allclose(value, 0.001 * 0.2**3, atol=1e-5)
    with pytest.raises(ExtensionError, match="positional"):
        SharedVariableModifier(step_rule.learning_rate, lambda a, b, c: a)


@ported(ORIG + "test_track_the_best")
def test_track_the_best():
    main_loop = mock_main_loop()
    extension = TrackTheBest("cost")
    extension.main_loop = main_loop
    for cost, best, notified in [(5, 5, True), (6, 5, False), (5, 5, False), (4, 4, True)]:
        main_loop.status["epochs_done"] += 1
        main_loop.status["iterations_done"] += 10
        main_loop.log.current_row["cost"] = cost
        extension.dispatch("after_epoch")
        assert main_loop.status["best_cost"] == best
        assert bool(main_loop.log.current_row.get("cost_best_so_far")) is notified


class WriteCostExtension(TrainingExtension):
    def after_batch(self, batch):
        done = self.main_loop.log.status["iterations_done"]
        self.main_loop.log.current_row["cost"] = abs(done - 5) + 3


@ported(ORIG + "test_save_the_best")
def test_save_the_best(tmp_path):
    dst, dst_best = str(tmp_path / "dst"), str(tmp_path / "dst_best")
    track_cost = TrackTheBest("cost", after_epoch=False, after_batch=True)
    checkpoint = Checkpoint(dst, after_batch=True, save_separately=["log"]).add_condition(
        ["after_batch"], OnLogRecord(track_cost.notification_name), (dst_best,)
    )
    main_loop = mock_main_loop(
        extensions=[FinishAfter(after_n_epochs=1), WriteCostExtension(), track_cost, checkpoint]
    )
    main_loop.run()
    assert main_loop.log[4]["saved_to"] == [dst, dst_best]
    assert main_loop.log[5]["saved_to"] == [dst, dst_best]
    assert main_loop.log[6]["saved_to"] == [dst]
    state, _, _ = read_resume_state(dst_best)
    assert state["log"]["status"]["iterations_done"] == 5
    assert (tmp_path / "dst_best" / "log.json").is_file()
    assert len(list((tmp_path / "dst_best").glob("ckpt-*"))) == 1  # the newest best only


@ported("tests/extensions/test_timing.py::test_timing")
def test_timing():
    epochs = 2
    main_loop = mock_main_loop(
        delay_time=0.1,
        extensions=[
            Timing(prefix="each", name="each"),  # bricks: extension names are unique
            Timing(prefix="each_second", every_n_epochs=2, name="each_second"),
            FinishAfter(after_n_epochs=epochs),
        ],
    )
    main_loop.run()
    iterations = main_loop.log.status["iterations_done"] // epochs
    log = main_loop.log
    # the every-second-epoch timing covers both epochs: twice one epoch's time
    each = [log[i * iterations]["each_time_train_this_epoch"] for i in (1, 2)]
    assert_allclose(
        sum(each),
        log.current_row["each_second_time_train_this_epoch"],
        atol=2e-2,
    )
    assert "each_time_read_data_this_epoch" in log[iterations]
    assert "each_second_time_read_data_this_epoch" not in log[iterations]
    assert "each_second_time_read_data_this_epoch" in log[2 * iterations]


def test_finish_if_no_improvement_watches_a_custom_notification():
    # TrackTheBest(notification_name="lowest") writes "lowest"; appending
    # "_best_so_far" would watch a record nobody writes and never stop
    from bricks.extensions import FinishIfNoImprovement

    class WriteCost(TrainingExtension):
        def after_batch(self, batch):
            self.main_loop.log.current_row["cost"] = 1.0  # never improves after the first

    track = TrackTheBest("cost", notification_name="lowest", after_batch=True)
    stop = FinishIfNoImprovement("lowest", iterations=3)
    safety = FinishAfter(after_n_batches=20)  # without the fix: stops here, not at 4
    main_loop = mock_main_loop(extensions=[WriteCost(), track, stop, safety])
    main_loop.run()
    assert stop.notification_name == "lowest"
    assert main_loop.log.status["iterations_done"] == 4
    assert main_loop.log[4]["lowest_patience_iterations"] == 0
