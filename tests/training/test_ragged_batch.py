"""A ragged last batch padded to full size (PadBatch) runs in the one compiled program,
and counts only its real examples: training costs and gradients, and the evaluator's
aggregated values, equal the unpadded batch's (numpy reference)."""

import jax.numpy as jnp
import numpy as np
import pytest

from bricks.algorithms import GradientDescent, Scale, example_mean
from bricks.core import Constant, IsotropicGaussian, Linear, SquaredError
from bricks.data import DataStream, IndexableDataset, PadBatch, SequentialScheme
from bricks.errors import ExampleMaskError
from bricks.extensions import (
    DataStreamMonitoring,
    FinishAfter,
    MonitoredQuantity,
    TrainingDataMonitoring,
)
from bricks.extensions.evaluator import DatasetEvaluator
from bricks.graph import ComputationGraph
from bricks.main_loop import MainLoop

N, BATCH = 10, 4


def data(seed=0):
    rng = np.random.RandomState(seed)
    return {"x": rng.randn(N, 3).astype(np.float32), "y": rng.randn(N, 2).astype(np.float32)}


def stream(values, pad=True):
    s = DataStream(IndexableDataset(values), iteration_scheme=SequentialScheme(N, BATCH))
    return PadBatch(s) if pad else s


def model():
    linear = Linear(
        3, 2, weights_init=IsotropicGaussian(0.5), biases_init=Constant(0.1), name="lin"
    )
    linear.initialize(seed=0)
    return linear


def masked_graph(linear, extra=None):
    def cost(x, y, example_mask):
        per_example = SquaredError().cost_per_example(y, linear.apply(x))
        out = {"cost": example_mean(per_example, example_mask)}
        if extra is not None:
            out[extra] = jnp.mean(per_example)  # ignores the mask
        return out

    return ComputationGraph(cost, x=(None, 3), y=(None, 2), example_mask=(None,))


def plain_graph(linear):
    def cost(x, y):
        return SquaredError().apply(y, linear.apply(x))

    return ComputationGraph(cost, x=(None, 3), y=(None, 2))


def numpy_cost_and_gradients(params, x, y):
    """Mean over examples of sum((x W + b - y)^2), and its gradients, by hand."""
    w, b = params["/lin.W"], params["/lin.b"]
    residual = x @ w + b - y
    cost = np.mean(np.sum(residual**2, axis=1))
    return cost, {"/lin.W": 2 * x.T @ residual / len(x), "/lin.b": 2 * residual.mean(axis=0)}


def test_ten_examples_in_batches_of_four_train_in_one_program_and_the_last_counts_two():
    values = data()
    graph = masked_graph(model())
    algorithm = GradientDescent(cost=graph, step_rule=Scale(0.1))
    slot = algorithm.add_monitor(["cost", *algorithm.gradients.values()])
    batches = list(stream(values).get_epoch_iterator(as_dict=True))
    assert [len(b["x"]) for b in batches] == [4, 4, 4]
    for i, batch in enumerate(batches):
        params = algorithm.parameter_values()
        algorithm.process_batch(batch)
        got = algorithm.read_monitor(slot)
        lo, hi = i * BATCH, min((i + 1) * BATCH, N)
        cost, grads = numpy_cost_and_gradients(params, values["x"][lo:hi], values["y"][lo:hi])
        np.testing.assert_allclose(got["cost"], cost, rtol=1e-5)
        for path, v in algorithm.gradients.items():
            np.testing.assert_allclose(got[v.name], grads[path], rtol=1e-5, atol=1e-6)
    assert algorithm.compilations == 1


def test_the_evaluator_weighs_a_padded_batch_by_its_real_examples_in_one_program():
    values = data(1)
    linear = model()
    graph = masked_graph(linear)
    params = graph.parameter_values()
    evaluator = DatasetEvaluator(["cost"], graph)
    result = evaluator.evaluate(stream(values), params)
    want, _ = numpy_cost_and_gradients(
        {k: np.asarray(v) for k, v in params.items()}, values["x"], values["y"]
    )
    np.testing.assert_allclose(result["cost"], want, rtol=1e-5)
    assert evaluator.compilations == 1
    unpadded = DatasetEvaluator(["cost"], plain_graph(linear))
    np.testing.assert_allclose(
        unpadded.evaluate(stream(values, pad=False), params)["cost"], want, rtol=1e-5
    )
    assert unpadded.compilations == 2  # the ragged batch of 2: a second program


def test_a_main_loop_epoch_with_padded_training_and_monitoring_streams():
    values = data(2)
    linear = model()
    graph = masked_graph(linear)
    algorithm = GradientDescent(cost=graph, step_rule=Scale(0.0))  # parameters stay
    valid = DataStreamMonitoring(["cost"], stream(values), after_epoch=True)
    loop = MainLoop(
        algorithm,
        stream(values),
        model=graph,
        extensions=[
            FinishAfter(after_n_epochs=1),
            TrainingDataMonitoring(["cost"], after_epoch=True),
            valid,
        ],
    )
    loop.run()
    params = {k: np.asarray(v) for k, v in algorithm.parameter_values().items()}
    want, _ = numpy_cost_and_gradients(params, values["x"], values["y"])
    row = loop.log.current_row
    np.testing.assert_allclose(row["valid_cost"], want, rtol=1e-5)
    batch_means = [
        numpy_cost_and_gradients(params, values["x"][lo : lo + 4], values["y"][lo : lo + 4])[0]
        for lo in (0, 4, 8)
    ]
    np.testing.assert_allclose(row["train_cost"], np.mean(batch_means), rtol=1e-5)
    assert algorithm.compilations == 1 and valid.compilations == 1


