"""Monitoring against numpy means, early stopping, schedules, non-finite costs, multi-step calls."""

import io

import numpy as np
import optax
import pytest

from bricks.algorithms import CompositeRule, GradientDescent, Momentum, RemoveNotFinite, Scale
from bricks.errors import ExtensionError, NonFiniteCostError
from bricks.extensions import (
    Aggregation,
    DataStreamMonitoring,
    FinishAfter,
    FinishIfNoImprovement,
    MonitoredQuantity,
    Printing,
    ProgressBar,
    SharedVariableModifier,
    SimpleExtension,
    Timestamp,
    Timing,
    TrackTheBest,
    TrainingDataMonitoring,
)
from bricks.main_loop import MainLoop

from .helpers import ListStream, linear_cost, make_algorithm


def _numpy_costs(stream, n_batches):
    """Per-batch costs of plain SGD (lr 0.1) computed with numpy, before each update."""
    w, b = np.full(3, 0.1, np.float32), np.float32(0)
    costs = []
    batches = list(stream.get_epoch_iterator())
    for i in range(n_batches):
        batch = batches[i % len(batches)]
        x, y = batch["x"], batch["y"]
        err = x @ w + b - y
        costs.append(float(np.mean(err**2)))
        w = w - 0.1 * (2 * x.T @ err / len(y))
        b = b - 0.1 * (2 * err.mean())
    return costs, w


def test_training_data_monitoring_batch_and_epoch_means():
    per_batch = TrainingDataMonitoring(["cost"], prefix="batch", after_batch=True, name="b")
    per_epoch = TrainingDataMonitoring(["cost"], after_epoch=True, name="e")
    every3 = TrainingDataMonitoring(["cost"], prefix="three", every_n_batches=3, name="t")
    loop = MainLoop(
        make_algorithm(),
        ListStream(8, batch_size=2),
        extensions=[per_batch, per_epoch, every3, FinishAfter(after_n_epochs=2)],
    )
    loop.run()
    costs, w = _numpy_costs(ListStream(8, batch_size=2), 8)
    got = [v for _, v in loop.log.records("batch_cost")]
    np.testing.assert_allclose(got, costs, rtol=1e-5)
    np.testing.assert_allclose(
        [loop.log[4]["train_cost"], loop.log[8]["train_cost"]],
        [np.mean(costs[:4]), np.mean(costs[4:])],
        rtol=1e-5,
    )
    np.testing.assert_allclose(loop.log[6]["three_cost"], np.mean(costs[3:6]), rtol=1e-5)
    np.testing.assert_allclose(loop.algorithm.parameter_values()["w"], w, rtol=1e-5)


def test_gradient_and_step_norms_monitored():
    algorithm = make_algorithm(Scale(0.5))
    mon = TrainingDataMonitoring(
        [algorithm.total_gradient_norm, algorithm.total_step_norm], after_batch=True
    )
    loop = MainLoop(
        algorithm, ListStream(2, batch_size=2), extensions=[mon, FinishAfter(after_n_batches=1)]
    )
    loop.run()
    row = loop.log[1]
    np.testing.assert_allclose(
        row["train_total_step_norm"], 0.5 * row["train_total_gradient_norm"], rtol=1e-6
    )


