"""Names and values of a graph's outputs stay paired (issue 14, item 1).

``jax.tree`` flattening sorts dict keys, so a graph that named its outputs
from one flattening and read the values in another order labelled a cost of
4.0 as ``batch_size``. Every check here is against values computed by hand.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from bricks.core import Constant, Linear
from bricks.errors import GraphError
from bricks.graph import ComputationGraph, VariableFilter


def _repro_graph() -> ComputationGraph:
    """The issue's repro: a true cost of 4.0 for a batch of 3."""

    def fn(x):
        return {"cost": (x**2).sum(axis=1).mean(), "batch_size": jnp.float32(x.shape[0])}

    return ComputationGraph(fn, x=(None, 2))


def _x() -> np.ndarray:
    return np.full((3, 2), np.sqrt(2.0), np.float32)  # each row: 2 + 2 = 4


def test_dict_outputs_are_named_in_the_order_returned():
    cg = _repro_graph()
    assert [v.name for v in cg.outputs] == ["cost", "batch_size"]
    assert [v.tag for v in cg.outputs] == ["output:cost", "output:batch_size"]


def test_evaluate_pairs_dict_outputs_by_name():
    cg = _repro_graph()
    wanted = [cg.get_variable("output:batch_size"), cg.get_variable("output:cost")]
    outs, (batch_size, cost) = cg.evaluate({}, {"x": _x()}, extra=wanted)
    np.testing.assert_allclose([float(o) for o in outs], [4.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose([float(cost), float(batch_size)], [4.0, 3.0], rtol=1e-6)
    compiled_outs, _ = cg.compile()({}, {"x": _x()})
    np.testing.assert_allclose([float(o) for o in compiled_outs], [4.0, 3.0], rtol=1e-6)


def test_calling_the_graph_returns_the_dict_with_its_values():
    result = _repro_graph()(x=_x())
    assert list(result) == ["cost", "batch_size"]
    np.testing.assert_allclose(float(result["cost"]), 4.0, rtol=1e-6)
    assert float(result["batch_size"]) == 3.0


def test_many_unsorted_keys_with_bricks_and_intermediates():
    lin = Linear(2, 3, weights_init=Constant(0.5), biases_init=Constant(0.25), name="lin")
    lin.initialize()
    keys = ["zeta", "alpha", "mid", "beta", "a0"]

    def fn(x):
        h = lin.apply(x)
        return {k: h.sum() * (i + 1) for i, k in enumerate(keys)}

    cg = ComputationGraph(fn, x=(None, 2))
    assert [v.name for v in cg.outputs] == keys
    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    reference = float((x @ np.full((2, 3), 0.5) + 0.25).sum())
    (out,) = VariableFilter(bricks=[lin], name="output")(cg.variables)
    outs, (h,) = cg.evaluate(cg.parameter_values(), {"x": x}, extra=[out])
    np.testing.assert_allclose(
        [float(o) for o in outs], [reference * (i + 1) for i in range(5)], rtol=1e-6
    )
    np.testing.assert_allclose(np.asarray(h).sum(), reference, rtol=1e-6)
    got = cg(x=x)
    assert list(got) == keys
    for i, k in enumerate(keys):
        np.testing.assert_allclose(float(got[k]), reference * (i + 1), rtol=1e-6)


def test_transform_outputs_keeps_the_dict_pairing():
    cg = _repro_graph().transform_outputs(
        lambda out: {"cost": out["cost"] + 1.0, "batch_size": out["batch_size"]}
    )
    assert [v.name for v in cg.outputs] == ["cost", "batch_size"]
    outs, _ = cg.evaluate({}, {"x": _x()})
    np.testing.assert_allclose([float(o) for o in outs], [5.0, 3.0], rtol=1e-6)


def test_tuple_outputs_keep_their_order():
    cg = ComputationGraph(lambda x: (x.sum(), x.mean()), x=(None, 2))
    assert [v.name for v in cg.outputs] == ["output_0", "output_1"]
    total, mean = cg(x=_x())
    np.testing.assert_allclose([float(total), float(mean)], [6 * np.sqrt(2), np.sqrt(2)], 1e-6)


def test_a_function_that_changes_its_output_names_is_refused():
    calls = []

    def fn(x):
        calls.append(1)
        if len(calls) == 1:
            return {"cost": x.sum(), "extra": x.mean()}
        return {"cost": x.sum(), "other": x.mean()}

    cg = ComputationGraph(fn, x=(None, 2))
    with pytest.raises(GraphError, match=r"returned the outputs \['cost', 'other'\].*'extra'"):
        cg.evaluate({}, {"x": _x()})


def test_outputs_that_are_not_arrays_are_refused():
    with pytest.raises(GraphError, match="output 'nested'.*one array"):
        ComputationGraph(lambda x: {"cost": x.sum(), "nested": {"a": x}}, x=(None, 2))
    with pytest.raises(GraphError, match="non-string keys"):
        ComputationGraph(lambda x: {0: x.sum()}, x=(None, 2))


def test_python_scalar_outputs_still_work():
    cg = ComputationGraph(lambda x: {"cost": x.sum(), "one": 1.0}, x=(None, 2))
    assert float(cg(x=_x())["one"]) == 1.0


def test_describe_shape_names_free_sizes_by_input_axis():
    cg = ComputationGraph(lambda x, y: (x * y[:, None]).sum(axis=1), x=(None, 2), y=(None,))
    assert cg.describe_shape(cg.outputs[0].shape) == "(x.shape[0],)"
    assert cg.describe_shape((3, 4)) == "(3, 4)"


def test_namedtuple_outputs_are_named_by_their_fields():
    from typing import NamedTuple

    class Out(NamedTuple):
        total: jnp.ndarray
        mean: jnp.ndarray

    cg = ComputationGraph(lambda x: Out(x.sum(), x.mean()), x=(None, 2))
    assert [v.name for v in cg.outputs] == ["total", "mean"]
    got = cg(x=_x())
    assert isinstance(got, Out)
    np.testing.assert_allclose(
        [float(got.total), float(got.mean)], [6 * np.sqrt(2), np.sqrt(2)], 1e-6
    )


def test_describe_shape_says_when_free_sizes_were_placeholders():
    def per_row(x):  # int() of a size cannot be traced symbolically
        return jnp.zeros(int(x.shape[0])) + x.sum()

    cg = ComputationGraph(per_row, x=(None, 2))
    assert "placeholder sizes" in cg.describe_shape(cg.outputs[0].shape)
    assert "placeholder" not in _repro_graph().describe_shape((3,))
