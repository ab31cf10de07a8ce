"""Selector: bricks and parameters by path, with wildcards."""

import numpy as np
import pytest

from bricks.core import MLP, Constant, Identity, Linear, Selector, Tanh
from bricks.core.roles import BIAS, WEIGHT
from bricks.errors import SelectionError


def make():
    mlp = MLP([Tanh(), Identity()], [3, 4, 2], weights_init=Constant(1.0),
              biases_init=Constant(0.0))
    return mlp


def test_select_bricks_with_wildcards():
    mlp = make()
    sel = Selector(mlp)
    assert sel.select("/mlp").bricks == [mlp]
    assert sel.select("/mlp/linear_0").bricks == [mlp.linear_transformations[0]]
    assert sel.select("/mlp/linear_*").bricks == mlp.linear_transformations
    assert sel.select("/*/tanh").bricks == [mlp.activations[0]]
    assert sel.select("/mlp/nothing").bricks == []
    assert sel.select("/other").bricks == []
    # selections compose
    assert sel.select("/mlp").select("/mlp/linear_1").bricks == [mlp.linear_transformations[1]]


def test_select_parameters():
    mlp = make()
    params = Selector(mlp).select("/mlp/linear_0.W")
    assert list(params) == ["/mlp/linear_0.W"]
    var = params["/mlp/linear_0.W"]
    assert var.shape == (3, 4) and var.has_role(WEIGHT) and var.brick is mlp.children[0]
    bs = Selector(mlp).select("/mlp/*.b")
    assert sorted(bs) == ["/mlp/linear_0.b", "/mlp/linear_1.b"]
    assert all(v.has_role(BIAS) for v in bs.values())
    assert sorted(Selector(mlp).select("/mlp/linear_1.*")) == ["/mlp/linear_1.W", "/mlp/linear_1.b"]


def test_get_parameters_and_values():
    mlp = make()
    lone = Linear(2, 2, weights_init=Constant(2.0), biases_init=Constant(0.0), name="lone")
    sel = Selector([mlp, lone])
    assert sorted(sel.get_parameters()) == [
        "/lone.W", "/lone.b", "/mlp/linear_0.W", "/mlp/linear_0.b", "/mlp/linear_1.W",
        "/mlp/linear_1.b",
    ]
    mlp.initialize()
    lone.initialize()
    values = sel.select("/mlp/linear_0").get_parameter_values()
    assert sorted(values) == ["/mlp/linear_0.W", "/mlp/linear_0.b"]
    np.testing.assert_array_equal(values["/mlp/linear_0.W"], np.ones((3, 4)))
    np.testing.assert_array_equal(sel.get_parameter_values()["/lone.W"], 2 * np.ones((2, 2)))


@pytest.mark.parametrize("path", ["mlp/linear_0", "/mlp//linear_0", "/mlp/linear_0.", 3])
def test_malformed_paths(path):
    with pytest.raises(SelectionError):
        Selector(make()).select(path)
