"""The training step's host and device overhead (issue 21): what the step compiles
to and what the loop does per batch, checked by behaviour, never by timing."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bricks.algorithms import GradientDescent
from bricks.algorithms.non_finite import CHAIN_ELEMENTS, all_finite, select_state


def _mlp_algorithm(step_rule=None):
    rng = np.random.RandomState(0)
    params = {
        "w1": rng.randn(6, 5).astype(np.float32),
        "b1": np.zeros(5, np.float32),
        "w2": rng.randn(5, 3).astype(np.float32),
    }

    def cost(p, x, y):
        h = jnp.tanh(x @ p["w1"] + p["b1"][None])
        return ((h @ p["w2"] - y) ** 2).mean()

    return GradientDescent(
        cost=cost, parameters=params, step_rule=step_rule or optax.adam(1e-2)
    )


def _batch(seed=0, n=4):
    rng = np.random.RandomState(seed)
    return {"x": rng.randn(n, 6).astype(np.float32), "y": rng.randn(n, 3).astype(np.float32)}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("shape", [(), (7,), (4, 3), (2, 3, 5)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, None])
def test_all_finite_matches_numpy(dtype, shape, bad):
    """The guard's check against numpy's isfinite: NaN and +-inf anywhere are caught,
    huge finite values (whose sum would overflow) are not."""
    rng = np.random.RandomState(1)
    values = np.asarray(rng.rand(*shape) * 6e4, np.float32)  # finite in every dtype
    if bad is not None:
        values.flat[rng.randint(values.size)] = bad
    arrays = [jnp.asarray(values, dtype), jnp.arange(3, dtype=jnp.int32)]
    expected = bool(np.isfinite(np.asarray(arrays[0], np.float32)).all())
    assert bool(jax.jit(all_finite)(arrays)) is expected


def test_all_finite_of_nothing_is_true():
    assert bool(all_finite([]))


def test_cpu_step_does_not_copy_the_optimizer_state():
    """The non-finite guard selects between the new and the old (donated) optimizer
    state; on CPU the step is compiled so that XLA copies none of the old arrays."""
    if jax.default_backend() != "cpu":
        pytest.skip("the option is a CPU one")
    algorithm = _mlp_algorithm()
    algorithm.process_batch(_batch())
    state = algorithm._state
    text = algorithm._step_fn.lower(state, _batch(), algorithm._base_key).compile().as_text()
    copied = re.findall(r"= f32\[([\d,]+)\][^ ]* copy\(", text)
    assert [c for c in copied if c in ("6,5", "5", "5,3")] == []


def _trees(size):
    rng = np.random.RandomState(2)
    new = {"a": rng.randn(size).astype(np.float32), "b": np.float32(3), "n": np.int32(4)}
    new["a"][0] = np.nan  # a non-finite new value must not leak into a kept old one
    old = {"a": rng.randn(size).astype(np.float32), "b": np.float32(-1), "n": np.int32(7)}
    return new, old


@pytest.mark.parametrize("size", [5, CHAIN_ELEMENTS + 1])
@pytest.mark.parametrize("ok", [True, False])
def test_select_state_is_where_of_every_array(size, ok):
    new, old = _trees(size)
    out = jax.jit(select_state)(jnp.bool_(ok), new, old)
    want = new if ok else old
    for key in want:
        np.testing.assert_array_equal(np.asarray(out[key]), want[key])
        assert out[key].dtype == np.asarray(want[key]).dtype


@pytest.mark.parametrize(("size", "chained"), [(5, True), (CHAIN_ELEMENTS + 1, False)])
def test_small_states_select_one_array_after_another(size, chained):
    """In a small state each select's predicate is computed from the previous select's
    output (so XLA's CPU runtime runs them in order, not on its thread pool); a
    large state's selects depend on the step's check only."""
    if jax.default_backend() != "cpu":
        pytest.skip("a CPU runtime matter")
    new, old = _trees(size)
    jaxpr = jax.make_jaxpr(select_state)(jnp.bool_(True), new, old).jaxpr
    gates = [e for e in jaxpr.eqns if e.primitive.name == "gt"]
    assert len(gates) == (2 if chained else 0)  # one after each float array


def test_a_monitoring_read_spares_the_guard_its_own_look():
    """Per-batch monitoring reads the guard's flags with every report; the loop's
    non-blocking check then does not read them again."""
    algorithm = _mlp_algorithm()
    slot = algorithm.add_monitor(["cost"])
    looks = []
    reader = algorithm._flags
    read = reader.read
    reader.read = lambda flags, log: (looks.append(1), read(flags, log))
    for i in range(17):
        algorithm.process_batch(_batch(i))
        algorithm.start_read(slot)()
        jax.block_until_ready(algorithm._state["params"])
        algorithm.check_finite(wait=False)
    assert looks == []
    for i in range(24):  # without reports it looks every 8 calls (calls 32 and 40)
        algorithm.process_batch(_batch(i))
        jax.block_until_ready(algorithm._state["params"])
        algorithm.check_finite(wait=False)
    assert len(looks) == 2


def test_a_report_after_a_non_finite_step_still_raises():
    from bricks.errors import NonFiniteCostError

    algorithm = _mlp_algorithm()
    slot = algorithm.add_monitor(["cost"])
    algorithm.process_batch(_batch())
    algorithm.start_read(slot)()
    bad = _batch(1)
    bad["x"][0, 0] = np.nan
    algorithm.process_batch(bad)
    with pytest.raises(NonFiniteCostError):
        algorithm.start_read(slot)()


def test_report_means_match_numpy():
    from bricks.algorithms.monitor_slots import means as _means
    from bricks.core.tracing import Variable

    variables = [
        Variable(tag="a", name="a", roles=(), shape=()),
        Variable(tag="m", name="m", roles=(), shape=(2, 3)),
        Variable(tag="v", name="v", roles=(), shape=(1,)),
    ]
    sums = np.random.RandomState(3).randn(8).astype(np.float32)
    count = np.float32(3)
    acc = np.concatenate([sums, [count]]).astype(np.float32)
    out = _means(acc, variables, [1, 6, 1])
    assert out["a"] == float(sums[0] / count)
    np.testing.assert_array_equal(out["m"], (sums[1:7] / count).reshape(2, 3))
    np.testing.assert_array_equal(out["v"], sums[7:] / count)
    assert out["m"].dtype == np.float32
    # no step since the last read: no mean (a 0 would be a value no step had)
    assert _means(np.concatenate([sums, [0]]).astype(np.float32), variables, [1, 6, 1]) == {}


def test_large_batches_are_gathered_aligned_and_reach_the_device_without_a_copy():
    from bricks.data import DataStream, IndexableDataset, ShuffledScheme
    from bricks.data._aligned import ALIGN_FROM_BYTES, ALIGNMENT

    rng = np.random.RandomState(4)
    rows = ALIGN_FROM_BYTES // (64 * 4) + 1  # a batch of 64 rows is just large enough
    features = rng.rand(3 * rows, 64).astype(np.float32)
    targets = rng.randint(0, 9, 3 * rows).astype(np.int32)  # small: as numpy gives it
    stream = DataStream(
        IndexableDataset({"features": features, "targets": targets}),
        iteration_scheme=ShuffledScheme(3 * rows, rows, seed=2),
    )
    order = []
    for batch in stream.get_epoch_iterator(as_dict=True):
        idx = [int(np.flatnonzero((features == row).all(1))[0]) for row in batch["features"]]
        np.testing.assert_array_equal(batch["targets"], targets[idx])
        assert batch["features"].ctypes.data % ALIGNMENT == 0
        order.extend(idx)
        if jax.default_backend() == "cpu":
            on_device = jax.device_put(batch["features"])
            assert on_device.unsafe_buffer_pointer() == batch["features"].ctypes.data
    assert sorted(order) == list(range(3 * rows))


def test_stack_is_np_stack_aligned_when_large():
    from bricks.data._aligned import ALIGN_FROM_BYTES, ALIGNMENT, stack

    rng = np.random.RandomState(5)
    small = [rng.rand(3, 4).astype(np.float32) for _ in range(4)]
    np.testing.assert_array_equal(stack(small), np.stack(small))
    large = [rng.rand(ALIGN_FROM_BYTES // 8, 2).astype(np.float32) for _ in range(2)]
    large.append(large[0].astype(np.float64))  # mixed: np.stack's result type
    out = stack(large)
    np.testing.assert_array_equal(out, np.stack(large))
    assert out.dtype == np.float64 and out.ctypes.data % ALIGNMENT == 0


def test_extensions_with_nothing_to_do_on_a_batch_are_not_called(monkeypatch):
    from bricks.extensions import FinishAfter, SimpleExtension, TrainingExtension
    from bricks.main_loop import MainLoop

    calls = []

    class Epochs(TrainingExtension):
        def after_epoch(self):
            calls.append("epochs.after_epoch")

    class Spy(SimpleExtension):
        def do(self, which, *args):
            calls.append(f"{self.name}.{which}")

    class Counting(FinishAfter):
        def dispatch(self, callback_name, *args):  # a subclass that dispatches itself
            SimpleExtension.dispatch(self, callback_name, *args)  # counted there

    every3 = Spy(name="every3", every_n_batches=3)
    late = Spy(name="late", after_epoch=True)
    batches = [{"x": np.zeros((2, 6), np.float32), "y": np.zeros((2, 3), np.float32)}] * 4
    algorithm = _mlp_algorithm()
    loop = MainLoop(
        algorithm, batches, extensions=[Epochs(), every3, late, Counting(after_n_epochs=1)]
    )
    for base in (TrainingExtension, SimpleExtension):  # count the calls the loop makes
        def counted(self, cb, *args, _dispatch=base.dispatch):
            calls.append(f"call {self.name} {cb}")
            _dispatch(self, cb, *args)

        monkeypatch.setattr(base, "dispatch", counted)
    late.add_condition(["after_batch"])  # a condition added late still counts
    loop.run()
    batch_calls = [c for c in calls if c.startswith("call") and "batch" in c]
    assert len(batch_calls) == 4 * 4  # per batch: Counting twice, every3 and late after
    assert sorted(set(batch_calls)) == [
        "call Counting after_batch",
        "call Counting before_batch",
        "call every3 after_batch",
        "call late after_batch",
    ]
    assert calls.count("every3.after_batch") == 1  # batch 3
    assert calls.count("late.after_batch") == 4
    assert "epochs.after_epoch" in calls