def test_data_stream_monitoring_schemes():
    valid = ListStream(7, batch_size=3, seed=1)

    class Count(MonitoredQuantity):
        def initialize(self):
            self.n = 0

        def aggregate(self, cost):
            self.n += 1

        def get_aggregated_value(self):
            return self.n

    sum_scheme = Aggregation(
        lambda shape, dtype: np.zeros(shape, np.float32),
        lambda acc, value, n: acc + value,
        lambda acc: acc,
    )
    ext = DataStreamMonitoring(
        ["cost", Count(["cost"], "batches")],
        valid,
        after_training=True,
        aggregation={"cost": "mean"},
    )
    mins = DataStreamMonitoring(
        ["cost"], valid, prefix="min", after_training=True, aggregation={"cost": "min"}, name="mins"
    )
    maxs = DataStreamMonitoring(
        ["cost"], valid, prefix="max", after_training=True, aggregation={"cost": "max"}, name="maxs"
    )
    sums = DataStreamMonitoring(
        ["cost"],
        valid,
        prefix="sum",
        after_training=True,
        aggregation={"cost": sum_scheme},
        name="sums",
    )
    cat = DataStreamMonitoring(
        ["cost"],
        valid,
        prefix="cat",
        after_training=True,
        aggregation={"cost": "concatenate"},
        name="cat",
    )
    algorithm = make_algorithm()
    loop = MainLoop(
        algorithm,
        ListStream(4),
        extensions=[FinishAfter(after_n_batches=2), ext, mins, maxs, sums, cat],
    )
    loop.run()
    p = algorithm.parameter_values()
    per_batch, sizes = [], []
    for batch in valid.get_epoch_iterator():
        per_batch.append(float(linear_cost(p, batch["x"], batch["y"])))
        sizes.append(len(batch["y"]))
    row = loop.log.current_row
    expected_mean = float(np.mean((valid.data["x"] @ p["w"] + p["b"] - valid.data["y"]) ** 2))
    np.testing.assert_allclose(row["valid_cost"], expected_mean, rtol=1e-5)
    np.testing.assert_allclose(np.average(per_batch, weights=sizes), expected_mean, rtol=1e-5)
    np.testing.assert_allclose(row["min_cost"], min(per_batch), rtol=1e-5)
    np.testing.assert_allclose(row["max_cost"], max(per_batch), rtol=1e-5)
    np.testing.assert_allclose(row["sum_cost"], sum(per_batch), rtol=1e-5)
    np.testing.assert_allclose(row["cat_cost"], per_batch, rtol=1e-5)
    assert row["valid_batches"] == 3
    with pytest.raises(ExtensionError, match="not monitored"):
        from bricks.extensions import DatasetEvaluator

        DatasetEvaluator(["cost"], algorithm.graph, aggregation={"cots": "min"})


def test_early_stopping_fires_at_expected_epoch():
    class FakeValid(SimpleExtension):
        """Writes a scripted validation cost after each epoch."""

        values = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 2.0, 9.0]

        def do(self, which, *args):
            log = self.main_loop.log
            log.current_row["valid_cost"] = self.values[log.status["epochs_done"] - 1]

    loop = MainLoop(
        make_algorithm(),
        ListStream(2),
        extensions=[
            FakeValid(after_epoch=True),
            TrackTheBest("valid_cost"),
            FinishIfNoImprovement("valid_cost", epochs=3),
            FinishAfter(after_n_epochs=8),
        ],
    )
    loop.run()
    assert loop.log.status["epochs_done"] == 6  # best at epoch 3, then 3 epochs without
    assert loop.log.status["best_valid_cost"] == 3.0
    assert [i for i, _ in loop.log.records("valid_cost_best_so_far")] == [2, 4, 6]


def test_learning_rate_schedule_without_recompile():
    algorithm = make_algorithm(Momentum(0.1, 0.5))
    seen = []

    class Watch(SimpleExtension):
        def do(self, which, *args):
            seen.append(self.main_loop.algorithm.get_hyperparameter("learning_rate"))

    schedule = optax.exponential_decay(0.1, transition_steps=1, decay_rate=0.5)
    loop = MainLoop(
        algorithm,
        ListStream(4),
        extensions=[
            SharedVariableModifier(algorithm.step_rule.learning_rate, schedule),
            Watch(after_batch=True),
            FinishAfter(after_n_batches=4),
        ],
    )
    loop.run()
    np.testing.assert_allclose(seen, [0.05, 0.025, 0.0125, 0.00625], rtol=1e-6)
    assert algorithm.compilations == 1
    assert algorithm.hyperparameters == pytest.approx(
        {"0/learning_rate": 0.00625, "1/momentum": 0.5}
    )


class _NanStream(ListStream):
    def get_epoch_iterator(self, as_dict=True):
        for i, batch in enumerate(super().get_epoch_iterator()):
            if i == 2:
                batch = {k: v.copy() for k, v in batch.items()}
                batch["y"][:] = np.nan
            yield batch


