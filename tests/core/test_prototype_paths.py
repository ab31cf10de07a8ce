"""MLP honours ``prototype`` as Blocks did, and two parameters never share a path
(issue 14, items 6 and 7)."""

from __future__ import annotations

import numpy as np
import pytest

from bricks.core import MLP, Constant, IsotropicGaussian, Linear, Tanh
from bricks.errors import BrickTreeError


class ScaledLinear(Linear):
    """A Linear subclass: layers copied from it are named ``scaledlinear_<i>``."""


def test_prototype_without_bias_gives_layers_without_bias():
    proto = Linear(use_bias=False)
    mlp = MLP([Tanh(), None], [3, 4, 2], prototype=proto, weights_init=IsotropicGaussian(1.0))
    mlp.initialize(seed=3)
    values = mlp.get_parameter_values()
    assert sorted(values) == ["/mlp/linear_0.W", "/mlp/linear_1.W"]
    x = np.random.RandomState(0).randn(5, 3).astype(np.float32)
    w0, w1 = (np.asarray(values[f"/mlp/linear_{i}.W"], np.float64) for i in (0, 1))
    want = np.tanh(x @ w0) @ w1
    np.testing.assert_allclose(mlp.apply(x), want, rtol=1e-5, atol=1e-6)
    # the layers are copies: the prototype itself stays a standalone, unallocated brick
    assert all(layer is not proto for layer in mlp.linear_transformations)
    assert proto.parent is None and not proto.allocated
    assert mlp.linear_transformations[0] is not mlp.linear_transformations[1]


def test_layers_are_named_after_the_prototype_class():
    mlp = MLP([Tanh(), None], [3, 4, 2], prototype=ScaledLinear(), weights_init=Constant(1.0),
              biases_init=Constant(0.0))
    assert [b.name for b in mlp.linear_transformations] == ["scaledlinear_0", "scaledlinear_1"]
    assert all(type(b) is ScaledLinear for b in mlp.linear_transformations)
    mlp.initialize()
    assert "/mlp/scaledlinear_1.b" in mlp.get_parameter_values()


def test_prototype_settings_are_defaults_the_mlp_overwrites():
    # as in Blocks: what the MLP is given is pushed over the prototype's settings
    mlp = MLP([None], [2, 2], prototype=Linear(weights_init=Constant(2.0), use_bias=False),
              weights_init=Constant(1.0), biases_init=Constant(0.0), use_bias=True)
    mlp.initialize()
    values = mlp.get_parameter_values()
    np.testing.assert_array_equal(values["/mlp/linear_0.W"], 1.0)
    assert "/mlp/linear_0.b" in values
    # and what the MLP is not given stays the prototype's
    mlp = MLP([None], [2, 2], prototype=Linear(weights_init=Constant(2.0), use_bias=False))
    mlp.initialize()
    assert list(mlp.get_parameter_values()) == ["/mlp/linear_0.W"]
    np.testing.assert_array_equal(mlp.get_parameter_values()["/mlp/linear_0.W"], 2.0)


def test_default_mlp_is_unchanged():
    mlp = MLP([Tanh(), None], [3, 4, 2], weights_init=Constant(1.0), biases_init=Constant(0.0))
    mlp.initialize()
    assert sorted(mlp.get_parameter_values()) == [
        "/mlp/linear_0.W", "/mlp/linear_0.b", "/mlp/linear_1.W", "/mlp/linear_1.b"
    ]


def test_bad_prototypes_are_refused():
    with pytest.raises(BrickTreeError, match="must be a brick"):
        MLP([None], [2, 2], prototype="linear")
    owned = Linear(name="lin")
    MLP([None], [2, 2], prototype=owned, name="other")  # a prototype is copied, not adopted
    parent = MLP([None], [2, 2])
    with pytest.raises(BrickTreeError, match="already has a parent"):
        MLP([None], [2, 2], prototype=parent.linear_transformations[0])


def _renamed_mlp() -> MLP:
    mlp = MLP([Tanh(), None], [2, 3, 2], weights_init=Constant(1.0), biases_init=Constant(0.0))
    mlp.initialize()
    mlp.linear_transformations[1].name = "linear_0"
    return mlp


@pytest.mark.parametrize(
    "read",
    [
        lambda m: m.get_parameter_values(),
        lambda m: m.parameter_specs(),
        lambda m: m.set_parameter_values({"/mlp/linear_0.b": np.zeros(3)}),
    ],
    ids=["get_parameter_values", "parameter_specs", "set_parameter_values"],
)
def test_two_parameters_on_one_path_are_refused(read):
    mlp = _renamed_mlp()
    with pytest.raises(BrickTreeError) as info:
        read(mlp)
    message = str(info.value)
    assert "'/mlp/linear_0.W'" in message
    assert "child 0 of /mlp" in message and "child 2 of /mlp" in message
