"""What the training step compiles to on CPU (issue 21): kernel counts of the compiled
program against a hand-written optax step, the order of the non-finite guard's selects,
and the guard's counters as one vector (also restored from checkpoints written before).

Kernel counts are read from XLA's compiled HLO: deterministic for a jax version, never
timed. Each kernel is a thunk of XLA's CPU runtime, a few microseconds of a small step.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bricks.algorithms import GradientDescent, RemoveNotFinite
from bricks.algorithms.non_finite import CHECK_AS_IS, all_finite, select_state
from bricks.errors import NonFiniteCostError, TooManySkippedStepsError

cpu_only = pytest.mark.skipif(
    jax.default_backend() != "cpu", reason="kernel counts of XLA's CPU compiler"
)

DIMS = [784, 16, 16, 10]  # bench/bench_training.py's tiny model
TRIVIAL = (" parameter(", " get-tuple-element(", " tuple(", " constant(", " bitcast(")


def _kernels(text: str) -> list[str]:
    """The instructions of the compiled entry computation that run as kernels."""
    entry = text[text.index("\nENTRY") :]
    entry = entry[: entry.index("\n}")]
    return [
        line.strip()
        for line in entry.splitlines()[1:]
        if line.strip().startswith("%") and not any(t in line for t in TRIVIAL)
    ]


def _tiny_model():
    from bricks.core import MLP, Constant, IsotropicGaussian, Rectifier, Softmax
    from bricks.core.cost import CategoricalCrossEntropy
    from bricks.graph import ComputationGraph

    mlp = MLP(
        [Rectifier(), Rectifier(), Softmax()],
        DIMS,
        weights_init=IsotropicGaussian(0.01),
        biases_init=Constant(0.0),
    )
    mlp.initialize(seed=1)

    def cost(features, targets):
        return CategoricalCrossEntropy().apply(targets, mlp.apply(features))

    return ComputationGraph(cost, features=(None, DIMS[0]), targets=((None,), "int32"))


def _batch(n=16):
    rng = np.random.RandomState(0)
    return {
        "features": rng.rand(n, DIMS[0]).astype(np.float32),
        "targets": rng.randint(0, 10, n).astype(np.int32),
    }


def _hand_written(cg, batch):
    """What a user writes: a jitted, donated optax.adam step over the same math."""
    paths = [(f"/mlp/linear_{i}.W", f"/mlp/linear_{i}.b") for i in range(len(DIMS) - 1)]
    opt = optax.adam(1e-3)

    def loss(params, x, y):
        h = x
        for i, (w, b) in enumerate(paths):
            h = h @ params[w] + params[b][None]
            h = jax.nn.relu(h) if i < len(paths) - 1 else jax.nn.softmax(h, axis=-1)
        return -jnp.mean(jnp.log(jnp.take_along_axis(h, y[:, None], axis=1)[:, 0]))

    def step(params, state, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    params = {k: jnp.asarray(v) for k, v in cg.parameter_values().items()}
    lowered = jax.jit(step, donate_argnums=(0, 1)).lower(
        params, opt.init(params), batch["features"], batch["targets"]
    )
    return lowered.compile().as_text()


def _bricks_step(cg, batch):
    algorithm = GradientDescent(cost=cg, step_rule=optax.adam(1e-3))
    algorithm.add_monitor(["cost"])
    algorithm.process_batch(batch)
    lowered = algorithm._step_fn.lower(algorithm._state, batch, algorithm._base_key)
    return lowered.compile().as_text()


@cpu_only
def test_the_tiny_adam_step_compiles_to_nearly_the_kernels_of_a_hand_written_one():
    """The guard (check, selects, counters) and the monitoring sum add 5 kernels to the
    hand-written step's 52 (they added 25 before the selects were fused and the check
    was one reduction), and no Adam moment is written out before its select."""
    cg, batch = _tiny_model(), _batch()
    floor, bricks = _kernels(_hand_written(cg, batch)), _kernels(_bricks_step(cg, batch))
    assert len(bricks) <= len(floor) + 5, "\n".join(bricks)
    # the arrays shaped like the first weight: its gradient, the new weight and its two
    # Adam moments; a moment computed apart from its select would be one more
    shaped = [k for k in bricks if re.search(r"= f32\[784,16\]", k)]
    assert len(shaped) == len([k for k in floor if re.search(r"= f32\[784,16\]", k)]) == 4
    assert not [k for k in bricks if " copy(" in k and "f32[" in k], "a float state copy"


@cpu_only
def test_the_guard_checks_every_gradient_in_one_reduction():
    """One reduction over the small arrays and the zero-row products of the large ones
    (one kernel each for those), not one reduction per gradient."""
    cg, batch = _tiny_model(), _batch()
    text = _bricks_step(cg, batch)
    names = [re.match(r"%([\w.-]+) =", k).group(1) for k in _kernels(text)]
    assert len([n for n in names if "is-finite" in n]) == 1, names


@cpu_only
def test_small_state_selects_run_in_order_without_reading_each_other():
    """Each select reads the *old* value of the next array, which the next select
    overwrites in place (the state is donated): XLA orders every select after the
    previous one, and no select reads another's output (which would keep XLA from
    fusing an optimizer update into its select)."""
    new = {"a": jnp.ones(5), "b": jnp.float32(3), "c": jnp.ones((2, 3)), "n": jnp.int32(4)}
    old = {"a": jnp.zeros(5), "b": jnp.float32(-1), "c": jnp.zeros((2, 3)), "n": jnp.int32(7)}
    step = jax.jit(
        lambda old, ok, new: select_state(ok, new, old),
        donate_argnums=(0,),
        compiler_options={"xla_cpu_copy_insertion_use_region_analysis": True},
    )
    kernels = _kernels(step.lower(old, jnp.bool_(True), new).compile().as_text())
    names = [re.match(r"%([\w.-]+) =", k).group(1) for k in kernels]
    assert len(kernels) == 4 and not [k for k in kernels if " copy(" in k]
    for kernel in kernels:  # operands are parameters only
        operands = re.search(r"= \S+ [\w-]+\(([^)]*)\)", kernel).group(1)
        assert not any(f"%{n}" in operands.split(", ") for n in names), kernel
    ordered = [re.search(r"control-predecessors=\{%([\w.-]+)\}", k) for k in kernels]
    assert ordered[0] is None
    assert [m.group(1) for m in ordered[1:]] == names[:-1]


@pytest.mark.parametrize("first", ["inf", "-inf", "nan", "max"])
@pytest.mark.parametrize("ok", [True, False])
def test_the_ordering_reads_never_change_which_value_is_kept(first, ok):
    """The order comes from ``ok | (old first element > dtype max)``: whatever the old
    first elements are (inf, NaN, the largest finite, the largest int), the result is
    ``new`` where ``ok`` and ``old`` bitwise where not; empty, boolean, complex and
    PRNG-key arrays are selected too, without an order read."""

    def value(dtype):
        return np.finfo(dtype).max if first == "max" else dtype(first)

    new = {
        "a": np.arange(4, dtype=np.float32),
        "b": np.float32(3),
        "e": np.zeros(0, np.float32),
        "f": np.array([True, False]),
        "h": np.full(3, 2, np.float16),
        "k": jax.random.key(1),
        "n": np.int32(4),
        "u": np.array([1, 2], np.uint8),
        "z": np.array([1 + 2j], np.complex64),
    }
    old = {
        "a": np.array([value(np.float32), 1, 2, 3], np.float32),
        "b": value(np.float32),
        "e": np.zeros(0, np.float32),
        "f": np.array([False, True]),
        "h": np.array([value(np.float16), 0, 0], np.float16),
        "k": jax.random.key(2),
        "n": np.int32(np.iinfo(np.int32).max),
        "u": np.array([255, 0], np.uint8),
        "z": np.array([complex(value(np.float32), 1)], np.complex64),
    }
    out = jax.jit(select_state)(jnp.bool_(ok), new, old)
    want = new if ok else old
    for key in want:
        got, expected = out[key], want[key]
        if key == "k":  # PRNG keys compare as their data
            got, expected = jax.random.key_data(got), jax.random.key_data(expected)
        got, expected = np.asarray(got), np.asarray(expected)
        assert got.dtype == expected.dtype
        assert got.tobytes() == expected.tobytes(), key


@pytest.mark.parametrize("shape", [(CHECK_AS_IS + 1,), (70, 70), (3, 40, 50), (1, 5000)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, None])
@pytest.mark.parametrize("where", ["first", "last", "middle"])
def test_all_finite_of_large_arrays_matches_numpy(shape, bad, where):
    """Arrays above CHECK_AS_IS are checked through their zero-row product, beside
    small ones in the same reduction: a NaN or inf anywhere is caught, huge finite
    values are not mistaken for one."""
    rng = np.random.RandomState(2)
    large = np.asarray(rng.rand(*shape) * 3e38, np.float32)
    if bad is not None:
        index = {"first": 0, "last": large.size - 1, "middle": large.size // 2}[where]
        large.flat[index] = bad
    small = np.full(7, 6e4, np.float16)
    arrays = [jnp.asarray(small), jnp.asarray(large), jnp.arange(3)]
    assert bool(jax.jit(all_finite)(arrays)) is bool(np.isfinite(large).all())


# -- the counters: one vector in the state, the same checkpoint metadata ----------


def _cost(params, x, bad):
    """Finite, but with ``bad`` set the branch not taken is sqrt(-1): NaN gradients."""
    fit = ((x @ params["b"] - 1.0) ** 2).mean() + (params["a"] ** 2).sum()
    u = 1.0 - 2.0 * bad[0] + 0.0 * params["a"].sum()
    return fit + jnp.where(bad[0] > 0, 0.0, jnp.sqrt(u))


def _skipping(max_consecutive=3, rule=True):
    params = {"a": np.ones(2, np.float32), "b": np.full(3, 0.5, np.float32)}
    step_rule = optax.chain(optax.adam(0.1), RemoveNotFinite(max_consecutive=max_consecutive))
    return GradientDescent(
        cost=_cost, parameters=params, step_rule=step_rule if rule else optax.adam(0.1)
    )


def _step(algorithm, bad):
    x = np.ones((4, 3), np.float32)
    algorithm.process_batch({"x": x, "bad": np.full((1,), float(bad), np.float32)})


def test_the_counters_are_one_vector_returned_as_the_flags():
    algorithm = _skipping()
    seen = []
    for bad in (0, 1, 1, 0):
        _step(algorithm, bad)
        seen.append(np.asarray(algorithm._flags.last).tolist())
        assert np.asarray(algorithm._state["counters"]).tolist() == seen[-1]
    assert seen == [[-1, 0, 0], [-1, 1, 1], [-1, 2, 2], [-1, 2, 0]]
    state = algorithm._state
    assert state["counters"].dtype == jnp.int32 and state["counters"].shape == (3,)
    assert not {"bad", "skipped", "consecutive"} & set(state)
    assert algorithm.skipped_steps == 2 and int(state["step"]) == 4


def _old_payload(algorithm, **counters):
    """A checkpoint payload as the code before the counter vector wrote it: the
    counters as three ints in the metadata (arrays: parameters, optimizer state)."""
    meta, arrays = algorithm.get_state()
    for name in ("bad", "skipped", "consecutive"):
        meta.pop(name)
    meta.update(counters)
    return meta, {k: np.array(v, copy=True) for k, v in arrays.items()}


def test_a_checkpoint_written_before_the_counter_vector_restores_its_counters():
    source = _skipping()
    for bad in (0, 1, 0, 0, 1):
        _step(source, bad)
    meta, arrays = _old_payload(source, step=5, bad=-1, skipped=2, consecutive=1)
    assert source.get_state()[0]["skipped"] == 2  # the format written now is the same
    target = _skipping()
    target.set_state(meta, arrays)
    assert np.asarray(target._state["counters"]).tolist() == [-1, 2, 1]
    assert target.skipped_steps == 2 and int(target._state["step"]) == 5
    for name, value in source.parameter_values().items():
        np.testing.assert_array_equal(target.parameter_values()[name], value)
    _step(target, 1)
    _step(target, 1)  # the third in a row: max_consecutive=3 stops here
    with pytest.raises(TooManySkippedStepsError, match="iterations 5 to 7"):
        target.check_finite()
    after = target.get_state()[0]
    assert (after["bad"], after["skipped"], after["consecutive"]) == (7, 4, 3)


def test_a_checkpoint_without_counters_starts_them_fresh():
    meta, arrays = _old_payload(_skipping(), step=3)
    target = _skipping()
    target.set_state(meta, arrays)
    assert np.asarray(target._state["counters"]).tolist() == [-1, 0, 0]


def test_a_restored_frozen_state_stays_frozen_and_raises():
    """``bad >= 0`` in an old checkpoint (saved after a NaN, without RemoveNotFinite):
    the restored step changes nothing and the host raises."""
    source = _skipping(rule=False)
    _step(source, 0)
    meta, arrays = _old_payload(source, step=1, bad=1, skipped=0, consecutive=0)
    target = _skipping(rule=False)
    target.set_state(meta, arrays)
    before = target.parameter_values()
    _step(target, 0)
    for name, value in before.items():
        np.testing.assert_array_equal(target.parameter_values()[name], value)
    with pytest.raises(NonFiniteCostError, match="iteration 1"):
        target.check_finite()


@cpu_only
def test_the_masked_scan_of_a_short_chunk_copies_no_state():
    """The scan that runs a short chunk (steps_per_call) keeps its state in place: a
    cond branch that gave the counters twice (as state and as flags) once made XLA copy
    every parameter and moment at every step of it."""
    from bricks.data._aligned import stack

    cg = _tiny_model()
    algorithm = GradientDescent(cost=cg, step_rule=optax.adam(1e-3))
    algorithm.add_monitor(["cost"])
    batches = [_batch() for _ in range(4)]
    algorithm.process_batches(batches[:2], length=4)  # compiles the masked scan
    stacked = {k: stack([b[k] for b in batches]) for k in batches[0]}
    text = algorithm._masked_fn.lower(
        algorithm._state, (stacked, np.int32(2)), algorithm._base_key
    ).compile().as_text()
    float_copies = re.findall(r"= f32\[[^\]]*\]\S* copy\(", text)
    assert float_copies == []
