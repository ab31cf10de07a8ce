"""GradientDescent over a real ComputationGraph: parameter selection, dropout keys, state."""

import jax
import numpy as np
import pytest

from bricks.algorithms import Adam, GradientDescent, Restrict, Scale
from bricks.core import MLP, OUTPUT, Constant, IsotropicGaussian, Tanh
from bricks.errors import AlgorithmError
from bricks.graph import ComputationGraph, VariableFilter, apply_dropout


def _graph():
    mlp = MLP(
        [Tanh(), Tanh()], [3, 4, 1], weights_init=IsotropicGaussian(0.5), biases_init=Constant(0)
    )
    mlp.initialize(seed=0)

    def cost(x):
        return (mlp.apply(x) ** 2).mean()

    return ComputationGraph(cost, x=(None, 3))


@pytest.mark.slow
def test_graph_training_with_dropout_and_exact_state_round_trip():
    cg = _graph()
    hidden = VariableFilter(bricks=[Tanh], roles=[OUTPUT])(cg.variables)[:1]
    dropped = apply_dropout(cg, hidden, 0.5)
    assert dropped.needs_key
    x = np.random.RandomState(0).randn(5, 3).astype(np.float32)
    a = GradientDescent(cost=dropped, step_rule=Adam(0.01), seed=3)
    assert sorted(a.parameter_paths) == sorted(p.path for p in cg.parameters)
    for _ in range(2):
        a.process_batch({"x": x})
    meta, arrays = a.get_state()
    b = GradientDescent(cost=dropped, step_rule=Adam(0.01), seed=3)
    b.set_state(meta, arrays)
    for _ in range(3):
        a.process_batch({"x": x})
        b.process_batch({"x": x})
    for k, v in a.parameter_values().items():
        np.testing.assert_array_equal(b.parameter_values()[k], v)
    assert a.compilations == 1
    a.write_back()
    np.testing.assert_array_equal(
        np.asarray(cg.parameter_values()["/mlp/linear_0.W"]),
        a.parameter_values()["/mlp/linear_0.W"],
    )


def test_parameter_subset_and_restrict():
    cg = _graph()
    x = np.ones((2, 3), np.float32)
    w0 = "/mlp/linear_0.W"
    a = GradientDescent(cost=cg, parameters=[w0])
    before = a.parameter_values()
    a.process_batch({"x": x})
    after = a.parameter_values()
    assert not np.array_equal(before[w0], after[w0])
    assert all(np.array_equal(before[k], after[k]) for k in before if k != w0)
    r = GradientDescent(cost=cg, step_rule=Restrict(Scale(0.0), [w0]))
    before = r.parameter_values()
    r.process_batch({"x": x})
    assert np.array_equal(before[w0], r.parameter_values()[w0])
    with pytest.raises(AlgorithmError, match="did you mean"):
        GradientDescent(cost=cg, parameters=["/mlp/linear_0.w"])
    with pytest.raises(AlgorithmError, match="lacks source"):
        a.process_batch({"features": x})
    assert isinstance(jax.tree_util.tree_leaves(a.current_parameters())[0], jax.Array)


def test_a_snapshot_read_later_in_another_thread_equals_get_state_at_the_snapshot():
    """The snapshot survives the donation of later steps and reads the same as
    get_state() at its call, hyperparameters and step counter included."""
    import threading

    cg = _graph()
    x = np.random.RandomState(1).randn(5, 3).astype(np.float32)
    a = GradientDescent(cost=cg, step_rule=Adam(0.01))
    for _ in range(3):
        a.process_batch({"x": x})
    expected_meta, views = a.get_state()
    expected = {k: v.copy() for k, v in views.items()}
    del views  # host views of CPU buffers would keep the next step from donating them
    snapshot = a.snapshot()
    donated = a.current_parameters()["/mlp/linear_0.W"]
    a.set_hyperparameter("learning_rate", 0.5)
    for _ in range(4):  # each step donates (overwrites) the buffers of the snapshot call
        a.process_batch({"x": x})
    assert donated.is_deleted()
    out: dict = {}
    reader = threading.Thread(target=lambda: out.update(state=snapshot.get_state()))
    reader.start()
    reader.join()
    meta, arrays = out["state"]
    assert meta == expected_meta and meta["step"] == 3
    assert meta["hyperparameters"]["learning_rate"] == pytest.approx(0.01)
    assert sorted(arrays) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(arrays[name], value)
    now = a.get_state()[1]["params//mlp/linear_0.W"]
    assert not np.array_equal(arrays["params//mlp/linear_0.W"], now)
    with pytest.raises(AlgorithmError, match="only once"):
        snapshot.get_state()


def test_updates_algorithm_checks_batch_sources_as_gradient_descent_does():
    from bricks.algorithms import UpdatesAlgorithm

    algorithm = UpdatesAlgorithm(updates=[("n", lambda v, m: m + 1)], values={"n": 1.0})
    algorithm.initialize()
    with pytest.raises(AlgorithmError, match=r"lacks source\(s\) \['m'\] that the updates read"):
        algorithm.process_batch({})
    with pytest.raises(AlgorithmError, match="not read by the updates.*UpdatesAlgorithm"):
        algorithm.process_batch({"m": np.float32(1), "extra": np.float32(0)})
