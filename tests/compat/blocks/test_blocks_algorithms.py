"""Blocks' tests/algorithms/test_algorithms.py in bricks' idiom.

Blocks' shared variables become entries of the ``parameters`` mapping of
initial values; a gradient or an update is a function ``fn(values, **batch)``
of the current values (and of batch sources it names), keyed by the name of
the value it is for. Step rules are pure ``init``/``update`` pairs, so a
"step rule update" of Blocks is a buffer in the rule's state.
"""

from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose

from bricks.algorithms import (
    AdaDelta,
    AdaGrad,
    Adam,
    BasicMomentum,
    BasicRMSProp,
    CompositeRule,
    GradientDescent,
    Momentum,
    RemoveNotFinite,
    Restrict,
    RMSProp,
    Scale,
    StepClipping,
    StepRule,
    UpdatesAlgorithm,
    VariableClipping,
)

ported = pytest.mark.ported
ORIG = "tests/algorithms/test_algorithms.py::"
W0 = np.array([[1, 2], [3, 4]], np.float32)


def _steps(rule, values_of_a):
    """Steps of ``rule`` for cost sum(a ** 2), ``a`` taking the given values in turn."""
    state = rule.init({"a": jnp.asarray(values_of_a[0], jnp.float32)})
    out = []
    for value in values_of_a:
        a = jnp.asarray(value, jnp.float32)
        steps, state = rule.update({"a": 2 * a}, state, {"a": a})
        out.append(np.asarray(steps["a"]))
    return out


def _apply(rule, steps, params=None):
    steps = {k: jnp.asarray(v, jnp.float32) for k, v in steps.items()}
    params = {k: jnp.ones_like(v) for k, v in steps.items()} if params is None else params
    params = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    out, state = rule.update(steps, rule.init(params), params)
    return {k: np.asarray(v) for k, v in out.items()}, state


BROADCASTABLE_SHAPES = [(5, 6, 1, 5), (2, 1, 3), (3, 4, 1), (1, 9, 6), (1, 1, 1), (1, 5, 1)]


def _check_broadcastable(rule):
    """Blocks checked that steps keep the gradient's broadcastable pattern; here:
    the step of a parameter with size-1 axes keeps its exact shape and dtype
    under jit (no axis dropped, none broadcast)."""
    for shape in BROADCASTABLE_SHAPES:
        param = jnp.zeros(shape, jnp.float32)
        grad = jax.grad(lambda p: p.sum())(param)

        @jax.jit
        def step(grad, param):
            steps, _ = rule.update({"p": grad}, rule.init({"p": param}), {"p": param})
            return steps["p"]

        out = step(grad, param)
        assert out.shape == grad.shape and out.dtype == grad.dtype


# -- UpdatesAlgorithm ----------------------------------------------------------


@ported(ORIG + "test_updates_algorithm")
def test_updates_algorithm():
    algorithm = UpdatesAlgorithm(updates=[("n", lambda v: v["n"] + 1)], values={"n": 1.0})
    algorithm.initialize()
    algorithm.process_batch({})
    assert_allclose(algorithm.parameter_values()["n"], 2)
    algorithm.process_batch({})
    assert_allclose(algorithm.parameter_values()["n"], 3)


@ported(ORIG + "test_updates_algorithm_data")
def test_updates_algorithm_data():
    algorithm = UpdatesAlgorithm(updates=[("n", lambda v, m: m + 1)], values={"n": 1.0})
    assert algorithm.inputs == ["m"]
    algorithm.initialize()
    algorithm.process_batch({"m": np.float32(5)})
    assert_allclose(algorithm.parameter_values()["n"], 6)
    algorithm.process_batch({"m": np.float32(3)})
    assert_allclose(algorithm.parameter_values()["n"], 4)


@ported(ORIG + "test_updates_algorithm_add_updates")
def test_updates_algorithm_add_updates():
    algorithm = UpdatesAlgorithm(
        updates=[("n", lambda v: v["n"] + 1)], values={"n": 1.0, "m": 0.0}
    )
    algorithm.add_updates([("m", lambda v: v["n"] % 2)])
    assert len(algorithm.updates) == 2
    algorithm.initialize()
    algorithm.process_batch({})  # every update reads the values before the step
    assert_allclose(algorithm.parameter_values()["n"], 2)
    assert_allclose(algorithm.parameter_values()["m"], 1)
    algorithm.process_batch({})
    assert_allclose(algorithm.parameter_values()["n"], 3)
    assert_allclose(algorithm.parameter_values()["m"], 0)
    with pytest.raises(ValueError):
        algorithm.add_updates("m")  # neither pairs nor a mapping


