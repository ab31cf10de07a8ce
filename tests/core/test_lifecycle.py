"""The brick lifecycle: lazy configuration, pushes, initialization, errors."""

import jax.numpy as jnp
import numpy as np
import pytest

from bricks.core import (
    MLP,
    Brick,
    Constant,
    IsotropicGaussian,
    Linear,
    Tanh,
    application,
)
from bricks.errors import (
    BrickTreeError,
    ConfigurationConflict,
    ConfigurationError,
    NotInitializedError,
    ParameterError,
)

INITS = dict(weights_init=IsotropicGaussian(0.1), biases_init=Constant(0.0))


class Holder(Brick):
    """A parent that pushes its ``dim`` to a child's ``input_dim`` (or ``dim``)."""

    allocation_config = ("dim",)
    dim = None
    log: list = []

    def __init__(self, child, dim=None, **kwargs):
        super().__init__(children=[child], **kwargs)
        if dim is not None:
            self.dim = dim

    def _push_allocation_config(self):
        Holder.log.append(self.name)
        child = self.children[0]
        key = "input_dim" if isinstance(child, Linear) else "dim"
        self.push_to(child, key, self.dim)

    @application
    def apply(self, x):
        return self.children[0].apply(x)


def test_lazy_input_dim_from_parent_or_later():
    lin = Linear(output_dim=10, **INITS)
    with pytest.raises(ConfigurationError, match=r"/linear.*input_dim"):
        lin.allocate()
    lin.input_dim = 3
    lin.initialize()
    assert lin.apply(jnp.ones((2, 3))).shape == (2, 10)

    lin2 = Linear(output_dim=10, **INITS)
    holder = Holder(lin2, dim=4, **{})
    holder.initialize()
    assert lin2.input_dim == 4 and not lin2.is_explicit("input_dim")
    assert holder.get_parameter_values()["/holder/linear.W"].shape == (4, 10)


def test_push_order_is_parent_first():
    Holder.log = []
    inner = Holder(Linear(output_dim=2, **INITS), name="inner")
    outer = Holder(inner, dim=5, name="outer")
    outer.allocate()
    assert Holder.log == ["outer", "inner"]
    assert inner.children[0].input_dim == 5


def test_mlp_dims_after_construction_and_changes_reallocate():
    mlp = MLP([Tanh(), None], **INITS)
    with pytest.raises(ConfigurationError, match=r"/mlp.*dims"):
        mlp.initialize()
    mlp.dims = [3, 4, 2]
    mlp.initialize()
    assert mlp.apply(jnp.ones((1, 3))).shape == (1, 2)
    mlp.dims = [5, 4, 2]
    mlp.initialize()
    assert mlp.get_parameter_values()["/mlp/linear_0.W"].shape == (5, 4)
    with pytest.raises(ConfigurationError, match="needs 3 dims"):
        MLP([Tanh(), None], [3, 2]).allocate()


def test_explicit_child_settings_win():
    mlp = MLP([Tanh(), None], [2, 3, 2], weights_init=Constant(1.0), biases_init=Constant(0.0))
    mlp.linear_transformations[0].weights_init = Constant(2.0)
    mlp.initialize()
    values = mlp.get_parameter_values()
    assert np.all(values["/mlp/linear_0.W"] == 2.0)
    assert np.all(values["/mlp/linear_1.W"] == 1.0)


def test_conflicting_explicit_dims_raise_naming_both():
    mlp = MLP([Tanh()], [3, 2])
    mlp.linear_transformations[0].input_dim = 7
    with pytest.raises(ConfigurationConflict) as info:
        mlp.allocate()
    message = str(info.value)
    assert "/mlp " in message + " " and "/mlp/linear_0" in message
    assert "input_dim=3" in message and "input_dim=7" in message
    # an explicit setting that agrees is fine
    mlp.linear_transformations[0].input_dim = 3
    mlp.allocate()


