"""Monitoring records carry the right names (issue 14, items 1, 8, 9 and 12).

End to end through a real ``MainLoop``: dict outputs of a graph or a cost
function keep their names in both monitoring extensions, the log and a
checkpoint; names a cost function's dict defines can be monitored; two
quantities never share a record; a vector cost is refused by name.
Expected values are computed with numpy.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from bricks.algorithms import GradientDescent, Scale
from bricks.checkpoint import restore_main_loop
from bricks.core import WEIGHT, Constant, Linear
from bricks.errors import (
    AlgorithmError,
    CostShapeError,
    ExtensionError,
    RecordNameError,
)
from bricks.extensions import (
    DataStreamMonitoring,
    FinishAfter,
    MonitoredQuantity,
    TrainingDataMonitoring,
)
from bricks.extensions.checkpoint import Checkpoint
from bricks.graph import ComputationGraph, VariableFilter
from bricks.main_loop import MainLoop

from .helpers import ListStream


def _linear() -> Linear:
    lin = Linear(3, 1, weights_init=Constant(0.1), biases_init=Constant(0.0), name="lin")
    lin.initialize()
    return lin


def _dict_graph(lin: Linear) -> ComputationGraph:
    def fn(x, y):
        err = lin.apply(x)[:, 0] - y
        # insertion order differs from sorted order on purpose
        return {"cost": (err**2).mean(), "batch_size": jnp.float32(x.shape[0])}

    return ComputationGraph(fn, x=(None, 3), y=(None,))


def _numpy_run(stream: ListStream, n_batches: int, lr: float):
    """Per-batch (cost, batch size) before each SGD update, and the final weights."""
    w, b = np.full(3, 0.1, np.float64), 0.0
    batches = list(stream.get_epoch_iterator())
    rows = []
    for i in range(n_batches):
        x, y = batches[i % len(batches)]["x"], batches[i % len(batches)]["y"]
        err = x @ w + b - y
        rows.append((float(np.mean(err**2)), float(len(y))))
        w = w - lr * 2 * x.T @ err / len(y)
        b = b - lr * 2 * err.mean()
    return rows, w, b


def _numpy_dataset_cost(stream: ListStream, w, b) -> tuple[float, float]:
    """Blocks' dataset mean of per-batch values, weighted by batch size."""
    total, sizes, count = 0.0, 0.0, 0
    for batch in stream.get_epoch_iterator():
        err = batch["x"] @ w + b - batch["y"]
        total += float(np.mean(err**2)) * len(err)
        sizes += float(len(err)) * len(err)
        count += len(err)
    return total / count, sizes / count


def test_dict_outputs_keep_their_names_in_the_log_and_a_checkpoint(tmp_path):
    lin = _linear()
    cg = _dict_graph(lin)
    train = ListStream(7, batch_size=3, seed=1)  # batches of 3, 3, 1
    valid = ListStream(5, batch_size=2, seed=2)  # batches of 2, 2, 1
    loop = MainLoop(
        GradientDescent(cost=cg, step_rule=Scale(0.05)),
        train,
        model=cg,
        extensions=[
            TrainingDataMonitoring(["cost", "batch_size"], after_batch=True),
            DataStreamMonitoring(["cost", "batch_size"], valid, after_epoch=True),
            FinishAfter(after_n_epochs=1),
            Checkpoint(tmp_path / "ckpt"),
        ],
    )
    loop.run()
    rows, w, b = _numpy_run(ListStream(7, batch_size=3, seed=1), 3, 0.05)
    for i, (cost, size) in enumerate(rows, start=1):
        np.testing.assert_allclose(loop.log[i]["train_cost"], cost, rtol=1e-5)
        assert loop.log[i]["train_batch_size"] == size
    valid_cost, valid_size = _numpy_dataset_cost(ListStream(5, batch_size=2, seed=2), w, b)
    np.testing.assert_allclose(loop.log[3]["valid_cost"], valid_cost, rtol=1e-5)
    np.testing.assert_allclose(loop.log[3]["valid_batch_size"], valid_size, rtol=1e-6)

    fresh_cg = _dict_graph(_linear())
    fresh = MainLoop(
        GradientDescent(cost=fresh_cg, step_rule=Scale(0.05)),
        ListStream(7, batch_size=3, seed=1),
        model=fresh_cg,
        extensions=[TrainingDataMonitoring(["cost", "batch_size"], after_batch=True)],
    )
    restore_main_loop(fresh, tmp_path / "ckpt")
    for i in range(1, 4):
        assert fresh.log[i]["train_cost"] == loop.log[i]["train_cost"]
        assert fresh.log[i]["train_batch_size"] == loop.log[i]["train_batch_size"]
    assert fresh.log[3]["valid_cost"] == loop.log[3]["valid_cost"]