# -- GradientDescent -----------------------------------------------------------


def _sum_of_squares(params):
    return jnp.sum(params["W"] ** 2)


@ported(ORIG + "test_gradient_descent")
def test_gradient_descent():
    algorithm = GradientDescent(cost=_sum_of_squares, parameters={"W": W0})
    algorithm.set_hyperparameter(algorithm.step_rule.learning_rate, 0.75)
    algorithm.initialize()
    algorithm.process_batch({})
    assert_allclose(algorithm.parameter_values()["W"], -0.5 * W0)


@ported(ORIG + "test_gradient_descent_with_gradients")
@pytest.mark.parametrize("wrap", [lambda g: g, lambda g: list(g.items())], ids=["dict", "pairs"])
def test_gradient_descent_with_gradients(wrap):
    gradients = OrderedDict(W=jax.grad(_sum_of_squares))
    gradients["W"] = lambda p: jax.grad(_sum_of_squares)(p)["W"]
    algorithm = GradientDescent(gradients=wrap(gradients), parameters={"W": W0})
    algorithm.set_hyperparameter(algorithm.step_rule.learning_rate, 0.75)
    algorithm.initialize()
    algorithm.process_batch({})
    assert_allclose(algorithm.parameter_values()["W"], -0.5 * W0)


@ported(ORIG + "test_gradient_descent_multiple_initialize")
def test_gradient_descent_multiple_initialize():
    algorithm = GradientDescent(gradients={"W": lambda p: 2 * p["W"]}, parameters={"W": W0})
    algorithm.set_hyperparameter(algorithm.step_rule.learning_rate, 0.75)
    algorithm.initialize()
    algorithm.initialize()
    algorithm.initialize()
    assert len(algorithm.updates) == 1
    algorithm.process_batch({})
    assert_allclose(algorithm.parameter_values()["W"], -0.5 * W0)


@ported(ORIG + "test_gradient_descent_finds_inputs_additional_updates")
def test_gradient_descent_finds_inputs_additional_updates():
    algorithm = GradientDescent(
        gradients=OrderedDict(W=lambda p: p["W"] + 1), parameters={"W": W0, "n": np.float32(1)}
    )
    algorithm.add_updates([("n", lambda p, m: p["n"] + m)])
    algorithm.initialize()
    assert "m" in algorithm.inputs
    algorithm.process_batch({"m": np.float32(2)})
    values = algorithm.parameter_values()
    assert_allclose(values["n"], 3)
    assert_allclose(values["W"], W0 - (W0 + 1))


@ported(ORIG + "test_gradient_descent_parameters_inferred")
def test_gradient_descent_parameters_inferred():
    algorithm = GradientDescent(
        gradients=OrderedDict(W=lambda p: p["W"] + 1), parameters={"W": W0}
    )
    assert algorithm.parameters == ["W"]


@ported(ORIG + "test_gradient_descent_parameters_no_cost")
def test_gradient_descent_parameters_no_cost():
    with pytest.raises(ValueError, match="no cost"):
        GradientDescent(parameters={"W": W0})


@ported(ORIG + "test_gradient_descent_parameters_no_parameters")
def test_gradient_descent_parameters_no_parameters():
    with pytest.raises(ValueError, match="no parameters"):
        GradientDescent(cost=_sum_of_squares)


@ported(ORIG + "test_gradient_descent_infer_parameters_gradients_not_ordered")
@pytest.mark.xfail(
    strict=True,
    reason="Python dicts keep insertion order, so a plain dict of gradients has a fixed order",
)
def test_gradient_descent_infer_parameters_gradients_not_ordered():
    with pytest.raises(ValueError, match="fixed order"):
        GradientDescent(gradients={"W": lambda p: 2 * p["W"]}, parameters={"W": W0})


@ported(ORIG + "test_gradient_descent_non_match_parameters_gradients_not_ordered")
def test_gradient_descent_non_match_parameters_gradients_not_ordered():
    with pytest.raises(ValueError, match="'W'"):
        GradientDescent(parameters={"z": np.float32(5)}, gradients={"W": lambda p: 2 * p["W"]})