@pytest.mark.parametrize("unused", ["raise", "ignore"])
def test_a_cost_that_does_not_read_the_mask_is_refused(unused):
    algorithm = GradientDescent(
        cost=plain_graph(model()), step_rule=Scale(0.1), on_unused_sources=unused
    )
    batch = next(stream(data()).get_epoch_iterator(as_dict=True))
    with pytest.raises(ExampleMaskError, match="example_mask.*reads only \\['x', 'y'\\]"):
        algorithm.process_batch(batch)


def test_a_cost_that_takes_the_mask_but_ignores_it_is_refused():
    linear = model()

    def cost(x, y, example_mask):
        return SquaredError().apply(y, linear.apply(x))

    graph = ComputationGraph(cost, x=(None, 3), y=(None, 2), example_mask=(None,))
    algorithm = GradientDescent(cost=graph, step_rule=Scale(0.1))
    batch = next(stream(data()).get_epoch_iterator(as_dict=True))
    with pytest.raises(ExampleMaskError, match="not on example_mask"):
        algorithm.process_batch(batch)


def test_a_monitored_value_that_ignores_the_mask_is_refused_in_training_and_evaluation():
    graph = masked_graph(model(), extra="raw_mean")
    algorithm = GradientDescent(cost=graph, step_rule=Scale(0.1))
    algorithm.add_monitor(["raw_mean"])
    batch = next(stream(data()).get_epoch_iterator(as_dict=True))
    with pytest.raises(ExampleMaskError, match="'raw_mean'"):
        algorithm.process_batch(batch)
    evaluator = DatasetEvaluator(["cost", "raw_mean"], graph)
    with pytest.raises(ExampleMaskError, match="'raw_mean'"):
        evaluator.evaluate(stream(data()), graph.parameter_values())
    # the cost alone is fine
    assert np.isfinite(DatasetEvaluator(["cost"], graph).evaluate(
        stream(data()), graph.parameter_values())["cost"])


def test_evaluator_refusals_for_padded_streams():
    linear = model()
    plain = plain_graph(linear)
    with pytest.raises(ExampleMaskError, match="reads only"):
        DatasetEvaluator(["cost"], plain).evaluate(stream(data()), plain.parameter_values())
    graph = masked_graph(linear)
    rows = DatasetEvaluator(["cost"], graph, aggregation={"cost": "stack"})
    with pytest.raises(ExampleMaskError, match="per-example rows"):
        rows.evaluate(stream(data()), graph.parameter_values())

    class Count(MonitoredQuantity):
        def initialize(self):
            self.n = 0

        def aggregate(self, x):
            self.n += len(x)

        def get_aggregated_value(self):
            return self.n

    counting = DatasetEvaluator(["cost", Count(["x"], "count")], graph)
    with pytest.raises(ExampleMaskError, match="Count|'count'"):
        counting.evaluate(stream(data()), graph.parameter_values())


def test_example_mean_checks_its_shapes():
    np.testing.assert_allclose(
        example_mean(jnp.array([[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]), jnp.array([1, 1, 0])),
        [2.0, 3.0],
    )
    with pytest.raises(ExampleMaskError, match=r"values of shape \(3,\) and a mask of shape"):
        example_mean(jnp.ones(3), jnp.ones(2))


def test_steps_per_call_runs_a_padded_epoch_as_one_scan_program():
    values = data(3)
    graph = masked_graph(model())
    algorithm = GradientDescent(cost=graph, step_rule=Scale(0.1))
    loop = MainLoop(
        algorithm, stream(values), extensions=[FinishAfter(after_n_epochs=1)], steps_per_call=3
    )
    loop.run()
    assert loop.log.status["iterations_done"] == 3 and algorithm.compilations == 1


def test_module_docstrings_run():
    import doctest

    import bricks.algorithms.compiles
    import bricks.algorithms.ragged

    for module in (bricks.algorithms.ragged, bricks.algorithms.compiles):
        assert doctest.testmod(module).failed == 0


class _Rows(MonitoredQuantity):
    """Counts the rows it is given (so it would count padded ones)."""

    def initialize(self):
        self.n = 0

    def aggregate(self, x, *mask):
        self.n += int(np.sum(mask[0])) if mask else len(x)

    def get_aggregated_value(self):
        return self.n


def test_training_monitored_quantities_must_require_the_mask():
    graph = masked_graph(model())
    blind = MainLoop(
        GradientDescent(cost=graph, step_rule=Scale(0.1)),
        stream(data()),
        extensions=[
            FinishAfter(after_n_epochs=1),
            TrainingDataMonitoring([_Rows(["x"], "rows")], after_epoch=True),
        ],
    )
    with pytest.raises(ExampleMaskError, match=r"\['rows'\]"):
        blind.run()
    seeing = MainLoop(
        GradientDescent(cost=graph, step_rule=Scale(0.1)),
        stream(data()),
        extensions=[
            FinishAfter(after_n_epochs=1),
            TrainingDataMonitoring([_Rows(["x", "example_mask"], "rows")], after_epoch=True),
        ],
    )
    seeing.run()
    assert seeing.log.current_row["train_rows"] == N
