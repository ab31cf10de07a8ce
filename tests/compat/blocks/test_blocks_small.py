"""Blocks' tests/bricks/test_lookup.py, test_cost.py, tests/test_roles.py and
tests/test_select.py, in bricks' idiom."""

from __future__ import annotations

import pickle
from copy import deepcopy

import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_equal

from bricks.core import (
    AUXILIARY,
    BIAS,
    COST,
    FILTER,
    INPUT,
    OUTPUT,
    PARAMETER,
    WEIGHT,
    Brick,
    CategoricalCrossEntropy,
    LookupTable,
    MisclassificationRate,
    Selector,
    Softmax,
)
from bricks.core.selection import Path

F32 = np.float32


@pytest.mark.ported("tests/bricks/test_lookup.py::test_lookup_table")
def test_lookup_table():
    lt = LookupTable(5, 3)
    lt.allocate()
    lt.set_parameter_values({f"{lt.path}.W": np.arange(15).reshape(5, 3).astype(F32)})
    x_val = np.array([[1, 2], [0, 3]])
    desired = np.array([[[3, 4, 5], [6, 7, 8]], [[0, 1, 2], [9, 10, 11]]], dtype=F32)
    assert_equal(np.asarray(lt.apply(x_val)), desired)
    assert_equal(lt.get_dim(lt.apply.inputs[0]), 0)
    assert_equal(lt.get_dim(lt.apply.outputs[0]), lt.dim)
    with pytest.raises(ValueError):
        lt.get_dim("random_name")
    assert lt.input_dim == 0
    assert lt.output_dim == 3
    lt.output_dim = 4
    assert lt.output_dim == 4
    with pytest.raises(ValueError):
        lt.input_dim = 11
    lt.input_dim = 0


@pytest.mark.ported("tests/bricks/test_cost.py::test_softmax_vector")
def test_softmax_vector():
    rng = np.random.RandomState(1)
    x_val = rng.randn(100, 10).astype(F32)
    y_val = rng.randint(low=0, high=10, size=100)
    cost = CategoricalCrossEntropy().apply(y_val, Softmax().apply(x_val))
    cost_stable = Softmax().categorical_cross_entropy(y_val, x_val).mean()
    assert_allclose(cost, cost_stable, rtol=1e-6)


@pytest.mark.ported("tests/bricks/test_cost.py::test_softmax_matrix")
def test_softmax_matrix():
    rng = np.random.RandomState(1)
    x_val = rng.randn(2, 2).astype(F32)
    y_val_us = rng.uniform(size=(2, 2)).astype(F32)
    y_val = y_val_us / np.expand_dims(y_val_us.sum(axis=1), axis=1)
    cost = CategoricalCrossEntropy().apply(y_val, Softmax().apply(x_val))
    cost_stable = Softmax().categorical_cross_entropy(y_val, x_val).mean()
    assert_allclose(cost, cost_stable, rtol=1e-5)


@pytest.mark.ported("tests/bricks/test_cost.py::test_misclassification_rate")
def test_misclassification_rate():
    y_ = np.array([2, 1, 0, 1, 2], dtype="int32")
    yhat_ = np.array(
        [[3, 2, 1, 0], [1, 8, 2, 1], [3, 8, 1, 2], [1, 6, 4, 2], [9, 7, 5, 5]], dtype="float32"
    )
    got = [MisclassificationRate(top_k=k).apply(y_, yhat_) for k in (1, 2, 3)]
    assert_allclose([0.6, 0.4, 0.2], got)


@pytest.mark.ported("tests/test_roles.py::test_role_serialization")
def test_role_serialization():
    for role in [INPUT, OUTPUT, COST, PARAMETER, AUXILIARY, WEIGHT, BIAS, FILTER]:
        assert pickle.loads(pickle.dumps(role)) == role


class MockBrickTop(Brick):
    def __init__(self, children, **kwargs):
        super().__init__(**kwargs)
        self.children = children


class MockBrickBottom(Brick):
    def _allocate(self):
        for name in ("V", "W"):
            self.add_parameter(name, (), (), lambda key, shape, dtype: jnp.zeros(shape, dtype))


@pytest.mark.ported("tests/test_select.py::test_path")
def test_path():
    path1 = Path.parse("/brick")
    assert path1.nodes == (Path.BrickName("brick"),)
    path2 = Path.parse("/brick.W")
    assert path2.nodes == (Path.BrickName("brick"), Path.ParameterName("W"))
    path3 = Path.parse("/brick1/brick2")
    assert path3.nodes == (Path.BrickName("brick1"), Path.BrickName("brick2"))
    path4 = deepcopy(path3)
    assert path4 == path3
    assert path4 != path2
    assert hash(path4) == hash(path3)
    assert hash(path4) != hash(path2)


@pytest.mark.ported("tests/test_select.py::test_selector_get_parameters_uniqueness")
def test_selector_get_parameters_uniqueness():
    top = MockBrickTop(
        [MockBrickBottom(name="bottom"), MockBrickBottom(name="bottom")], name="top"
    )
    with pytest.raises(ValueError):
        Selector([top]).get_parameters()


@pytest.mark.ported("tests/test_select.py::test_selector")
def test_selector():
    b1 = MockBrickBottom(name="b1")
    b2 = MockBrickBottom(name="b2")
    b3 = MockBrickBottom(name="b3")
    t1 = MockBrickTop([b1, b2], name="t1")
    t2 = MockBrickTop([b2, b3], name="t2")  # b2 is shared: its path is /t1/b2

    s1 = Selector([t1])
    s11 = s1.select("/t1/b1")
    assert s11.bricks[0] is b1 and len(s11.bricks) == 1
    s12 = s1.select("/t1")
    assert s12.bricks[0] is t1 and len(s12.bricks) == 1

    s2 = Selector([t1, t2])
    s21 = s2.select("/t2/b2")
    assert s21.bricks[0] is b2 and len(s21.bricks) == 1
    (v,) = s2.select("/t2/b2.V").values()
    assert v == b2.parameters[0]

    parameters = list(s1.get_parameters().items())
    assert parameters[0][0] == "/t1/b1.V"
    assert parameters[0][1] == b1.parameters[0]
    assert parameters[1][0] == "/t1/b1.W"
    assert parameters[1][1] == b1.parameters[1]
    assert parameters[2][0] == "/t1/b2.V"
    assert parameters[2][1] == b2.parameters[0]
    assert parameters[3][0] == "/t1/b2.W"
    assert parameters[3][1] == b2.parameters[1]