@ported(ORIG + "test_gradient_descent_non_match_parameters_gradients_ordered")
@pytest.mark.xfail(
    strict=True,
    reason="bricks refuses trained parameters that differ from the gradients' keys "
    "instead of ignoring the parameters given",
)
def test_gradient_descent_non_match_parameters_gradients_ordered():
    algorithm = GradientDescent(
        parameters=["z"],
        gradients=OrderedDict(W=lambda p: p["W"] / 2),
    )
    assert algorithm.parameters == ["W"]


@ported(ORIG + "test_gradient_descent_updates_keyword")
def test_gradient_descent_updates_keyword():
    algorithm = GradientDescent(
        gradients=OrderedDict(W=lambda p: p["W"] / 2),
        parameters={"W": W0, "z": np.float32(5)},
        updates=[("z", lambda p: p["z"] + 1)],
    )
    assert len(algorithm.updates) == 2
    assert "z" in dict(algorithm.updates)
    algorithm.process_batch({})
    assert_allclose(algorithm.parameter_values()["z"], 6)


@ported(ORIG + "test_gradient_descent_spurious_sources")
def test_gradient_descent_spurious_sources():
    algorithm = GradientDescent(cost=_sum_of_squares, parameters={"W": W0})
    algorithm.set_hyperparameter(algorithm.step_rule.learning_rate, 0.75)
    algorithm.initialize()
    with pytest.raises(ValueError):
        algorithm.process_batch({"example_id": np.float32(0)})
    algorithm = GradientDescent(
        cost=_sum_of_squares, parameters={"W": W0}, on_unused_sources="ignore"
    )
    algorithm.set_hyperparameter(algorithm.step_rule.learning_rate, 0.75)
    algorithm.initialize()
    algorithm.process_batch({"example_id": np.float32(0)})
    assert_allclose(algorithm.parameter_values()["W"], -0.5 * W0)


@ported(ORIG + "test_theano_profile_for_sgd_function")
def test_compiled_step_is_one_function():
    # Blocks passed theano_func_kwargs={'profile': True} and read the
    # function's profile; bricks compiles one jitted step and counts traces.
    algorithm = GradientDescent(cost=_sum_of_squares, parameters={"W": W0})
    algorithm.set_hyperparameter(algorithm.step_rule.learning_rate, 0.75)
    algorithm.initialize()
    algorithm.process_batch({})
    assert_allclose(algorithm.parameter_values()["W"], -0.5 * W0)
    algorithm.process_batch({})
    assert algorithm.compilations == 1


# -- step rules ---------------------------------------------------------------


@ported(ORIG + "test_basic_momentum")
def test_basic_momentum():
    assert_allclose(_steps(BasicMomentum(0.5), [[3, 4]] * 3), [[6, 8], [9, 12], [10.5, 14]])


@ported(ORIG + "test_basic_momentum_broadcastable")
def test_basic_momentum_broadcastable():
    _check_broadcastable(BasicMomentum(0.5))


@ported(ORIG + "test_momentum")
def test_momentum():
    out = _steps(Momentum(0.1, 0.5), [[3, 4]] * 3)
    assert_allclose(out, [[0.6, 0.8], [0.9, 1.2], [1.05, 1.4]], rtol=1e-6)


@ported(ORIG + "test_momentum_broadcastable")
def test_momentum_broadcastable():
    _check_broadcastable(Momentum(0.5))


@ported(ORIG + "test_adadelta")
def test_adadelta():
    out = _steps(AdaDelta(decay_rate=0.5, epsilon=1e-7), [[3, 4]] * 3)
    assert_allclose(out, [[0.00044721] * 2, [0.0005164] * 2, [0.00056904] * 2], rtol=1e-5)


@ported(ORIG + "test_adadelta_decay_rate_sanity_check")
def test_adadelta_decay_rate_sanity_check():
    for decay in (-1.0, 2.0):
        with pytest.raises(ValueError):
            AdaDelta(decay)


@ported(ORIG + "test_basicrmsprop")
def test_basicrmsprop():
    out = _steps(BasicRMSProp(decay_rate=0.5, max_scaling=1e5), [[3, 4], [2, 3], [1, 1.5]])
    expected = [[1.41421356] * 2, [0.9701425, 1.02899151], [0.6172134, 0.64699664]]
    assert_allclose(out, expected, rtol=1e-5)