def _dict_cost(params, x, y):
    err = x @ params["w"] + params["b"] - y
    return {"zcost": (err**2).mean(), "w_sum": params["w"].sum(), "n": jnp.float32(len(y))}


def _params():
    return {"w": np.full(3, 0.1, np.float32), "b": np.zeros((), np.float32)}


def test_outputs_named_by_a_cost_functions_dict_can_be_monitored():
    valid = ListStream(4, batch_size=2, seed=3)
    loop = MainLoop(
        GradientDescent(cost=_dict_cost, parameters=_params(), step_rule=Scale(0.05)),
        ListStream(6, batch_size=3),
        extensions=[
            # before_first_epoch: evaluated before any training batch was seen
            DataStreamMonitoring(["w_sum", "zcost", "n"], valid),
            TrainingDataMonitoring(["w_sum", "zcost", "n"], after_batch=True),
            FinishAfter(after_n_epochs=1),
        ],
    )
    assert loop.algorithm.graph.outputs_known is False
    loop.run()
    assert [v.name for v in loop.algorithm.graph.outputs] == ["zcost", "w_sum", "n"]
    rows, w, b = _numpy_run(ListStream(6, batch_size=3), 2, 0.05)
    np.testing.assert_allclose(loop.log[1]["train_w_sum"], 0.3, rtol=1e-6)
    for i, (cost, size) in enumerate(rows, start=1):
        np.testing.assert_allclose(loop.log[i]["train_zcost"], cost, rtol=1e-5)
        assert loop.log[i]["train_n"] == size
    np.testing.assert_allclose(loop.log[0]["valid_w_sum"], 0.3, rtol=1e-6)
    first_cost, _ = _numpy_dataset_cost(ListStream(4, batch_size=2, seed=3), np.full(3, 0.1), 0.0)
    np.testing.assert_allclose(loop.log[0]["valid_zcost"], first_cost, rtol=1e-5)
    np.testing.assert_allclose(loop.log[2]["valid_w_sum"], w.sum(), rtol=1e-5)
    np.testing.assert_allclose(loop.algorithm.parameter_values()["w"], w, rtol=1e-5)


def test_the_cost_of_a_dict_is_its_first_entry_not_the_first_sorted_key():
    algorithm = GradientDescent(cost=_dict_cost, parameters=_params(), step_rule=Scale(0.05))
    batch = next(ListStream(3, batch_size=3).get_epoch_iterator())
    algorithm.process_batch(batch)
    _, w, _ = _numpy_run(ListStream(3, batch_size=3), 1, 0.05)
    np.testing.assert_allclose(algorithm.parameter_values()["w"], w, rtol=1e-5)


def test_a_name_the_cost_function_does_not_return_is_an_error_before_any_step():
    algorithm = GradientDescent(cost=_dict_cost, parameters=_params(), step_rule=Scale(0.05))
    loop = MainLoop(
        algorithm,
        ListStream(6, batch_size=3),
        extensions=[TrainingDataMonitoring(["w_summ"], after_batch=True)],
    )
    with pytest.raises(AlgorithmError, match=r"'w_summ'.*did you mean 'w_sum'.*'zcost'"):
        loop.run()
    np.testing.assert_array_equal(algorithm.parameter_values()["w"], _params()["w"])


def test_two_variables_with_one_name_in_one_extension_are_refused():
    l0, l1 = (
        Linear(3, 3, weights_init=Constant(0.1), use_bias=False, name=f"l{i}") for i in (0, 1)
    )
    for lin in (l0, l1):
        lin.initialize()
    cg = ComputationGraph(lambda x: l1.apply(l0.apply(x)).sum(), x=(None, 3))
    w0, w1 = VariableFilter(roles=[WEIGHT])(cg.variables)
    assert (w0.path, w1.path) == ("/l0.W", "/l1.W") and w0.name == w1.name == "W"
    stream = ListStream(4, batch_size=2, sources=("x",))

    def loop(*extensions):
        return MainLoop(GradientDescent(cost=cg), stream, extensions=list(extensions))

    with pytest.raises(RecordNameError, match=r"both named 'W'.*/l0.W.*/l1.W"):
        loop(TrainingDataMonitoring([w0, w1]))
    with pytest.raises(RecordNameError, match=r"both named 'W'.*/l0.W.*/l1.W"):
        loop(DataStreamMonitoring([w0, w1], stream))
    renamed = dataclasses.replace(w1, name="W_1")
    trained = loop(
        TrainingDataMonitoring([w0, renamed], after_batch=True), FinishAfter(after_n_batches=1)
    )
    trained.run()
    assert set(trained.log[1]) >= {"train_W", "train_W_1"}
    np.testing.assert_allclose(trained.log[1]["train_W_1"], np.full((3, 3), 0.1), rtol=1e-6)


