"""Bricks show the current values while a MainLoop trains them (DESIGN.md decision 9)."""

import copy

import jax
import numpy as np
import pytest

from bricks.algorithms import GradientDescent, Momentum, Scale
from bricks.core import MLP, Constant, IsotropicGaussian, Tanh
from bricks.extensions import Checkpoint, FinishAfter, Load, SimpleExtension
from bricks.graph import ComputationGraph
from bricks.main_loop import MainLoop

W0, B0, W1, B1 = (f"/mlp/linear_{i}.{p}" for i in (0, 1) for p in ("W", "b"))


def _model():
    mlp = MLP(
        [Tanh(), Tanh()], [3, 4, 2], weights_init=IsotropicGaussian(0.5), biases_init=Constant(0.1)
    )
    mlp.initialize(seed=0)

    def cost(x, y):
        return ((mlp.apply(x) - y) ** 2).mean()

    return mlp, ComputationGraph(cost, x=(None, 3), y=(None, 2))


def _stream(n=6):
    rng = np.random.RandomState(0)
    return [
        {"x": rng.randn(5, 3).astype(np.float32), "y": rng.randn(5, 2).astype(np.float32)}
        for _ in range(n)
    ]


def _forward(params, x):
    """A numpy reference of the MLP: tanh(tanh(x W0 + b0) W1 + b1)."""
    h = np.tanh(x @ params[W0] + params[B0])
    return np.tanh(h @ params[W1] + params[B1])


class Eager(SimpleExtension):
    """Calls the bricks eagerly after every batch, as a sampler or a weight plot would."""

    def __init__(self, mlp, x, **kwargs):
        super().__init__(**kwargs)
        self.mlp, self.x = mlp, x
        self.seen = []

    def do(self, which, *args):
        truth = self.main_loop.algorithm.parameter_values()
        self.seen.append(
            {
                "done": self.main_loop.status["iterations_done"],
                "truth": {k: np.array(v, copy=True) for k, v in truth.items()},
                "values": self.mlp.get_parameter_values(),  # kept across later steps
                "W": self.mlp.children[0].W,
                "out": np.asarray(self.mlp.apply(self.x)),
            }
        )


@pytest.mark.parametrize("steps_per_call", [1, 3])
def test_an_extension_calling_a_brick_eagerly_sees_the_parameters_of_the_last_step(
    steps_per_call,
):
    mlp, cg = _model()
    initial = {k: np.array(v) for k, v in mlp.get_parameter_values().items()}
    data = _stream(6)
    eager = Eager(mlp, data[0]["x"], every_n_batches=3)
    algorithm = GradientDescent(cost=cg, step_rule=Momentum(0.5, 0.5))
    loop = MainLoop(
        algorithm,
        data,
        extensions=[eager, FinishAfter(after_n_epochs=1)],
        steps_per_call=steps_per_call,
    )
    loop.run()
    assert [s["done"] for s in eager.seen] == [3, 6]
    # an independent run of the same steps, step by step
    reference = GradientDescent(cost=_model()[1], step_rule=Momentum(0.5, 0.5))
    for i, seen in enumerate(eager.seen):
        for batch in data[3 * i : 3 * i + 3]:
            reference.process_batch(batch)
        want = reference.parameter_values()
        for path, value in want.items():
            np.testing.assert_array_equal(seen["truth"][path], value)
            # arrays a brick handed out stay valid (never a donated buffer)
            np.testing.assert_array_equal(np.asarray(seen["values"][path]), value)
            assert not np.array_equal(value, initial[path])
        np.testing.assert_array_equal(np.asarray(seen["W"]), want[W0])
        np.testing.assert_allclose(seen["out"], _forward(want, data[0]["x"]), rtol=1e-5)


def test_after_run_the_bricks_hold_the_final_values_and_no_longer_follow_the_algorithm():
    mlp, cg = _model()
    data = _stream(4)
    algorithm = GradientDescent(cost=cg, step_rule=Scale(0.5))
    MainLoop(algorithm, data, extensions=[FinishAfter(after_n_epochs=1)]).run()
    final = algorithm.parameter_values()
    got = mlp.get_parameter_values()
    for path, value in final.items():
        np.testing.assert_array_equal(np.asarray(got[path]), value)
    algorithm.process_batch(data[0])  # not inside a loop: the bricks were unbound
    jax.block_until_ready(algorithm.current_parameters())
    np.testing.assert_array_equal(np.asarray(mlp.children[0].W), final[W0])
    assert not np.array_equal(algorithm.parameter_values()[W0], final[W0])