@ported(ORIG + "test_basicrmsprop_broadcastable")
def test_basicrmsprop_broadcastable():
    _check_broadcastable(BasicRMSProp(0.5, 1e5))


@ported(ORIG + "test_basicrmsprop_max_scaling")
def test_basicrmsprop_max_scaling():
    out = _steps(BasicRMSProp(decay_rate=0.5, max_scaling=1e5), [[1e-6, 1e-6]])
    assert_allclose(out[0], [0.2, 0.2], rtol=1e-5)


@ported(ORIG + "test_basicrmsprop_decay_rate_sanity_check")
def test_basicrmsprop_decay_rate_sanity_check():
    for decay in (-1.0, 2.0):
        with pytest.raises(ValueError):
            BasicRMSProp(decay)


@ported(ORIG + "test_basicrmsprop_max_scaling_sanity_check")
def test_basicrmsprop_max_scaling_sanity_check():
    with pytest.raises(ValueError):
        BasicRMSProp(0.5, -1.0)


@ported(ORIG + "test_rmsprop")
def test_rmsprop():
    rule = RMSProp(learning_rate=0.1, decay_rate=0.5, max_scaling=1e5)
    out = _steps(rule, [[3, 4], [2, 3], [1, 1.5]])
    expected = [[0.141421356] * 2, [0.09701425, 0.102899151], [0.06172134, 0.064699664]]
    assert_allclose(out, expected, rtol=1e-5)


@ported(ORIG + "test_rmsprop_broadcastable")
def test_rmsprop_broadcastable():
    _check_broadcastable(RMSProp(0.1, 0.5, 1e5))


@ported(ORIG + "test_step_clipping")
def test_step_clipping():
    out, _ = _apply(StepClipping(4), {"0": 3.0, "1": 4.0})
    assert_allclose([out["0"], out["1"]], [12 / 5.0, 16 / 5.0], rtol=1e-6)
    out, _ = _apply(StepClipping(5), {"0": 3.0, "1": 4.0})
    assert_allclose([out["0"], out["1"]], [3.0, 4.0], rtol=1e-6)


@ported(ORIG + "test_step_clipping_no_threshold_regression")
def test_step_clipping_no_threshold_regression():
    rule = StepClipping()
    assert rule.threshold is None
    out, state = _apply(rule, {"0": 3.0, "1": 4.0})
    assert jax.tree_util.tree_leaves(state) == []  # no updates, no hyperparameters
    assert out == {"0": 3.0, "1": 4.0}


@ported(ORIG + "test_step_clipping_broadcastable")
def test_step_clipping_broadcastable():
    _check_broadcastable(StepClipping(0.4))


@ported(ORIG + "test_variable_clipping")
def test_variable_clipping():
    params = {"a": [1, 1], "b": [[-1, -1, -1]], "c": [[[1], [-1], [1], [-1]]]}
    steps = {"a": [3, 2], "b": [[3, 9, 2]], "c": [[[1], [2], [3], [2]]]}
    out, _ = _apply(VariableClipping(5), steps, params)
    assert list(out) == ["a", "b", "c"]
    assert_allclose(out["a"], [3, 2])
    assert_allclose(out["b"], [[0.78885438, 3.47213595, 0.34164079]], rtol=1e-5)
    assert_allclose(out["c"], [[[1], [2], [3], [2]]])
    params = {"a": [[1, -1, 1, -1], [-1, 1, -1, 1]]}
    out, _ = _apply(VariableClipping(10, axis=1), {"a": [[1, 2, 3, 4], [5, 6, 7, 8]]}, params)
    expected = [[1, 2, 3, 4], [3.54858826, 4.79049022, 5.06478435, 6.30668631]]
    assert_allclose(out["a"], expected, rtol=1e-5)
    rule3 = VariableClipping(10, axis=(1, 2))
    params = {"a": [[[[1], [-1]], [[-1], [1]]], [[[-1], [1]], [[2], [-1]]]]}
    steps = {"a": [[[[1], [2]], [[3], [4]]], [[[5], [6]], [[7], [8]]]]}
    out, _ = _apply(rule3, steps, params)
    expected = [
        [[[1], [2]], [[3], [4]]],
        [[[3.6429394], [4.86911616]], [[5.86911616], [5.96440909]]],
    ]
    assert_allclose(out["a"], expected, rtol=1e-5)
    with pytest.raises(ValueError):
        _apply(rule3, {"0": [1.0]})
    with pytest.raises(ValueError):
        VariableClipping(50, axis=(0, 0))