def test_two_extensions_writing_one_record_are_refused():
    algorithm = GradientDescent(cost=_dict_cost, parameters=_params())
    stream = ListStream(4, batch_size=2)
    with pytest.raises(RecordNameError, match=r"'train_zcost'.*'per_batch'.*'per_epoch'"):
        MainLoop(
            algorithm,
            stream,
            extensions=[
                TrainingDataMonitoring(["zcost"], after_batch=True, name="per_batch"),
                TrainingDataMonitoring(["zcost"], after_epoch=True, name="per_epoch"),
            ],
        )
    with pytest.raises(RecordNameError, match=r"'valid_zcost'.*DataStreamMonitoring"):
        MainLoop(
            GradientDescent(cost=_dict_cost, parameters=_params()),
            stream,
            extensions=[
                DataStreamMonitoring(["zcost"], stream),
                TrainingDataMonitoring(["zcost"], prefix="valid"),
            ],
        )


def test_a_monitored_quantity_named_like_a_variable_is_refused():
    class Count(MonitoredQuantity):
        def initialize(self):
            self.n = 0

        def aggregate(self, zcost):
            self.n += 1

        def get_aggregated_value(self):
            return self.n

    stream = ListStream(4, batch_size=2)
    lin = _linear()
    cg = _dict_graph(lin)
    with pytest.raises(RecordNameError, match=r"both named 'cost'.*MonitoredQuantity Count"):
        MainLoop(
            GradientDescent(cost=cg),
            stream,
            extensions=[DataStreamMonitoring(["cost", Count(["cost"], name="cost")], stream)],
        )


def _vector_graph() -> ComputationGraph:
    lin = _linear()

    def per_example(x, y):
        return (lin.apply(x)[:, 0] - y) ** 2

    return ComputationGraph(per_example, x=(None, 3), y=(None,))


def test_a_vector_cost_graph_is_refused_by_gradient_descent():
    with pytest.raises(CostShapeError, match=r"must be a scalar; got shape \(x.shape\[0\],\)") as e:
        GradientDescent(cost=_vector_graph())
    assert isinstance(e.value, TypeError) and "`.mean()`" in str(e.value)
    assert "'per_example'" in str(e.value)


def test_a_vector_cost_function_is_refused_at_its_first_batch():
    def cost(params, x, y):
        return (x @ params["w"] - y) ** 2

    algorithm = GradientDescent(cost=cost, parameters={"w": np.zeros(3, np.float32)})
    batch = next(ListStream(3, batch_size=3).get_epoch_iterator())
    with pytest.raises(CostShapeError, match=r"must be a scalar; got shape \(3,\).*'cost'"):
        algorithm.process_batch(batch)


def test_monitoring_a_per_example_output_is_refused_with_the_fix():
    lin = _linear()

    def fn(x, y):
        err = (lin.apply(x)[:, 0] - y) ** 2
        return {"cost": err.mean(), "errors": err}

    cg = ComputationGraph(fn, x=(None, 3), y=(None,))
    stream = ListStream(4, batch_size=2)
    with pytest.raises(CostShapeError, match=r"'errors'.*\(x.shape\[0\],\).*changes with the"):
        MainLoop(GradientDescent(cost=cg), stream, extensions=[TrainingDataMonitoring(["errors"])])
    with pytest.raises(ExtensionError, match=r"'errors'.*\(x.shape\[0\],\).*concatenate"):
        MainLoop(
            GradientDescent(cost=cg), stream, extensions=[DataStreamMonitoring(["errors"], stream)]
        )
    loop = MainLoop(
        GradientDescent(cost=cg, step_rule=Scale(0.0)),
        stream,
        extensions=[
            DataStreamMonitoring(["errors"], stream, aggregation={"errors": "concatenate"}),
            FinishAfter(after_n_batches=1),
        ],
    )
    loop.run()
    x, y = stream.data["x"], stream.data["y"]
    np.testing.assert_allclose(loop.log[0]["valid_errors"], (x @ np.full(3, 0.1) - y) ** 2, 1e-5)


