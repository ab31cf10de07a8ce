"""Blocks' tests/extensions/test_monitoring.py and test_progressbar.py in bricks' idiom."""

import io

import numpy as np
import pytest
from numpy.testing import assert_allclose

from bricks.algorithms import FunctionGraph, GradientDescent, Scale, UpdatesAlgorithm
from bricks.data import (
    ConstantScheme,
    DataStream,
    IterableDataset,
    SequentialExampleScheme,
    SequentialScheme,
)
from bricks.extensions import (
    FinishAfter,
    MonitoredQuantity,
    Printing,
    ProgressBar,
    TrainingDataMonitoring,
    TrainingExtension,
)
from bricks.extensions.monitoring import MonitoringExtension
from bricks.main_loop import MainLoop

ported = pytest.mark.ported
ORIG = "tests/extensions/test_monitoring.py::"
BAR = "tests/extensions/test_progressbar.py::"


class MeanFeaturesTimesTarget(MonitoredQuantity):
    def initialize(self):
        self._aggregated = 0.0
        self._num_batches = 0

    def aggregate(self, features, targets):
        self._aggregated += features * targets
        self._num_batches += 1

    def get_aggregated_value(self):
        return self._aggregated / self._num_batches


@ported(ORIG + "test_monitoring_extension__record_name")
def test_monitoring_extension__record_name():
    name = "test-test"
    monitor = MonitoringExtension()
    assert monitor._record_name(name) == name
    monitor = MonitoringExtension(prefix="abc")
    assert monitor._record_name(name) == "abc" + monitor.SEPARATOR + name
    monitor = MonitoringExtension(suffix="abc")
    assert monitor._record_name(name) == name + monitor.SEPARATOR + "abc"
    monitor = MonitoringExtension(prefix="abc", suffix="def")
    sep = monitor.SEPARATOR
    assert monitor._record_name(name) == "abc" + sep + name + sep + "def"
    with pytest.raises(ValueError, match="record name must be a string"):
        monitor._record_name(None)


@ported(ORIG + "test_training_data_monitoring")
def test_training_data_monitoring():
    weights = np.array([-1, 1], np.float32)
    features = [np.array(f, np.float32) for f in [[1, 2], [3, 5], [5, 8]]]
    targets = np.array([(weights * f).sum() for f in features], np.float32)
    n_batches = 3
    dataset = IterableDataset(dict(features=features, targets=targets))

    def cost(params, features, targets):
        value = ((features * params["W"]).sum() - targets) ** 2
        return {"cost": value, "W_sum": params["W"].sum(), "V": params["V"]}

    graph = FunctionGraph(
        cost, {"W": np.zeros(2, np.float32), "V": np.float32(7)}, outputs=["cost", "W_sum", "V"]
    )

    class TrueCostExtension(TrainingExtension):
        def before_batch(self, data):
            W = self.main_loop.algorithm.parameter_values()["W"]
            true = ((W * data["features"]).sum() - data["targets"]) ** 2
            self.main_loop.log.current_row["true_cost"] = true

    # as in Blocks, a monitored quantity belongs to one TrainingDataMonitoring
    ftt1 = MeanFeaturesTimesTarget(requires=["features", "targets"], name="ftt1")
    ftt2 = MeanFeaturesTimesTarget(requires=["features", "targets"], name="ftt2")
    main_loop = MainLoop(
        GradientDescent(cost=graph, parameters=["W"], step_rule=Scale(0.001)),
        dataset.get_example_stream(),
        extensions=[
            FinishAfter(after_n_epochs=1),
            TrainingDataMonitoring(
                ["W_sum", "cost", "V", ftt1], prefix="train1", after_batch=True, name="m1"
            ),
            TrainingDataMonitoring(
                ["W_sum", "cost", ftt2], prefix="train2", after_epoch=True, name="m2"
            ),
            TrueCostExtension(),
        ],
    )
    main_loop.run()
    log = main_loop.log
    assert_allclose(log.current_row["train1_V"], 7.0)  # a value that is not trained
    for i in range(n_batches):
        # the true cost is written before the batch, the monitor after it
        assert_allclose(log[i]["true_cost"], log[i + 1]["train1_cost"], rtol=1e-6)
    assert_allclose(
        log[n_batches]["train2_cost"],
        sum(log[i]["true_cost"] for i in range(n_batches)) / n_batches,
        rtol=1e-6,
    )
    assert_allclose(
        log[n_batches]["train2_W_sum"],
        sum(log[i]["train1_W_sum"] for i in range(1, n_batches + 1)) / n_batches,
        rtol=1e-6,
    )
    for i in range(n_batches):
        assert_allclose(log[i + 1]["train1_ftt1"], features[i] * targets[i])
    assert_allclose(log[n_batches]["train2_ftt2"], (np.array(features) * targets[:, None]).mean(0))


