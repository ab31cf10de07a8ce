"""Non-finite steps: RemoveNotFinite skips them whole, counts them and stops after too many.

The cost below is finite for every batch, but for a batch whose ``bad`` flag
is set the gradient of parameter ``a`` is NaN (the ``where`` of a branch whose
derivative is NaN), the case that used to move ``b`` anyway and poison
Adam's moments of ``a`` for ever.
"""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bricks.algorithms import (
    Adam,
    CompositeRule,
    GradientDescent,
    Momentum,
    RemoveNotFinite,
    Restrict,
    Scale,
)
from bricks.errors import NonFiniteCostError, StepRuleError, TooManySkippedStepsError
from bricks.extensions import FinishAfter, SimpleExtension, TrainingDataMonitoring
from bricks.main_loop import MainLoop


def cost(params, x, bad):
    fit = ((x @ params["b"] - 1.0) ** 2).mean() + (params["a"] ** 2).sum()
    # a finite value, but when ``bad`` is set the branch not taken is sqrt(-1),
    # whose NaN derivative reaches ``a`` (0 * NaN): a NaN gradient, a finite cost
    u = 1.0 - 2.0 * bad[0] + 0.0 * params["a"].sum()
    return fit + jnp.where(bad[0] > 0, 0.0, jnp.sqrt(u))


def _batch(i, bad=False):
    x = np.random.RandomState(i).randn(4, 3).astype(np.float32)
    return {"x": x, "bad": np.full((1,), float(bad), np.float32)}


def _algorithm(rule):
    params = {"a": np.full((2,), 0.5, np.float32), "b": np.full((3,), 0.1, np.float32)}
    return GradientDescent(cost=cost, parameters=params, step_rule=rule)


def _state(algorithm):
    meta, arrays = algorithm.get_state()
    return meta, {k: np.array(v, copy=True) for k, v in arrays.items()}


RULES = {
    "composite": lambda: CompositeRule([Adam(0.1), RemoveNotFinite()]),
    "optax_chain": lambda: optax.chain(optax.adam(0.1), RemoveNotFinite()),
    "restricted": lambda: CompositeRule([Momentum(0.1, 0.9), Restrict(RemoveNotFinite(), ["b"])]),
}


@pytest.mark.parametrize("kind", sorted(RULES))
def test_a_nan_gradient_skips_the_whole_step_and_later_steps_move_normally(kind):
    algorithm = _algorithm(RULES[kind]())
    algorithm.process_batch(_batch(0))
    meta_before, before = _state(algorithm)
    algorithm.process_batch(_batch(1, bad=True))  # finite cost, NaN gradient of "a"
    meta_after, after = _state(algorithm)
    assert meta_after["skipped"] == 1 and meta_after["consecutive"] == 1
    assert meta_after["step"] == meta_before["step"] + 1
    trained = [k for k in before if k.startswith(("params/", "opt_state/"))]
    assert len(trained) > 2
    for name in trained:  # every parameter and the whole optimizer state, bitwise
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
        assert np.all(np.isfinite(after[name])), name
    # a later finite step moves as if the skipped batch had never come
    algorithm.process_batch(_batch(2))
    reference = _algorithm(RULES[kind]())
    reference.process_batch(_batch(0))
    reference.process_batch(_batch(2))
    meta, got = _state(algorithm)
    _, want = _state(reference)
    assert meta["consecutive"] == 0 and meta["skipped"] == 1
    for name in trained:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert not np.array_equal(got["params/b"], before["params/b"])


def test_without_remove_not_finite_a_nan_gradient_stops_training_before_it_poisons():
    algorithm = _algorithm(Adam(0.1))
    algorithm.process_batch(_batch(0))
    _, before = _state(algorithm)
    algorithm.process_batch(_batch(1, bad=True))
    algorithm.process_batch(_batch(2))
    with pytest.raises(NonFiniteCostError, match="iteration 2 gave a NaN or infinite"):
        algorithm.check_finite()
    _, after = _state(algorithm)
    for name, value in before.items():
        if name.startswith(("params/", "opt_state/")):
            np.testing.assert_array_equal(after[name], value, err_msg=name)


def test_a_skipped_step_with_scaler_shrinks_the_parameters_and_keeps_the_optimizer_state():
    algorithm = _algorithm(CompositeRule([Adam(0.1), RemoveNotFinite(scaler=0.5)]))
    algorithm.process_batch(_batch(0))
    _, before = _state(algorithm)
    algorithm.process_batch(_batch(1, bad=True))
    _, after = _state(algorithm)
    for name in ("params/a", "params/b"):
        np.testing.assert_array_equal(after[name], before[name] * np.float32(0.5))
    for name in before:
        if name.startswith("opt_state/"):
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    stopping = _algorithm(CompositeRule([Scale(0.1), RemoveNotFinite(0.5, max_consecutive=1)]))
    stopping.process_batch(_batch(1, bad=True))
    with pytest.raises(TooManySkippedStepsError, match="multiplying the parameters by 0.5"):
        stopping.check_finite()


class _Stream:
    """Batches 0..n-1; those in ``bad`` have a NaN gradient; counts what was read."""

    def __init__(self, n, bad):
        self.n, self.bad, self.read = n, set(bad), 0

    def get_epoch_iterator(self, as_dict=True):
        for i in range(self.n):
            self.read += 1
            yield _batch(i, bad=i in self.bad)


