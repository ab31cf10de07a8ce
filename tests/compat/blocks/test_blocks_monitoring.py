"""Blocks' tests/monitoring/*.py (aggregation, evaluators, monitored quantities) in bricks' idiom.

Blocks attached an aggregation scheme to a Theano variable; bricks names it
per record: ``DatasetEvaluator(variables, graph, aggregation={name: scheme})``.
A scheme is a small ``Aggregation(init, update, finalize)``; ``update`` gets
the batch's value and its number of examples ``n``.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose

from bricks.core import Brick, Constant, application
from bricks.core.roles import PARAMETER
from bricks.data import DataStream, IndexableDataset, IterableDataset, SequentialScheme
from bricks.extensions import BATCH_MEAN, MAX, MEAN, MIN, PERPLEXITY, STACK, MonitoredQuantity
from bricks.extensions.evaluator import DatasetEvaluator
from bricks.graph import ComputationGraph

ported = pytest.mark.ported
AGG = "tests/monitoring/test_aggregation.py::"
MQ = "tests/monitoring/test_monitored_quantity.py::"

#: Blocks' Mean(numerator, denominator) is bricks' MEAN (per-batch means weighted by
#: their number of examples); Blocks' default for a variable without a scheme (the
#: plain mean of the minibatch values) is BATCH_MEAN
EXAMPLE_MEAN = MEAN

class TestBrick(Brick):
    __test__ = False

    def _allocate(self):
        self.add_parameter("V", (), (PARAMETER,), Constant(2.0))

    @application(inputs=["input_"], outputs=["output"])
    def apply(self, input_):
        self.add_auxiliary_variable((self.V**2).sum(), name="V_squared")
        self.add_auxiliary_variable(input_.mean(axis=1).mean(), name="mean_row_mean")
        self.add_auxiliary_variable(input_.mean(), name="mean_batch_element")
        return input_ + self.V


def _test_brick_graph():
    brick = TestBrick(name="test_brick")
    brick.initialize(seed=1)
    graph = ComputationGraph(lambda X: brick.apply(X), X=(None, 2))
    return graph, {v.name: v for v in graph.auxiliary_variables}


def _stream(features, batch_size):
    dataset = IndexableDataset({"features": features})
    return DataStream(dataset, iteration_scheme=SequentialScheme(len(features), batch_size))


def _evaluate(fn, stream, scheme, **shapes):
    """The aggregated value of ``fn``'s output over ``stream``."""
    graph = ComputationGraph(fn, **shapes)
    (output,) = graph.outputs
    evaluator = DatasetEvaluator([output], graph, {output.name: scheme})
    return evaluator.evaluate(stream, graph.parameter_values())[output.name]


@ported(AGG + "test_parameter_monitor")
def test_parameter_monitor():
    graph, aux = _test_brick_graph()
    x = np.arange(4, dtype=np.float32).reshape(2, 2)
    names = sorted(["V_squared", "mean_batch_element"])
    outs, extras = graph.evaluate(graph.parameter_values(), {"X": x}, extra=[aux[n] for n in names])
    assert_allclose([float(e) for e in extras], [4.0, 1.5])
    batches = [x, np.arange(4, 10, dtype=np.float32).reshape(3, 2)]
    evaluator = DatasetEvaluator([aux["mean_row_mean"]], graph, {"mean_row_mean": EXAMPLE_MEAN})
    values = evaluator.evaluate([{"X": b} for b in batches], graph.parameter_values())
    assert_allclose(values["mean_row_mean"], 4.5)


FEATURES = np.array([[0, 3], [2, 9], [2, 4], [5, 1], [6, 7]], np.float32)


def _mean_like(scheme, func):
    y_desired = func((FEATURES**0.5).mean(axis=0))
    z_desired = func((FEATURES**0.5).sum(axis=1).mean(axis=0))
    y = _evaluate(
        lambda features: (features**0.5).mean(axis=0),
        _stream(FEATURES, 2),
        scheme,
        features=(None, 2),
    )
    z = _evaluate(
        lambda features: (features**0.5).sum(axis=1).mean(),
        _stream(FEATURES, 2),
        scheme,
        features=(None, 2),
    )
    assert_allclose(y, y_desired, rtol=1e-6)
    assert_allclose(z, z_desired, rtol=1e-6)


@ported(AGG + "test_mean_aggregator")
def test_mean_aggregator():
    _mean_like(EXAMPLE_MEAN, lambda x: x)


@ported(AGG + "test_perplexity_aggregator")
def test_perplexity_aggregator():
    _mean_like(PERPLEXITY, lambda x: np.exp(-x))


@ported(AGG + "test_min_max_aggregators")
def test_min_max_aggregators():
    def y(features):
        return (features**2).sum(axis=0)

    features = np.array([[2, 3], [2, 9], [2, 4], [5, 1]], np.float32)
    kw = {"features": (None, 2)}
    assert_allclose(_evaluate(y, _stream(features, 2), MAX, **kw), [29, 90])
    z = lambda features: y(features).min()  # noqa: E731
    assert_allclose(_evaluate(z, _stream(features, 2), MIN, **kw), 8)
    # accumulators are reset between evaluations
    features = np.array([[2, 1], [1, 3], [1, -1], [2.5, 1]], np.float32)
    assert_allclose(_evaluate(y, _stream(features, 2), MAX, **kw), [7.25, 10])
    assert_allclose(_evaluate(z, _stream(features, 2), MIN, **kw), 2)