def test_remove_not_finite_skips_the_step():
    rule = CompositeRule([Momentum(0.1, 0.5), RemoveNotFinite()])
    algorithm = make_algorithm(rule)
    mon = TrainingDataMonitoring(["cost"], after_batch=True)
    snapshots = []

    class Snap(SimpleExtension):
        def do(self, which, *args):
            snapshots.append(self.main_loop.algorithm.get_state()[1])

    loop = MainLoop(
        algorithm,
        _NanStream(5),
        extensions=[mon, Snap(after_batch=True), FinishAfter(after_n_batches=4)],
    )
    loop.run()
    assert np.isnan(loop.log[3]["train_cost"])
    for key in snapshots[1]:
        if key.startswith(("params/", "opt_state/")):
            np.testing.assert_array_equal(snapshots[1][key], snapshots[2][key])
    assert not np.array_equal(snapshots[2]["params/w"], snapshots[3]["params/w"])


def test_non_finite_cost_stops_training(tmp_path):
    algorithm = make_algorithm(Scale(0.1))
    loop = MainLoop(
        algorithm,
        _NanStream(6),
        log_path=str(tmp_path / "log.jsonl"),
        extensions=[FinishAfter(after_n_epochs=1)],
    )
    with pytest.raises(NonFiniteCostError, match="iteration 3"):
        loop.run()
    assert loop.log[3]["nonfinite_cost"] is True
    assert loop.log.status["iterations_done"] == 2
    params = algorithm.parameter_values()
    assert all(np.all(np.isfinite(v)) for v in params.values())
    _, arrays = algorithm.get_state()
    assert all(np.all(np.isfinite(v)) for v in arrays.values())
    from bricks.log import read_log

    assert read_log(tmp_path / "log.jsonl")[3]["nonfinite_cost"] is True


def test_multi_step_calls_match_single_steps():
    def run(k):
        algorithm = make_algorithm(Momentum(0.05, 0.9))
        exts = [
            TrainingDataMonitoring(["cost"], every_n_batches=4, name="m4"),
            TrainingDataMonitoring(["cost"], prefix="epoch", after_epoch=True, name="me"),
            ProgressBar(file=io.StringIO()),
            Timing(),
            FinishAfter(after_n_epochs=2),
        ]
        loop = MainLoop(algorithm, ListStream(10), extensions=exts, steps_per_call=k)
        loop.run()
        return loop, algorithm

    one, alg1 = run(1)
    many, alg8 = run(4)
    assert alg8.compilations == 2 and alg1.compilations == 1  # the scan and the single step
    for name in ("train_cost", "epoch_cost"):
        np.testing.assert_allclose(many.log.records(name), one.log.records(name), rtol=1e-6)
    for k, v in alg1.parameter_values().items():
        np.testing.assert_allclose(alg8.parameter_values()[k], v, rtol=1e-6)


def test_printing_timestamp_timing_smoke(capsys):
    loop = MainLoop(
        make_algorithm(),
        ListStream(3),
        extensions=[
            Printing(),
            Timestamp(),
            Timing(every_n_batches=1),
            ProgressBar(),
            FinishAfter(after_n_epochs=1),
        ],
    )
    loop.run()
    out = capsys.readouterr()
    assert "iterations_done: 3" in out.out and "epoch 1" in out.err
    row = loop.log.current_row
    assert "timestamp" in row and row["time_train_total"] >= row["time_train_this_epoch"] > 0


def test_unknown_condition_and_sources():
    with pytest.raises(ExtensionError, match="did you mean 'after_epoch'"):
        Printing(after_epochs=True)
    from bricks.errors import AlgorithmError

    algorithm = make_algorithm()
    with pytest.raises(AlgorithmError, match="not read by the cost"):
        algorithm.process_batch(
            {"x": np.zeros((1, 3), np.float32), "y": np.zeros(1, np.float32), "z": np.zeros(1)}
        )
    ok = GradientDescent(
        cost=linear_cost,
        parameters={"w": np.zeros(3, np.float32), "b": np.float32(0)},
        on_unused_sources="ignore",
    )
    ok.process_batch(
        {"x": np.zeros((1, 3), np.float32), "y": np.zeros(1, np.float32), "z": np.zeros(1)}
    )