@ported(ORIG + "test_training_data_monitoring_updates_algorithm")
def test_training_data_monitoring_updates_algorithm():
    features = [np.array(f, np.float32) for f in [[1, 2], [3, 5], [5, 8]]]
    targets = np.array([f.sum() for f in features], np.float32)
    dataset = IterableDataset(dict(features=features, targets=targets))
    algorithm = UpdatesAlgorithm(
        outputs={
            "features_mean": lambda v, features: features.mean(),
            "targets_sum": lambda v, targets: targets.sum(),
        }
    )
    monitoring = TrainingDataMonitoring(
        ["features_mean", "targets_sum"], prefix="train1", after_batch=True
    )
    main_loop = MainLoop(
        algorithm,
        dataset.get_example_stream(),
        extensions=[monitoring, FinishAfter(after_n_epochs=1)],
    )
    assert len(algorithm._monitors) == 1  # registered with the algorithm before training
    main_loop.run()
    for i, f in enumerate(features):
        assert_allclose(main_loop.log[i + 1]["train1_features_mean"], f.mean())
        assert_allclose(main_loop.log[i + 1]["train1_targets_sum"], targets[i])


def setup_mainloop(extension, iteration_scheme=None):
    features = [np.array(f, np.float32) for f in [[1, 2]] * 101]
    dataset = IterableDataset(dict(features=features))
    data_stream = DataStream(dataset, iteration_scheme=iteration_scheme)
    algorithm = GradientDescent(
        cost=lambda p, features: ((features - p["W"]) ** 2).sum(),
        parameters={"W": np.zeros(2, np.float32)},
        step_rule=Scale(1e-3),
    )
    extensions = [FinishAfter(after_n_epochs=1)] + ([extension] if extension else [])
    return MainLoop(algorithm, data_stream, extensions=extensions)


@ported(BAR + "test_progressbar")
def test_progressbar():
    out = io.StringIO()
    main_loop = setup_mainloop(ProgressBar(file=out))
    main_loop.run()
    assert "101" in out.getvalue()


def _iter_per_epoch(scheme):
    progress_bar = ProgressBar()
    progress_bar.main_loop = setup_mainloop(None, iteration_scheme=scheme)
    return progress_bar.get_iter_per_epoch()


@ported(BAR + "test_progressbar_iter_per_epoch_indices")
def test_progressbar_iter_per_epoch_indices():
    assert _iter_per_epoch(SequentialExampleScheme(100)) == 100


@ported(BAR + "test_progressbar_iter_per_epoch_batch_indices")
def test_progressbar_iter_per_epoch_batch_indices():
    assert _iter_per_epoch(SequentialScheme(1000, 10)) == 1000 // 10


@ported(BAR + "test_progressbar_iter_per_epoch_batch_examples")
def test_progressbar_iter_per_epoch_batch_examples():
    assert _iter_per_epoch(ConstantScheme(10, 1000)) == 1000 // 10


@ported(BAR + "test_printing")
def test_printing(capsys):
    setup_mainloop(Printing()).run()
    out = capsys.readouterr().out
    assert "AFTER ANOTHER EPOCH" in out and "iterations_done: 101" in out