@ported(ORIG + "test_variable_clipping_broadcastable")
def test_variable_clipping_broadcastable():
    _check_broadcastable(VariableClipping(1))


class _Counting(StepRule):
    """A rule with one buffer: Blocks' RuleWithUpdates, as state."""

    def __init__(self, start):
        self.start = start
        self.hyperparameters = {}

    def init_buffers(self, params):
        return {k: jnp.full_like(v, self.start) for k, v in params.items()}

    def compute_steps(self, steps, hyper, buffers, params):
        return dict(steps), {k: b + 1 for k, b in buffers.items()}


@ported(ORIG + "test_composite_rule")
def test_composite_rule():
    out, _ = _apply(CompositeRule([StepClipping(4), Scale(0.1)]), {"0": 3.0, "1": 4.0})
    assert_allclose([out["0"], out["1"]], [12 / 50.0, 16 / 50.0], rtol=1e-6)
    # the components' updates (buffers) are kept in the components' order
    rule = CompositeRule([_Counting(1.0), _Counting(3.0)])
    _, state = _apply(rule, {"p": 0.0})
    assert [float(s.buffers["p"]) for s in state] == [2.0, 4.0]


@ported(ORIG + "test_adam")
def test_adam():
    out = _steps(Adam(), [[3, 4], [2, 3], [1, 1.5]])
    expected = [[0.002] * 2, [0.0019407, 0.00196515], [0.00178724, 0.0018223]]
    assert_allclose(out, expected, rtol=1e-4)


@ported(ORIG + "test_adam_broadcastable")
def test_adam_broadcastable():
    _check_broadcastable(Adam())


@ported(ORIG + "test_adagrad")
def test_adagrad():
    out = _steps(AdaGrad(), [[3, 4], [2, 3], [1, 1.5]])
    expected = [[0.002] * 2, [0.0011094, 0.0012], [0.00053452, 0.0005747]]
    assert_allclose(out, expected, rtol=1e-4)


@ported(ORIG + "test_adagrad_broadcastable")
def test_adagrad_broadcastable():
    _check_broadcastable(AdaGrad())


@ported(ORIG + "test_remove_not_finite")
def test_remove_not_finite():
    steps = {"1": np.nan, "2": np.inf, "3": 0.123}
    params = {"1": 1.0, "2": 2.0, "3": 3.0}
    out, _ = _apply(RemoveNotFinite(0.1), steps, params)
    assert_allclose([out["1"], out["2"], out["3"]], [0.9, 1.8, 0.123], rtol=1e-6)
    out, _ = _apply(RemoveNotFinite(), steps, params)
    assert_allclose([out["1"], out["2"]], [0.0, 0.0])


@ported(ORIG + "test_remove_not_finite_broadcastable")
def test_remove_not_finite_broadcastable():
    _check_broadcastable(RemoveNotFinite())
    _check_broadcastable(RemoveNotFinite(0.1))


class _PlusTwo(StepRule):
    """Blocks' DummyUpdatesStepRule: step + 2, with a buffer per parameter it sees."""

    hyperparameters = {}

    def init_buffers(self, params):
        return {k: 10 * v for k, v in params.items()}

    def compute_steps(self, steps, hyper, buffers, params):
        return {k: s + 2 for k, s in steps.items()}, {k: 10 * b for k, b in buffers.items()}


@ported(ORIG + "test_restrict")
def test_restrict():
    steps = {str(i): float(i * i) for i in range(6)}
    out, _ = _apply(Restrict(Scale(0.1), ["1", "4"]), steps)
    assert_allclose([out[str(i)] for i in range(6)], [0, 0.1, 4, 9, 1.6, 25], rtol=1e-6)
    params = {str(i): float(i) for i in range(6)}
    out, state = _apply(Restrict(_PlusTwo(), ["1", "4"]), steps, params)
    assert_allclose([out[str(i)] for i in range(6)], [0, 3, 4, 9, 18, 25])
    buffers = state[0].buffers  # only the restricted parameters have updates
    assert {k: float(v) for k, v in buffers.items()} == {"1": 100.0, "4": 400.0}
