"""The guard's select where the step rule computes each new state array (issue 21).

A state over :data:`~bricks.algorithms.non_finite.CHAIN_ELEMENTS` elements
takes this path on CPU (a smaller one orders its selects after the rule);
raising ``CHAIN_ELEMENTS`` forces the select after the rule, the reference
here. Both must give the same state (to the last bits XLA's code generation
may round differently: under XLA's default flags both equal the unguarded
jitted step bit for bit, under the tests' flags not always), keep a
non-finite step out whole, bit for bit, and the early path must move fewer
bytes (XLA's own count, no timing).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bricks.algorithms.non_finite as non_finite
from bricks.algorithms import (
    Adam,
    CompositeRule,
    GradientDescent,
    Momentum,
    RemoveNotFinite,
    StepClipping,
)
from bricks.algorithms.early_select import run_selecting, trace_update
from bricks.core import BatchNormalization, Constant, IsotropicGaussian, Linear
from bricks.errors import NonFiniteCostError, StepRuleError
from bricks.graph import (
    ComputationGraph,
    apply_batch_normalization,
    get_batch_normalization_updates,
)

ROWS, COLS = 300, 250  # 75,000 elements: above CHAIN_ELEMENTS


def cost(params, x, bad):
    fit = ((x @ params["w"] - 1.0) ** 2).mean() + (params["a"] ** 2).sum()
    # finite, but with ``bad`` set the untaken branch's NaN derivative reaches ``a``
    u = 1.0 - 2.0 * bad[0] + 0.0 * params["a"].sum()
    return fit + jnp.where(bad[0] > 0, 0.0, jnp.sqrt(u))


def _batch(i, bad=False):
    x = np.random.RandomState(i).randn(4, ROWS).astype(np.float32)
    return {"x": x, "bad": np.full((1,), float(bad), np.float32)}


def _algorithm(rule):
    rng = np.random.RandomState(0)
    params = {
        "a": np.full((2,), 0.5, np.float32),
        "w": (rng.randn(ROWS, COLS) * 0.01).astype(np.float32),
    }
    return GradientDescent(cost=cost, parameters=params, step_rule=rule)


def _arrays(algorithm):
    _, arrays = algorithm.get_state()
    return {k: np.array(v, copy=True) for k, v in arrays.items()}


def _same(got, want, name):
    """Integers exactly, floats to a few roundings at the array's scale."""
    want = np.asarray(want)
    if np.issubdtype(want.dtype, np.floating):
        scale = float(np.max(np.abs(want))) if want.size else 0.0
        atol = 8 * np.finfo(np.float32).eps * scale
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=atol, err_msg=name)
    else:
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.fixture
def select_after(monkeypatch):
    """Within the fixture's use: every state selects after the rule (the reference)."""

    def force():
        monkeypatch.setattr(non_finite, "CHAIN_ELEMENTS", 10**12)

    return force


RULES = {
    "optax_adam": lambda: optax.adam(1e-2),
    "optax_chain": lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)),
    "optax_momentum": lambda: optax.sgd(1e-2, momentum=0.9, nesterov=True),
    "optax_hyperparams": lambda: optax.inject_hyperparams(optax.adamw)(learning_rate=1e-2),
    "blocks_adam": lambda: Adam(1e-2),
    "blocks_composite": lambda: CompositeRule([StepClipping(1.0), Momentum(1e-2, 0.9)]),
}


@pytest.mark.parametrize("kind", sorted(RULES))
def test_the_early_select_gives_the_state_of_the_select_after_the_rule(kind, select_after):
    early = _algorithm(RULES[kind]())
    for i in range(3):
        early.process_batch(_batch(i))
    got = _arrays(early)
    select_after()
    late = _algorithm(RULES[kind]())
    for i in range(3):
        late.process_batch(_batch(i))
    want = _arrays(late)
    assert sorted(got) == sorted(want)
    for name in want:  # parameters, the whole optimizer state and the counters
        _same(got[name], want[name], name)
    assert not np.array_equal(got["params/w"], _arrays(_algorithm(RULES[kind]()))["params/w"])