def test_load_restores_what_the_bricks_see(tmp_path):
    mlp, cg = _model()
    data = _stream(4)
    algorithm = GradientDescent(cost=cg, step_rule=Momentum(0.1, 0.9))
    ckpt = Checkpoint(tmp_path / "run", after_training=True)
    MainLoop(algorithm, data, extensions=[ckpt, FinishAfter(after_n_epochs=1)]).run()
    trained = algorithm.parameter_values()

    fresh, fresh_cg = _model()  # new bricks with the initial values
    initial = fresh.get_parameter_values()
    seen = {}

    class Look(SimpleExtension):
        def do(self, which, *args):
            seen.update({k: np.array(v) for k, v in fresh.get_parameter_values().items()})

    resumed = GradientDescent(cost=fresh_cg, step_rule=Momentum(0.1, 0.9))
    loop = MainLoop(
        resumed,
        data,
        extensions=[
            Load(tmp_path / "run"),
            Look(before_training=True),
            FinishAfter(after_n_batches=5),  # one more step after the four loaded
        ],
    )
    loop.run()
    assert loop.status["iterations_done"] == 5
    for path, value in trained.items():
        np.testing.assert_array_equal(seen[path], value)
        assert not np.array_equal(np.asarray(initial[path]), value)
    for path, value in resumed.parameter_values().items():
        np.testing.assert_array_equal(np.asarray(fresh.get_parameter_values()[path]), value)


def test_a_value_written_into_a_brick_is_trained_from():
    mlp, cg = _model()
    data = _stream(2)
    algorithm = GradientDescent(cost=cg, step_rule=Scale(0.0))  # steps change nothing
    algorithm.process_batch(data[0])
    zeros = np.zeros((3, 4), np.float32)
    mlp.children[0].set_parameter_values({W0: zeros})  # while bound: into the algorithm
    np.testing.assert_array_equal(algorithm.parameter_values()[W0], zeros)
    algorithm.process_batch(data[1])
    np.testing.assert_array_equal(np.asarray(mlp.children[0].W), zeros)
    algorithm.write_back()  # unbound: a write stays in the brick ...
    ones = np.ones((3, 4), np.float32)
    mlp.children[0].set_parameter_values({W0: ones})
    np.testing.assert_array_equal(algorithm.parameter_values()[W0], zeros)
    algorithm.initialize()  # ... until the algorithm binds the bricks again
    np.testing.assert_array_equal(algorithm.parameter_values()[W0], ones)
    algorithm.process_batch(data[0])
    np.testing.assert_array_equal(np.asarray(mlp.children[0].W), ones)


def test_bricks_read_through_inside_jit_and_copies_are_unbound():
    mlp, cg = _model()
    data = _stream(3)
    algorithm = GradientDescent(cost=cg, step_rule=Scale(0.5))
    algorithm.process_batch(data[0])
    twin = copy.deepcopy(mlp)  # the values of now, bound to nothing
    out = jax.jit(lambda x: mlp.apply(x))(data[0]["x"])
    np.testing.assert_allclose(
        np.asarray(out), _forward(algorithm.parameter_values(), data[0]["x"]), rtol=1e-5
    )
    before = algorithm.parameter_values()
    algorithm.process_batch(data[1])
    np.testing.assert_array_equal(np.asarray(twin.children[0].W), before[W0])
    np.testing.assert_array_equal(np.asarray(mlp.children[0].W), algorithm.parameter_values()[W0])


def test_a_restore_after_the_loop_ended_is_what_the_bricks_show_and_train_from():
    mlp, cg = _model()
    data = _stream(3)
    algorithm = GradientDescent(cost=cg, step_rule=Scale(0.5))
    algorithm.process_batch(data[0])
    meta, arrays = algorithm.get_state()
    saved = np.array(arrays[f"params/{W0}"], copy=True)
    algorithm.process_batch(data[1])
    algorithm.write_back()  # the end of a run: bricks unbound
    mlp.children[0].set_parameter_values({W0: np.zeros((3, 4), np.float32)})
    algorithm.set_state(meta, arrays)  # what Load does
    np.testing.assert_array_equal(np.asarray(mlp.children[0].W), saved)
    algorithm.initialize()  # the next run() keeps the restored values
    np.testing.assert_array_equal(algorithm.parameter_values()[W0], saved)


def test_a_read_after_a_step_copies_only_the_parameter_read(monkeypatch):
    """The first read of ``brick.W`` after a step copies that array alone (the whole
    mapping was copied before: 15-17% of an MLP step when read after every step);
    a second read reuses the copy, and the next step makes it stale."""
    import bricks.algorithms.live as live

    copied = []
    real = live.device_copy

    def counting(tree):
        copied.append(jax.tree_util.tree_structure(tree).num_leaves)
        return real(tree)

    monkeypatch.setattr(live, "device_copy", counting)
    mlp, cg = _model()
    algorithm = GradientDescent(cost=cg, step_rule=Scale(0.1))
    batches = _stream(2)
    algorithm.process_batch(batches[0])
    algorithm._bind(adopt=True)
    w = mlp.children[0].W
    again = mlp.children[0].W
    assert copied == [1] and again is w
    np.testing.assert_array_equal(np.asarray(w), algorithm.parameter_values()[W0])
    algorithm.process_batch(batches[1])
    np.testing.assert_array_equal(np.asarray(w), np.asarray(again))  # still valid
    assert not np.array_equal(np.asarray(mlp.children[0].W), np.asarray(w))
    assert copied == [1, 1]