def _loop(rule, stream, steps_per_call=1, **finish):
    algorithm = _algorithm(rule)
    extensions = [
        TrainingDataMonitoring(["cost"], every_n_batches=4),
        FinishAfter(**(finish or {"after_n_epochs": 1})),
    ]
    return MainLoop(algorithm, stream, extensions=extensions, steps_per_call=steps_per_call)


@pytest.mark.parametrize("steps_per_call", [1, 4])
def test_skips_are_counted_in_the_log_also_with_fused_steps(steps_per_call):
    rule = CompositeRule([Adam(0.1), RemoveNotFinite()])
    loop = _loop(rule, _Stream(12, bad={1, 5, 6}), steps_per_call)
    loop.run()
    records = {i: row["skipped_steps"] for i, row in loop.log if "skipped_steps" in row}
    assert records == {4: 1, 8: 3}  # read with the monitoring reports
    assert loop.algorithm.skipped_steps == 3
    reference = _algorithm(CompositeRule([Adam(0.1), RemoveNotFinite()]))
    for i in range(12):
        if i not in {1, 5, 6}:
            reference.process_batch(_batch(i))
    got, want = loop.algorithm.parameter_values(), reference.parameter_values()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("steps_per_call", [1, 4])
def test_max_consecutive_skips_stop_training_with_a_clear_error(steps_per_call):
    rule = CompositeRule([Adam(0.1), RemoveNotFinite()])
    loop = _loop(rule, _Stream(40, bad=range(3, 40)), steps_per_call, after_n_batches=40)
    with pytest.raises(TooManySkippedStepsError) as info:
        loop.run()
    message = str(info.value)
    assert "skipped 10 steps in a row (iterations 4 to 13; max_consecutive=10)" in message
    assert "after iteration 3" in message and "RemoveNotFinite(max_consecutive=" in message
    assert isinstance(info.value, NonFiniteCostError)
    assert loop.log[13]["too_many_skipped_steps"] is True
    assert loop.log[13]["skipped_steps"] == 10
    assert loop.status["iterations_done"] == 13
    assert loop.data_stream.read <= 13 + 16  # seen within two looks at the flags
    reference = _algorithm(CompositeRule([Adam(0.1), RemoveNotFinite()]))
    for i in range(3):
        reference.process_batch(_batch(i))
    _, got = _state(loop.algorithm)
    _, want = _state(reference)
    for name in want:
        if name.startswith(("params/", "opt_state/")):
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_max_consecutive_is_a_setting_and_none_never_stops():
    short = CompositeRule([Scale(0.1), RemoveNotFinite(max_consecutive=3)])
    loop = _loop(short, _Stream(10, bad={2, 3, 4}))
    with pytest.raises(TooManySkippedStepsError, match="skipped 3 steps in a row"):
        loop.run()
    never = CompositeRule([Scale(0.1), RemoveNotFinite(max_consecutive=None)])
    loop = _loop(never, _Stream(30, bad=range(1, 30)))
    loop.run()
    assert loop.algorithm.skipped_steps == 29
    with pytest.raises(StepRuleError, match="positive integer or None"):
        RemoveNotFinite(max_consecutive=0)
    with pytest.raises(StepRuleError, match="different settings"):
        _algorithm(CompositeRule([RemoveNotFinite(0.5), Scale(), RemoveNotFinite()]))


def test_the_skip_counters_survive_a_checkpoint_round_trip():
    rule = CompositeRule([Adam(0.1), RemoveNotFinite(max_consecutive=3)])
    algorithm = _algorithm(rule)
    for i, bad in enumerate([False, True, True]):
        algorithm.process_batch(_batch(i, bad))
    meta, arrays = algorithm.get_state()
    assert (meta["skipped"], meta["consecutive"]) == (2, 2)
    resumed = _algorithm(CompositeRule([Adam(0.1), RemoveNotFinite(max_consecutive=3)]))
    resumed.set_state(meta, arrays)
    resumed.process_batch(_batch(3, bad=True))  # the third in a row
    with pytest.raises(TooManySkippedStepsError, match="iterations 2 to 4"):
        resumed.check_finite()


def test_a_skip_of_a_state_update_keeps_the_extension_view_finite():
    """Extensions reading parameters after a skipped step see the finite ones."""
    seen = []

    class Watch(SimpleExtension):
        def do(self, which, *args):
            seen.append(self.main_loop.algorithm.parameter_values()["a"].copy())

    algorithm = _algorithm(CompositeRule([Adam(0.1), RemoveNotFinite()]))
    loop = MainLoop(
        algorithm,
        _Stream(4, bad={2}),
        extensions=[Watch(after_batch=True), FinishAfter(after_n_epochs=1)],
    )
    loop.run()
    assert all(np.all(np.isfinite(a)) for a in seen)
    np.testing.assert_array_equal(seen[1], seen[2])


def test_a_step_that_overflows_from_finite_gradients_is_skipped_by_remove_not_finite():
    algorithm = _algorithm(CompositeRule([Scale(3e38), RemoveNotFinite()]))
    _, before = _state(algorithm)
    algorithm.process_batch(_batch(0))  # finite gradients (about 1 and 2): a step of 3e38 * 2 = inf
    meta, after = _state(algorithm)
    assert meta["skipped"] == 1
    for name in ("params/a", "params/b"):
        np.testing.assert_array_equal(after[name], before[name])
