"""Blocks' tests/test_graph.py and tests/test_variable_filter.py, in bricks' idiom.

Theano variables become annotated quantities of a traced function: a
brick's inputs, outputs and auxiliary variables, and whatever the function
names with :func:`~bricks.core.annotate`. Inputs are the graph's named
arguments.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose

from bricks.core import (
    AUXILIARY,
    BIAS,
    FILTER,
    MLP,
    OUTPUT,
    PARAMETER,
    Bias,
    Brick,
    Constant,
    Identity,
    Linear,
    Logistic,
    Merge,
    SquaredError,
    Tanh,
    annotate,
    application,
)
from bricks.core.roles import COLLECTED
from bricks.graph import (
    ComputationGraph,
    VariableFilter,
    apply_dropout,
    apply_noise,
    collect_parameters,
)
from bricks.recurrent import SimpleRecurrent

F32 = np.float32


class AuxBrick(Brick):
    @application
    def access_application_call(self, x):
        self.add_auxiliary_variable(jnp.ones((1,)), name="test_val")
        return x


@pytest.mark.ported("tests/test_graph.py::test_application_graph_auxiliary_vars")
def test_application_graph_auxiliary_vars():
    brick = AuxBrick()
    graph = ComputationGraph(lambda X: brick.access_application_call(X), X=(None, None))
    assert any(var.name == "test_val" for var in graph.variables)


@pytest.mark.ported("tests/test_graph.py::test_computation_graph")
def test_computation_graph():
    def fn(x, y):
        z = annotate(x + y, "z")
        return {"a": annotate(z, "a"), "b": annotate(z, "b")}

    cg = ComputationGraph(fn, x=(None, None), y=(None, None))
    assert set(cg.inputs) == {"x", "y"}
    assert {v.name for v in cg.outputs} == {"a", "b"}
    assert [v.name for v in cg.variables] == ["z", "a", "b"]
    assert ComputationGraph(lambda x, y: fn(x, y)["a"], x=(None, None), y=(None, None)).inputs == (
        cg.inputs
    )

    # replacing z by a new quantity keeps the outputs' names
    (z,) = VariableFilter(name="z")(cg.variables)
    cg2 = cg.replace({z: lambda value: 2 * value})
    assert {v.name for v in cg2.outputs} == {"a", "b"}
    out = cg2(x=np.ones((1, 2), F32), y=np.ones((1, 2), F32))
    assert_allclose(out["a"], 4.0)

    # a shared variable is a parameter of the graph
    holder = Linear(3, 3, weights_init=Constant(0.0), use_bias=False)
    holder.initialize()
    cg3 = ComputationGraph(lambda x, y: fn(x, y)["a"] + holder.W, x=(3, 3), y=(3, 3))
    assert [p.path for p in cg3.parameters] == [f"{holder.path}.W"]
    cg4 = ComputationGraph(lambda: holder.W)
    assert [v.path for v in cg4.variables] == [f"{holder.path}.W"]
    cg5 = ComputationGraph(lambda: annotate(holder.W**2, "w1"))
    assert {v.name for v in cg5.variables} == {"W", "w1"}

    # scans are listed, with the variables computed inside them
    rec = SimpleRecurrent(dim=3, activation=Identity(), weights_init=Constant(0.0))
    rec.initialize()
    cg6 = ComputationGraph(lambda x: rec.apply(x), x=(None, None, 3))
    assert len(cg6.scans) == 1
    assert cg6.scan_variables
    assert all(v.scan_scope == cg6.scans[0] for v in cg6.scan_variables)


@pytest.mark.ported("tests/test_graph.py::test_computation_graph_variable_duplicate")
def test_computation_graph_variable_duplicate():
    def fn(x, y):
        w = annotate(x + y, "w")
        z = annotate(jnp.exp(w), "z")
        return z, w

    cg = ComputationGraph(fn, x=(None, None), y=(None, None))
    assert len(set(cg.variables)) == len(cg.variables)


@pytest.mark.ported("tests/test_graph.py::test_replace")
def test_replace():
    cg = ComputationGraph(lambda x: x + 1, x=())
    (y,) = cg.outputs
    doubled_cg = cg.replace([(y, lambda value: 2 * value)])
    assert float(doubled_cg(x=np.float32(2))) == 6.0


@pytest.mark.ported("tests/test_graph.py::test_replace_multiple_inputs")
def test_replace_multiple_inputs():
    cg = ComputationGraph(lambda x: (2 * x, x + 1), x=()).replace({"x": lambda x: 0.5 * x})
    a, b = cg(x=np.float32(1.0))
    assert_allclose(a, 1.0)
    assert_allclose(b, 1.5)


@pytest.mark.ported("tests/test_graph.py::test_replace_variable_not_in_graph")
def test_replace_variable_not_in_graph():
    cg = ComputationGraph(lambda x: x + 1, x=())
    other = ComputationGraph(lambda z: annotate(z * 3, "z3"), z=())
    (y,) = cg.outputs
    (z,) = other.variables
    with pytest.warns(UserWarning, match="not a part of") as record:
        cg.replace([(y, lambda value: 2 * value), (z, lambda value: 2 * value)])
    assert len(record) == 1


@pytest.mark.ported("tests/test_graph.py::test_replace_variable_is_auxiliary")
def test_replace_variable_is_auxiliary():
    cg = ComputationGraph(lambda x: annotate(x + 1, "y", (AUXILIARY,)), x=())
    (y,) = cg.auxiliary_variables
    with pytest.warns(UserWarning, match="auxiliary") as record:
        cg.replace([(y, lambda value: 2 * value)])
    assert len(record) == 1


def _xyz(op):
    def fn(x, y):
        return op(annotate(x, "x"), annotate(y, "y"))

    return fn


@pytest.mark.ported("tests/test_graph.py::test_apply_noise")
def test_apply_noise():
    cg = ComputationGraph(_xyz(lambda x, y: x + y), x=(), y=())
    (y,) = VariableFilter(name="y")(cg.variables)
    noised_cg = apply_noise(cg, [y], 1, seed=1)
    key = jax.random.key(0)
    got = float(noised_cg(key, x=np.float32(1), y=np.float32(1)))
    # Blocks' equation on bricks' random numbers: 2 + N(0, 1) noise, one draw
    (_,), (noisy_y,) = noised_cg.evaluate(
        {}, {"x": np.float32(1), "y": np.float32(1)}, key=key, extra=[y]
    )
    assert_allclose(got, 1 + float(noisy_y), rtol=1e-6)
    assert float(noisy_y) != 1.0
    draws = [float(noised_cg(jax.random.key(i), x=np.float32(1), y=np.float32(1)))
             for i in range(200)]
    assert abs(np.mean(draws) - 2) < 0.3 and abs(np.std(draws) - 1) < 0.2


@pytest.mark.ported("tests/test_graph.py::test_apply_dropout")
def test_apply_dropout():
    cg = ComputationGraph(_xyz(lambda x, y: x * y), x=(3,), y=(3,))
    (x,) = VariableFilter(name="x")(cg.variables)
    dropped_cg = apply_dropout(cg, [x], 0.4, seed=1)
    x_ = np.array([5.0, 6.0, 7.0], dtype=F32)
    y_ = np.array([1.0, 2.0, 3.0], dtype=F32)
    (out,), (dropped,) = dropped_cg.evaluate(
        {}, {"x": x_, "y": y_}, key=jax.random.key(0), extra=[x]
    )
    mask = np.asarray(dropped) != 0
    assert_allclose(out, x_ * y_ * mask / 0.6, rtol=1e-6)


@pytest.mark.ported("tests/test_graph.py::test_apply_dropout_custom_divisor")
def test_apply_dropout_custom_divisor():
    cg = ComputationGraph(_xyz(lambda x, y: x - y), x=(3,), y=(3,))
    (y,) = VariableFilter(name="y")(cg.variables)
    scaled = apply_dropout(cg, [y], 0.8, seed=2, custom_divisor=2.5)
    x_ = np.array([9.0, 8.0, 9.0], dtype=F32)
    y_ = np.array([4.0, 5.0, 6.0], dtype=F32)
    (out,), (dropped,) = scaled.evaluate({}, {"x": x_, "y": y_}, key=jax.random.key(3), extra=[y])
    mask = np.asarray(dropped) != 0
    assert_allclose(out, x_ - (y_ * mask / 2.5), rtol=1e-6)


@pytest.mark.ported("tests/test_graph.py::test_snapshot")
def test_snapshot():
    linear = MLP([Identity(), Identity()], [10, 10, 10], weights_init=Constant(1),
                 biases_init=Constant(2))
    linear.initialize()
    cg = ComputationGraph(lambda x: linear.apply(x), x=(None, 10))
    snapshot = cg.get_snapshot(dict(x=np.zeros((1, 10), dtype=F32)))
    # Blocks counted 14 Theano variables; here every annotated variable and
    # parameter has its value (10 inputs/outputs, 4 parameters, 4 norms)
    assert len(snapshot) == len(cg.variables) == 18
    (output,) = [v for v in snapshot if v.brick is linear and v.name == "output"]
    assert_allclose(snapshot[output], np.full((1, 10), 10 * 2 + 2))


@pytest.mark.ported("tests/test_graph.py::test_collect")
def test_collect():
    mlp = MLP(activations=[Logistic(), Logistic()], dims=[784, 100, 784], use_bias=False,
              weights_init=Constant(0.0))
    mlp.initialize()

    def cost(x):
        return SquaredError().apply(x, mlp.apply(x))

    cg = ComputationGraph(cost, x=(None, 784))
    W1, W2 = VariableFilter(roles=[PARAMETER])(cg.variables)
    for i, W in enumerate([W1, W2]):
        cg.set_parameter_values({W.path: np.ones(W.shape, F32) * (i + 1)})
    new_cg = collect_parameters(cg, cg.parameters)
    (collected,) = new_cg.parameters
    value = np.asarray(new_cg.parameter_values()[collected.path])
    assert np.all(value[: 784 * 100] == 1.0)
    assert np.all(value[784 * 100 :] == 2.0)
    assert value.ndim == 1
    W1, W2 = VariableFilter(roles=[COLLECTED])(new_cg.variables)
    (_,), (w1, w2) = new_cg.evaluate(
        new_cg.parameter_values(), {"x": np.zeros((1, 784), F32)}, extra=[W1, W2]
    )
    assert w1.shape == (784, 100) and np.all(np.asarray(w1) == 1.0)
    assert w2.shape == (100, 784) and np.all(np.asarray(w2) == 2.0)


@pytest.mark.ported("tests/test_graph.py::test_similar_scans")
def test_similar_scans():
    r1 = SimpleRecurrent(activation=Tanh(), dim=10)
    r2 = SimpleRecurrent(activation=Tanh(), dim=10)
    cg = ComputationGraph(lambda x: (r1.apply(x), r2.apply(x)), x=(None, None, 10))
    assert len(cg.scans) == 2
    assert r1.path != r2.path  # unnamed roots of one graph are numbered


@pytest.mark.ported("tests/test_variable_filter.py::test_variable_filter")
def test_variable_filter():
    brick1 = Linear(input_dim=2, output_dim=2, name="linear1")
    brick2 = Bias(2, name="bias1")
    activation = Logistic(name="sigm")

    def fn(x):
        h1 = brick1.apply(x, call_id="brick1_call_id")
        h2 = activation.apply(h1, call_id="act")
        h2 = annotate(h2, "h2act")
        return brick2.apply(h2)

    cg = ComputationGraph(fn, x=(2,))
    by_path = {v.path: v for v in cg.parameters}
    W, b1, b2 = by_path["/linear1.W"], by_path["/linear1.b"], by_path["/bias1.b"]
    parameters, bias, brick1_bias = [W, b1, b2], [b1, b2], [b1]

    assert parameters == VariableFilter(roles=[PARAMETER])(cg.variables)
    assert [] == VariableFilter(roles=[FILTER])(cg.variables)
    assert parameters == VariableFilter(roles=[PARAMETER, BIAS])(cg.variables)
    each = VariableFilter(roles=[PARAMETER, BIAS], each_role=True)(cg.variables)
    assert parameters != each and bias == each
    assert brick1_bias == VariableFilter(roles=[BIAS], bricks=[Linear])(cg.variables)
    assert brick1_bias == VariableFilter(roles=[BIAS], bricks=[brick1])(cg.variables)

    (w_norm,) = VariableFilter(name="W_norm")(cg.variables)
    assert w_norm.brick is brick1 and w_norm.has_role(AUXILIARY)
    assert [w_norm] == VariableFilter(name_regex="W_no.?m")(cg.variables)
    (h2act,) = VariableFilter(theano_name="h2act")(cg.variables)
    assert h2act.brick is None
    assert [h2act] == VariableFilter(theano_name_regex="h2a.?t")(cg.variables)

    brick1_apply_variables = [
        v for v in cg.variables if v.brick is brick1 and v.name in ("input_", "output")
    ]
    assert len(brick1_apply_variables) == 2
    assert brick1_apply_variables == VariableFilter(applications=[brick1.apply])(cg.variables)
    assert brick1_apply_variables == VariableFilter(applications=[Linear.apply])(cg.variables)
    assert brick1_apply_variables == VariableFilter(call_id="brick1_call_id")(cg.variables)

    merge = Merge(["input1", "input2"], [5, 6], 2, weights_init=Constant(1.0),
                  biases_init=Constant(0.0))
    merge.initialize()
    merge_cg = ComputationGraph(lambda input1, input2: merge.apply(input1, input2),
                                input1=(None, 5), input2=(None, 6))
    outputs = VariableFilter(roles=[OUTPUT], bricks=[merge])(merge_cg.variables)
    assert len(outputs) == 3
    outputs_application = VariableFilter(roles=[OUTPUT], applications=[merge.apply])(
        merge_cg.variables
    )
    assert len(outputs_application) == 1 and outputs_application[0].name == "output"


@pytest.mark.ported("tests/test_variable_filter.py::test_variable_filter_roles_error")
def test_variable_filter_roles_error():
    brick1 = Linear(input_dim=2, output_dim=2, name="linear1")
    brick1.allocate()
    cg = ComputationGraph(lambda x: brick1.apply(x), x=(2,))
    with pytest.raises(TypeError):
        VariableFilter(roles=PARAMETER)(cg.variables)


@pytest.mark.ported("tests/test_variable_filter.py::test_variable_filter_applications_error")
def test_variable_filter_applications_error():
    brick1 = Linear(input_dim=2, output_dim=2, name="linear1")
    brick1.allocate()
    cg = ComputationGraph(lambda x: brick1.apply(x), x=(2,))
    with pytest.raises(TypeError):
        VariableFilter(applications=brick1.apply)(cg.variables)