@pytest.mark.parametrize("kind", ["optax_adam", "blocks_adam"])
def test_a_non_finite_step_leaves_a_large_state_bitwise_as_it_was(kind):
    algorithm = _algorithm(RULES[kind]())
    algorithm.process_batch(_batch(0))
    before = _arrays(algorithm)
    algorithm.process_batch(_batch(1, bad=True))  # finite cost, NaN gradient of "a"
    algorithm.process_batch(_batch(2))  # frozen: changes nothing either
    with pytest.raises(NonFiniteCostError, match="iteration 2 gave a NaN or infinite"):
        algorithm.check_finite()
    after = _arrays(algorithm)
    kept = [k for k in before if k.startswith(("params/", "opt_state/"))]
    assert len(kept) > 3
    for name in kept:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def test_remove_not_finite_on_a_large_state_still_skips_whole_and_goes_on():
    rule = CompositeRule([Adam(1e-2), RemoveNotFinite()])
    algorithm = _algorithm(rule)
    algorithm.process_batch(_batch(0))
    before = _arrays(algorithm)
    algorithm.process_batch(_batch(1, bad=True))
    after = _arrays(algorithm)
    for name in before:
        if name.startswith(("params/", "opt_state/")):
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    algorithm.process_batch(_batch(2))
    reference = _algorithm(CompositeRule([Adam(1e-2), RemoveNotFinite()]))
    reference.process_batch(_batch(0))
    reference.process_batch(_batch(2))
    np.testing.assert_array_equal(_arrays(algorithm)["params/w"], _arrays(reference)["params/w"])


def _bn_algorithm():
    linear = Linear(ROWS, COLS, weights_init=IsotropicGaussian(0.01), biases_init=Constant(0))
    bn = BatchNormalization(COLS, name="bn")
    linear.initialize(seed=0)
    bn.initialize()
    graph = apply_batch_normalization(
        ComputationGraph(lambda x: (bn.apply(linear.apply(x)) ** 2).mean(), x=(None, ROWS))
    )
    graph = graph.add_updates(get_batch_normalization_updates(graph, alpha=0.5))
    return GradientDescent(cost=graph, step_rule=optax.adam(1e-2))


def test_batch_norm_statistics_follow_the_early_select(select_after):
    """State updates (population statistics) are set beside the rule: the same
    values on both paths, and frozen with the rest on a non-finite batch."""
    batches = [{"x": _batch(i)["x"]} for i in range(3)]
    nan = {"x": np.full((4, ROWS), np.nan, np.float32)}
    early = _bn_algorithm()
    for b in batches[:2]:
        early.process_batch(b)
    before = _arrays(early)
    early.process_batch(nan)
    with pytest.raises(NonFiniteCostError):
        early.check_finite()
    after = _arrays(early)
    stats = [k for k in before if "population" in k]
    assert len(stats) == 2
    for name in before:
        if name.startswith(("params/", "opt_state/")):
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    select_after()
    late = _bn_algorithm()
    for b in batches[:2]:
        late.process_batch(b)
    want = _arrays(late)
    for name in before:
        _same(before[name], want[name], name)
    assert not np.array_equal(before[stats[0]], _arrays(_bn_algorithm())[stats[0]])


class _Odd:
    """A step rule whose new state is everything but a plain function of the old:
    a constant, the gradients themselves, one value given twice, a value made
    inside a jitted function, and a counter."""

    def init(self, params):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return {
            "const": jnp.float32(5.0),
            "last": zeros,
            "twice": (zeros, zeros),
            "inner": zeros,
            "count": jnp.int32(0),
        }

    def update(self, grads, state, params=None):
        doubled = jax.tree_util.tree_map(lambda g: 2 * g, grads)
        inner = jax.jit(lambda s, g: jax.tree_util.tree_map(lambda a, b: 0.5 * a + b, s, g))(
            state["inner"], grads
        )
        new = {
            "const": jnp.float32(7.0),
            "last": grads,
            "twice": (doubled, doubled),
            "inner": inner,
            "count": state["count"] + 1,
        }
        steps = jax.tree_util.tree_map(lambda i, d: i + d, inner, doubled)
        return steps, new


@pytest.mark.parametrize("ok", [True, False])
def test_run_selecting_keeps_or_drops_every_kind_of_new_state(ok):
    rule = _Odd()
    params = {"p": jnp.arange(6.0).reshape(2, 3)}
    old = jax.tree_util.tree_map(lambda a: a + 3, rule.init(params))
    grads = {"p": jnp.full((2, 3), 0.25)}
    want_steps, want_state = rule.update(grads, old, params)

    @jax.jit
    def run(ok, grads, old, params):
        traced = trace_update(rule.update, (grads, old, params))
        return run_selecting(traced, (grads, old, params), ok)

    steps, state = run(jnp.bool_(ok), grads, old, params)
    expected = jax.tree_util.tree_leaves(want_state if ok else old)
    for i, (got, want) in enumerate(zip(jax.tree_util.tree_leaves(state), expected, strict=True)):
        if ok:
            _same(np.asarray(got), np.asarray(want), str(i))
        else:  # dropped: the old state bit for bit
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=str(i))
    if ok:
        _same(np.asarray(steps["p"]), np.asarray(want_steps["p"]), "steps")


