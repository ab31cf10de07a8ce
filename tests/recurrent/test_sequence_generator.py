"""SequenceGenerator: costs against a numpy loop of the same model, generate."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bricks.core import IsotropicGaussian, apply_with
from bricks.errors import SequenceGeneratorError
from bricks.recurrent import (
    GatedRecurrent,
    LookupFeedback,
    Readout,
    SequenceContentAttention,
    SequenceGenerator,
    SimpleRecurrent,
    SoftmaxEmitter,
)

from .reference import gru_step

V, T, B, S = 6, 5, 3, 4
RNG = np.random.RandomState(1)


def simple_generator():
    gen = SequenceGenerator(
        Readout(
            readout_dim=V,
            source_names=["states", "feedback"],
            emitter=SoftmaxEmitter(),
            feedback_brick=LookupFeedback(V, 4),
        ),
        SimpleRecurrent(dim=3),
        weights_init=IsotropicGaussian(0.5),
        biases_init=IsotropicGaussian(0.3),
    )
    gen.initialize(seed=2)
    return gen


def attention_generator():
    gen = SequenceGenerator(
        Readout(
            readout_dim=V,
            source_names=["states", "weighted_averages"],
            emitter=SoftmaxEmitter(),
            feedback_brick=LookupFeedback(V, 4),
        ),
        GatedRecurrent(dim=3),
        attention=SequenceContentAttention(["states"], attended_dim=2, match_dim=5),
        weights_init=IsotropicGaussian(0.5),
        biases_init=IsotropicGaussian(0.3),
    )
    gen.initialize(seed=3)
    return gen


def params_of(gen):
    return {
        k[len("/sequencegenerator/") :]: np.asarray(v, np.float64)
        for k, v in gen.get_parameter_values().items()
    }


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def np_simple_costs(p, outputs, mask):
    E = p["readout/lookupfeedback/lookuptable.W"]
    h = np.repeat(p["with_fake_attention/simplerecurrent.initial_state"][None], B, 0)
    prev = np.zeros(B, int)
    costs = np.zeros((T, B))
    for t in range(T):
        readout = (
            h @ p["readout/merge/transform_states.W"]
            + E[prev] @ p["readout/merge/transform_feedback.W"]
            + p["readout/post_merge.b"]
        )
        costs[t] = -log_softmax(readout)[np.arange(B), outputs[t]] * mask[t]
        x = E[outputs[t]] @ p["fork/fork_inputs.W"] + p["fork/fork_inputs.b"]
        new = np.tanh(x + h @ p["with_fake_attention/simplerecurrent.W"])
        m = mask[t][:, None]
        h, prev = m * new + (1 - m) * h, outputs[t]
    return costs


def np_attention_costs(p, outputs, mask, attended, att_mask):
    E = p["readout/lookupfeedback/lookuptable.W"]
    a = "att_trans/sequencecontentattention/"
    h = np.repeat(p["att_trans/gatedrecurrent.initial_state"][None], B, 0)
    pre = attended @ p[a + "preprocess.W"] + p[a + "preprocess.b"]
    costs = np.zeros((T, B))
    for t in range(T):
        energies = (
            np.tanh(pre + (h @ p[a + "state_trans/transform_states.W"])[None])
            @ p[a + "energy_comp.W"]
        )[..., 0]
        e = np.where(att_mask > 0, energies, -np.inf)
        w = np.exp(e - e.max(0, keepdims=True)) * att_mask
        w = w / w.sum(0, keepdims=True)
        g = (w[..., None] * attended).sum(0)
        readout = (
            h @ p["readout/merge/transform_states.W"]
            + g @ p["readout/merge/transform_weighted_averages.W"]
            + p["readout/post_merge.b"]
        )
        costs[t] = -log_softmax(readout)[np.arange(B), outputs[t]] * mask[t]
        fb = E[outputs[t]]
        seq = {
            name: fb @ p[f"fork/fork_{name}.W"]
            + p[f"fork/fork_{name}.b"]
            + g @ p[f"att_trans/distribute/fork_{name}.W"]
            + p[f"att_trans/distribute/fork_{name}.b"]
            for name in ("inputs", "gate_inputs")
        }
        gp = {
            "state_to_state": p["att_trans/gatedrecurrent.state_to_state"],
            "state_to_gates": p["att_trans/gatedrecurrent.state_to_gates"],
        }
        new = gru_step(seq["inputs"], seq["gate_inputs"], h, gp)
        m = mask[t][:, None]
        h = m * new + (1 - m) * h
    return costs


def data():
    outputs = RNG.randint(0, V, size=(T, B))
    mask = np.ones((T, B), np.float32)
    mask[3:, 0] = 0
    mask[4:, 2] = 0
    return outputs, mask


def test_cost_matrix_matches_numpy_loop():
    gen = simple_generator()
    outputs, mask = data()
    f = jax.jit(lambda p, y, m: apply_with(p, gen.cost_matrix, y, m))
    costs = np.asarray(f(gen.get_parameter_values(), outputs, mask))
    assert costs.shape == (T, B)
    np.testing.assert_allclose(
        costs, np_simple_costs(params_of(gen), outputs, mask), rtol=1e-4, atol=1e-5
    )
    cost = jax.jit(lambda p, y, m: apply_with(p, gen.cost, y, m))(
        gen.get_parameter_values(), outputs, mask
    )
    np.testing.assert_allclose(float(cost), costs.sum(0).mean(), rtol=1e-5)


def test_attention_cost_matrix_matches_numpy_loop():
    gen = attention_generator()
    outputs, mask = data()
    attended = RNG.randn(S, B, 2).astype(np.float32)
    att_mask = np.ones((S, B), np.float32)
    att_mask[2:, 1] = 0
    f = jax.jit(
        lambda p, y, m, a, am: apply_with(p, gen.cost_matrix, y, m, attended=a, attended_mask=am)
    )
    costs = np.asarray(f(gen.get_parameter_values(), outputs, mask, attended, att_mask))
    ref = np_attention_costs(params_of(gen), outputs, mask, attended, att_mask)
    np.testing.assert_allclose(costs, ref, rtol=1e-4, atol=1e-5)


def test_generate_shapes_determinism_and_eos():
    gen = attention_generator()
    attended = jnp.asarray(RNG.randn(S, B, 2), jnp.float32)
    params = gen.get_parameter_values()

    @jax.jit
    def sample(p, key):
        return apply_with(
            p, gen.generate, 7, B, key, eos=0, attended=attended, attended_mask=jnp.ones((S, B))
        )

    a = sample(params, jax.random.key(0))
    b = sample(params, jax.random.key(0))
    c = sample(params, jax.random.key(1))
    assert a["outputs"].shape == (7, B) and a["mask"].shape == (7, B)
    assert a["states"].shape == (7, B, 3) and a["weighted_averages"].shape == (7, B, 2)
    assert a["weights"].shape == (7, B, S)
    np.testing.assert_array_equal(np.asarray(a["outputs"]), np.asarray(b["outputs"]))
    assert not np.array_equal(np.asarray(a["outputs"]), np.asarray(c["outputs"]))
    out, mask = np.asarray(a["outputs"]), np.asarray(a["mask"])
    for j in range(B):
        ends = np.flatnonzero(out[:, j] == 0)
        if ends.size:  # mask covers the eos step; afterwards only eos
            assert mask[: ends[0] + 1, j].all() and not mask[ends[0] + 1 :, j].any()
            assert (out[ends[0] :, j] == 0).all()
    # the generation costs are the model's negative log-likelihood of the sample
    nll = apply_with(
        params,
        gen.cost_matrix,
        a["outputs"],
        a["mask"],
        attended=attended,
        attended_mask=jnp.ones((S, B)),
    )
    np.testing.assert_allclose(np.asarray(nll), np.asarray(a["costs"]), rtol=1e-4, atol=1e-5)


def test_generate_needs_a_key():
    gen = simple_generator()
    with pytest.raises(SequenceGeneratorError, match="key"):
        gen.generate(3, 2)
    with pytest.raises(SequenceGeneratorError, match="attended"):
        attention_generator().generate(3, 2, jax.random.key(0))


@pytest.mark.slow
def test_docstring_examples_run():
    """The ``>>>`` examples (tests/test_docs.py runs docs/sequence_generators.md)."""
    import doctest
    import importlib

    modules = ("_attention", "_emitters", "_feedback", "_readout", "_sequence_generator",
               "_beam_search")
    for name in modules:
        module = importlib.import_module(f"bricks.recurrent.{name}")
        failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert failures == 0, name