def test_a_cost_function_output_whose_shape_follows_the_batch_is_refused():
    def cost(params, x, y):
        err = (x @ params["w"] - y) ** 2
        return {"cost": err.mean(), "errors": err}

    def loop(extension):
        algorithm = GradientDescent(cost=cost, parameters={"w": np.zeros(3, np.float32)})
        return MainLoop(algorithm, ListStream(4, batch_size=3), extensions=[extension])

    with pytest.raises(AlgorithmError, match=r"'errors'.*shape \(1,\).*\(3,\).*`.mean\(\)`"):
        loop(TrainingDataMonitoring(["errors"], after_batch=True)).run()
    # the last batch of 1 used to broadcast into the mean of the batches of 3
    with pytest.raises(ExtensionError, match=r"'errors'.*shape \(1,\).*\(3,\)"):
        loop(DataStreamMonitoring(["errors"], ListStream(4, batch_size=3))).run()


def test_a_cost_named_cost_must_come_first():
    def fn(x):
        return {"batch_size": jnp.float32(x.shape[0]), "cost": (x**2).mean()}

    cg = ComputationGraph(fn, x=(None, 3))
    with pytest.raises(AlgorithmError, match=r"first output.*'batch_size'.*named 'cost'"):
        GradientDescent(cost=cg)


def test_restored_accumulators_pair_with_the_names_they_were_saved_with():
    batch = next(ListStream(3, batch_size=3).get_epoch_iterator())

    def algorithm(names):
        a = GradientDescent(cost=_dict_cost, parameters=_params(), step_rule=Scale(0.0))
        slot = a.add_monitor(names)
        return a, slot

    saved, slot = algorithm(["n", "w_sum"])
    saved.process_batch(batch)
    meta, arrays = saved.get_state()
    same, slot = algorithm(["n", "w_sum"])
    same.set_state(meta, arrays)
    assert same.read_monitor(slot) == pytest.approx({"n": 3.0, "w_sum": 0.3})
    swapped, slot = algorithm(["w_sum", "n"])
    swapped.set_state(meta, arrays)
    assert swapped.read_monitor(slot) == {}  # fresh sums, no step yet: not 3.0 and 0.3


def test_doctests_of_the_checks_module():
    import doctest

    import bricks.algorithms.checks

    result = doctest.testmod(bricks.algorithms.checks, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_dict_names_of_a_cost_function_in_multi_step_calls():
    def run(steps_per_call):
        loop = MainLoop(
            GradientDescent(cost=_dict_cost, parameters=_params(), step_rule=Scale(0.05)),
            ListStream(8, batch_size=2),
            extensions=[
                TrainingDataMonitoring(["n", "zcost"], every_n_batches=2),
                FinishAfter(after_n_batches=4),
            ],
            steps_per_call=steps_per_call,
        )
        loop.run()
        return loop

    single, multi = run(1), run(2)
    rows, _, _ = _numpy_run(ListStream(8, batch_size=2), 4, 0.05)
    for i in (2, 4):
        assert multi.log[i]["train_n"] == single.log[i]["train_n"] == 2.0
        np.testing.assert_allclose(
            multi.log[i]["train_zcost"], np.mean([c for c, _ in rows[i - 2 : i]]), rtol=1e-5
        )


def test_a_name_shared_by_several_variables_is_ambiguous():
    l0, l1 = (
        Linear(3, 3, weights_init=Constant(0.1), use_bias=False, name=f"l{i}") for i in (0, 1)
    )
    for lin in (l0, l1):
        lin.initialize()
    cg = ComputationGraph(lambda x: l1.apply(l0.apply(x)).sum(), x=(None, 3))
    stream = ListStream(4, batch_size=2, sources=("x",))

    def loop(extension):
        return MainLoop(GradientDescent(cost=cg), stream, extensions=[extension])

    with pytest.raises(AlgorithmError, match=r"'W' is ambiguous.*/l0.W.*/l1.W"):
        loop(TrainingDataMonitoring(["W"]))
    with pytest.raises(ExtensionError, match=r"'W' is ambiguous.*/l0.W.*/l1.W"):
        loop(DataStreamMonitoring(["W"], stream))
    # the graph's output wins over the bricks' outputs of the same name
    assert GradientDescent(cost=cg).resolve("output").tag == "output:output"