def test_initialization_reproducible_and_siblings_differ():
    def make():
        return MLP([Tanh(), Tanh()], [3, 3, 3], **INITS)

    a, b, c = make(), make(), make()
    a.initialize(seed=5)
    b.initialize(seed=5)
    c.initialize(seed=6)
    va, vb, vc = a.get_parameter_values(), b.get_parameter_values(), c.get_parameter_values()
    for path in va:
        np.testing.assert_array_equal(va[path], vb[path])
    assert not np.allclose(va["/mlp/linear_0.W"], vc["/mlp/linear_0.W"])
    assert not np.allclose(va["/mlp/linear_0.W"], va["/mlp/linear_1.W"])
    # re-initializing the same brick with the same seed reproduces it
    a.set_parameter_values({"/mlp/linear_0.W": np.zeros((3, 3))})
    a.initialize(seed=5)
    np.testing.assert_array_equal(a.get_parameter_values()["/mlp/linear_0.W"],
                                  vb["/mlp/linear_0.W"])


def test_missing_scheme_names_brick_and_attribute():
    lin = Linear(2, 3, biases_init=Constant(0.0))
    with pytest.raises(ConfigurationError, match=r"/linear.*weights_init"):
        lin.initialize()


def test_uninitialized_brick_raises():
    lin = Linear(2, 3)
    with pytest.raises(NotInitializedError, match=r"/linear\.W"):
        lin.apply(jnp.ones((1, 2)))
    with pytest.raises(NotInitializedError):
        lin.get_parameter_values()


def test_set_parameter_values_errors():
    mlp = MLP([Tanh()], [3, 2], **INITS)
    mlp.initialize()
    with pytest.raises(ParameterError, match=r"did you mean '/mlp/linear_0\.W'"):
        mlp.set_parameter_values({"/mlp/linear_0.w": np.zeros((3, 2))})
    with pytest.raises(ParameterError, match=r"\(3, 2\).*\(2, 3\)"):
        mlp.set_parameter_values({"/mlp/linear_0.W": np.zeros((2, 3))})
    mlp.set_parameter_values({"/nowhere.W": 0}, strict=False)
    with pytest.raises(ParameterError, match="did you mean 'W'"):
        mlp.linear_transformations[0].parameter("w")


def test_parameter_round_trip_by_path():
    mlp = MLP([Tanh()], [3, 2], **INITS)
    mlp.initialize()
    values = {k: np.asarray(v) + 1.0 for k, v in mlp.get_parameter_values().items()}
    fresh = MLP([Tanh()], [3, 2])
    fresh.set_parameter_values(values)
    assert fresh.initialized
    out = fresh.apply(jnp.ones((1, 3)))
    expected = np.tanh(np.ones((1, 3)) @ values["/mlp/linear_0.W"] + values["/mlp/linear_0.b"])
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_use_bias_pushed_only_when_given():
    mlp = MLP([Tanh()], [3, 2], use_bias=False, weights_init=Constant(1.0))
    mlp.initialize()
    assert sorted(mlp.get_parameter_values()) == ["/mlp/linear_0.W"]

    mlp = MLP([Tanh()], [3, 2], **INITS)
    mlp.linear_transformations[0].use_bias = False
    mlp.initialize()
    assert sorted(mlp.get_parameter_values()) == ["/mlp/linear_0.W"]

    mlp = MLP([Tanh()], [3, 2], **INITS)
    mlp.initialize()
    assert sorted(mlp.get_parameter_values()) == ["/mlp/linear_0.W", "/mlp/linear_0.b"]


def test_duplicate_child_names_and_two_parents():
    parent = Brick(children=[Linear(2, 2, name="a"), Linear(2, 2, name="a")])
    with pytest.raises(BrickTreeError, match="two children named 'a'"):
        parent.allocate()
    lin = Linear(2, 2)
    first = Brick(name="first", children=[lin])
    # a shared brick (issue 15): its first parent gives its one path
    second = Brick(name="second", children=[lin])
    assert lin.path == "/first/linear" and lin.parents == [first, second]
    assert second.children[0] is lin
    with pytest.raises(BrickTreeError):
        lin.parent = None


def test_wrapping_initialized_bricks_keeps_their_values():
    lin = Linear(2, 2, **INITS)
    lin.initialize(seed=3)
    before = np.asarray(lin.W)
    holder = Holder(lin)
    holder.apply(jnp.ones((1, 2)))  # allocates the holder lazily
    np.testing.assert_array_equal(lin.W, before)