@ported(AGG + "test_concatenate_aggregator")
def test_concatenate_aggregator():
    features = np.array([[2, 3], [2, 9], [2, 4], [5, 1]], np.float32)
    kw = {"features": (None, 2)}
    y = _evaluate(lambda features: features.sum(axis=0), _stream(features, 2), STACK, **kw)
    assert_allclose(y, [[4, 12], [7, 5]])
    z = _evaluate(lambda features: features.sum(), _stream(features, 2), STACK, **kw)
    assert_allclose(z, [16, 12])
    # bricks' "concatenate" joins per-example values along the batch axis instead
    y = _evaluate(lambda features: features.sum(axis=1), _stream(features, 3), "concatenate", **kw)
    assert_allclose(y, [5, 11, 6, 6])


def _graph_xy():
    return ComputationGraph(
        lambda x1, x2: {"x": x1.sum(), "x_again": x2.sum()}, x1=(None,), x2=(None,)
    )


@ported(AGG + "test_aggregation_buffer_name_uniqueness")
@ported(MQ + "test_dataset_evaluator_name_uniqueness")
def test_aggregation_buffer_name_uniqueness():
    graph = _graph_xy()
    first, second = graph.outputs
    with pytest.raises(ValueError, match="'x'"):
        DatasetEvaluator([first, dataclasses.replace(second, name="x")], graph)


class _Count(MonitoredQuantity):
    def initialize(self):
        self.n = 0

    def aggregate(self, *values):
        self.n += 1

    def get_aggregated_value(self):
        return self.n


@ported(AGG + "test_aggregation_buffer_name_none")
@ported(MQ + "test_dataset_evaluator_name_none")
def test_aggregation_buffer_name_none():
    with pytest.raises(ValueError, match="must have names"):
        _Count(requires=["x"], name=None)
    with pytest.raises(ValueError, match="must have names"):
        _Count(requires=["x"], name="")


@ported("tests/monitoring/test_evaluators.py::test_dataset_evaluators")
def test_dataset_evaluators():
    graph, aux = _test_brick_graph()
    evaluator = DatasetEvaluator(
        list(aux.values()),
        graph,
        {"mean_row_mean": EXAMPLE_MEAN, "mean_batch_element": BATCH_MEAN},
    )
    data = [
        np.arange(1, 5, dtype=np.float32).reshape(2, 2),
        np.arange(10, 16, dtype=np.float32).reshape(3, 2),
    ]
    stream = IterableDataset(dict(X=data)).get_example_stream()
    values = evaluator.evaluate(stream, graph.parameter_values())
    assert values["V_squared"] == 4
    assert_allclose(values["mean_row_mean"], np.vstack(data).mean())
    assert_allclose(values["mean_batch_element"], np.mean([batch.mean() for batch in data]))
    with pytest.raises(ValueError, match="X"):
        evaluator.evaluate(
            IterableDataset(dict(X2=data)).get_example_stream(), graph.parameter_values()
        )


class CrossEntropy(MonitoredQuantity):
    def initialize(self):
        self.total_cross_entropy, self.examples_seen = 0.0, 0

    def aggregate(self, target, predicted):
        self.total_cross_entropy += -(target * np.log(predicted)).sum()
        self.examples_seen += 1

    def get_aggregated_value(self):
        return self.total_cross_entropy / self.examples_seen


@ported(MQ + "test_dataset_evaluators")
def test_monitored_quantity_dataset_evaluators():
    data = [
        np.arange(1, 7, dtype=np.float32).reshape(3, 2),
        np.arange(11, 17, dtype=np.float32).reshape(3, 2),
    ]
    stream = IterableDataset(dict(X=data[0], Y=data[1])).get_example_stream()
    graph = ComputationGraph(
        lambda X, Y: {"categoricalcrossentropy_apply_cost": -(X * jnp.log(Y)).sum()},
        X=(2,),
        Y=(2,),
    )
    evaluator = DatasetEvaluator(
        [
            CrossEntropy(requires=["X", "Y"], name="monitored_cross_entropy0"),
            # two of the same quantity: each state is its own and is reset
            CrossEntropy(requires=["X", "Y"], name="monitored_cross_entropy1"),
            "categoricalcrossentropy_apply_cost",
        ],
        graph,
    )
    values = evaluator.evaluate(stream, graph.parameter_values())
    assert_allclose(
        values["monitored_cross_entropy1"], values["categoricalcrossentropy_apply_cost"], rtol=1e-6
    )
    again = evaluator.evaluate(stream, graph.parameter_values())
    assert_allclose(again["monitored_cross_entropy0"], values["monitored_cross_entropy0"])


def test_scalar_examples():
    # a stream of scalar examples: each example counts once (crashed with IndexError)
    stream = IterableDataset(dict(x=np.arange(4, dtype=np.float32))).get_example_stream()
    graph = ComputationGraph(lambda x: x * 2, x=())
    values = DatasetEvaluator(["output"], graph).evaluate(stream, graph.parameter_values())
    assert_allclose(values["output"], 3.0)