def test_a_state_of_another_structure_is_an_error():
    def update(grads, state, params):
        return grads, {"other": state["m"]}

    args = ({"p": jnp.ones(2)}, {"m": jnp.zeros(2)}, {"p": jnp.ones(2)})
    with pytest.raises(StepRuleError, match="differs in structure"):
        run_selecting(trace_update(update, args), args, jnp.bool_(True))


def _bytes(algorithm, batch):
    algorithm.process_batch(batch)
    compiled = algorithm._step_fn.lower(algorithm._state, batch, algorithm._base_key).compile()
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return analysis["bytes accessed"]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU step's program")
def test_the_early_select_moves_fewer_bytes_than_the_select_after(select_after):
    """Selected after Adam, each parameter's update computes its moments again from
    the gradient and the old moments (reading both a second time); selected where
    Adam computes them, the update reads the selected moments."""
    early = _bytes(_algorithm(optax.adam(1e-2)), _batch(0))
    select_after()
    late = _bytes(_algorithm(optax.adam(1e-2)), _batch(0))
    assert early < 0.97 * late, (early, late)


def test_fused_and_masked_chunks_of_a_large_state_match_single_steps():
    """``process_batches`` (a scan, and the masked scan of a short chunk) runs the
    same early-select step: the state after 7 batches in chunks of 4 is the
    state after 7 single steps, and the compiled programs are the three kinds."""
    batches = [_batch(i) for i in range(7)]
    single = _algorithm(optax.adam(1e-2))
    for b in batches:
        single.process_batch(b)
    fused = _algorithm(optax.adam(1e-2))
    fused.process_batches(batches[:4])
    fused.process_batches(batches[4:], length=4)  # 3 real steps, 1 masked
    got, want = _arrays(fused), _arrays(single)
    for name in want:
        _same(got[name], want[name], name)
    assert fused.compilations == 2


@jax.custom_vjp
def _doubled(x):
    return x * 2


_doubled.defvjp(lambda x: (_doubled(x), None), lambda _, g: (g * 2,))


def _control_flow_update(grads, state, params):
    """New state computed through a custom_jvp (relu), a custom_vjp, a cond and a scan."""
    m = _doubled(jax.nn.relu(state["m"] + grads["p"]))
    c = jax.lax.cond(m.sum() > 0, lambda: m + 1, lambda: m - 1)
    s = jax.lax.scan(lambda a, b: (a + b, None), jnp.zeros(3), m)[0]
    return {"p": m + c}, {"m": c, "s": s}


@pytest.mark.parametrize("ok", [True, False])
def test_run_selecting_evaluates_custom_derivatives_and_control_flow(ok):
    args = (
        {"p": jnp.full((2, 3), 0.5)},
        {"m": jnp.arange(6.0).reshape(2, 3), "s": jnp.ones(3)},
        {"p": jnp.ones((2, 3))},
    )
    steps, state = jax.jit(
        lambda ok: run_selecting(trace_update(_control_flow_update, args), args, ok)
    )(jnp.bool_(ok))
    want_steps, want_state = _control_flow_update(*args)
    for name in ("m", "s"):
        expected = want_state[name] if ok else args[1][name]
        np.testing.assert_array_equal(np.asarray(state[name]), np.asarray(expected))
    if ok:
        np.testing.assert_array_equal(np.asarray(steps["p"]), np.asarray(want_steps["p"]))


@pytest.mark.parametrize("rows", [3, ROWS])  # a small state (ordered selects), a large one
def test_the_step_rule_is_traced_once_per_compiled_step(rows):
    """Either path traces the rule's ``update`` once (the small-state path used to
    trace it a second time, only to find out whether RemoveNotFinite runs)."""
    traced = []
    adam = optax.adam(1e-2)

    def update(grads, state, params=None):
        traced.append(1)
        return adam.update(grads, state, params)

    params = {"a": np.full((2,), 0.5, np.float32), "w": np.zeros((rows, COLS), np.float32)}
    rule = optax.GradientTransformation(adam.init, update)
    algorithm = GradientDescent(cost=cost, parameters=params, step_rule=rule)
    batch = {"x": np.ones((4, rows), np.float32), "bad": np.zeros((1,), np.float32)}
    algorithm.process_batch(batch)
    algorithm.process_batch(batch)
    assert algorithm.compilations == 1 and len(traced) == 1
