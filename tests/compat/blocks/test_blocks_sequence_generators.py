"""Blocks' tests/bricks/test_sequence_generators.py, in bricks' idiom.

Blocks froze sums that depend on its random initial weights; here the
costs and generated sequences are checked against numpy loops of Blocks'
equations on bricks' parameters, and the frozen relations between the
numbers (cost = summed costs / batch, per element = summed costs / tokens)
are kept.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_equal

from bricks.core import (
    AUXILIARY,
    Constant,
    Identity,
    IsotropicGaussian,
    Orthogonal,
    Tanh,
    application,
)
from bricks.graph import ComputationGraph, VariableFilter
from bricks.recurrent import (
    GatedRecurrent,
    LookupFeedback,
    Readout,
    SequenceContentAttention,
    SequenceGenerator,
    SimpleRecurrent,
    SoftmaxEmitter,
    TrivialEmitter,
)

F32 = np.float32


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def params_of(gen):
    return {
        k[len(gen.path) + 1 :]: np.asarray(v, np.float64)
        for k, v in gen.get_parameter_values().items()
    }


class TestEmitter(TrivialEmitter):
    __test__ = False

    @application
    def cost(self, readouts, outputs):
        """Compute MSE."""
        return ((readouts - outputs) ** 2).sum(axis=readouts.ndim - 1)


def _per_sequence_element(gen, cost_fn, **inputs):
    cg = ComputationGraph(cost_fn, **inputs)
    auxiliary = [
        v
        for v in VariableFilter(roles=[AUXILIARY])(cg.variables)
        if v.name == "per_sequence_element" and v.brick is gen and v.application == "cost"
    ]
    (var,) = auxiliary
    assert var.shape == ()
    return cg, var


@pytest.mark.slow
@pytest.mark.ported("tests/bricks/test_sequence_generators.py::test_sequence_generator")
def test_sequence_generator():
    rng = np.random.RandomState(1234)
    output_dim, dim, batch_size, n_steps = 1, 20, 30, 10
    transition = SimpleRecurrent(activation=Tanh(), dim=dim, weights_init=Orthogonal())
    generator = SequenceGenerator(
        Readout(readout_dim=output_dim, source_names=["states"], emitter=TestEmitter()),
        transition,
        weights_init=IsotropicGaussian(0.1),
        biases_init=Constant(0.0),
        seed=1234,
    )
    generator.initialize()
    p = params_of(generator)

    y_test = rng.uniform(size=(n_steps, batch_size, output_dim)).astype(F32)
    m_test = np.ones((n_steps, batch_size), dtype=F32)
    costs = np.asarray(generator.cost_matrix(y_test, m_test))
    assert costs.shape == (n_steps, batch_size)

    def readout(h):
        return h @ p["readout/merge/transform_states.W"] + p["readout/post_merge.b"]

    def step(y, h):
        x = y @ p["fork/fork_inputs.W"] + p["fork/fork_inputs.b"]
        return np.tanh(x + h @ p["with_fake_attention/simplerecurrent.W"])

    h = np.repeat(p["with_fake_attention/simplerecurrent.initial_state"][None], batch_size, 0)
    ref = np.zeros((n_steps, batch_size))
    for t in range(n_steps):
        ref[t] = ((readout(h) - y_test[t]) ** 2).sum(-1)
        h = step(y_test[t], h)
    assert_allclose(costs, ref, rtol=1e-4, atol=1e-6)

    cost = generator.cost(y_test, m_test)
    assert cost.ndim == 0
    assert_allclose(cost, costs.sum() / batch_size, rtol=1e-5)

    cg, per_element = _per_sequence_element(
        generator,
        lambda y, mask: generator.cost(y, mask),
        y=(None, None, output_dim),
        mask=(None, None),
    )
    (_,), (value,) = cg.evaluate(
        cg.parameter_values(), {"y": y_test, "mask": m_test}, extra=[per_element]
    )
    assert_allclose(value, costs.sum() / m_test.sum(), rtol=1e-5)

    states0 = rng.uniform(size=(batch_size, dim)).astype(F32)
    result = generator.generate(
        n_steps, batch_size, jax.random.key(0), states=jnp.asarray(states0)
    )
    states, outputs, gen_costs = result["states"], result["outputs"], result["costs"]
    assert states.shape == (n_steps, batch_size, dim)
    assert outputs.shape == (n_steps, batch_size, output_dim)
    assert gen_costs.shape == (n_steps, batch_size)
    h = states0.astype(np.float64)
    for t in range(n_steps):
        out = readout(h)
        h = step(out, h)
        assert_allclose(outputs[t], out, rtol=1e-4, atol=1e-5)
        assert_allclose(states[t], h, rtol=1e-4, atol=1e-5)
    # no generation cost: generation is deterministic
    assert_allclose(np.asarray(gen_costs).sum(), 0.0)


@pytest.mark.slow
@pytest.mark.ported("tests/bricks/test_sequence_generators.py::test_integer_sequence_generator")
def test_integer_sequence_generator():
    rng = np.random.RandomState(1234)
    readout_dim, feedback_dim, dim, batch_size, n_steps = 5, 3, 20, 30, 10
    transition = GatedRecurrent(dim=dim, activation=Tanh(), weights_init=Orthogonal())
    generator = SequenceGenerator(
        Readout(
            readout_dim=readout_dim,
            source_names=["states"],
            emitter=SoftmaxEmitter(),
            feedback_brick=LookupFeedback(readout_dim, feedback_dim),
        ),
        transition,
        weights_init=IsotropicGaussian(0.1),
        biases_init=Constant(0),
        seed=1234,
    )
    generator.initialize()
    p = params_of(generator)
    costs_fun = jax.jit(lambda y, m: generator.cost_matrix(y, m))

    y_test = rng.randint(readout_dim, size=(n_steps, batch_size))
    m_test = np.ones((n_steps, batch_size), dtype=F32)
    costs = np.asarray(costs_fun(y_test, m_test))
    assert costs.shape == (n_steps, batch_size)

    E = p["readout/lookupfeedback/lookuptable.W"]
    t_ = "with_fake_attention/gatedrecurrent."
    h = np.repeat(p[t_ + "initial_state"][None], batch_size, 0)
    ref = np.zeros((n_steps, batch_size))
    for t in range(n_steps):
        readout = h @ p["readout/merge/transform_states.W"] + p["readout/post_merge.b"]
        ref[t] = -log_softmax(readout)[np.arange(batch_size), y_test[t]]
        fb = E[y_test[t]]
        x = fb @ p["fork/fork_inputs.W"] + p["fork/fork_inputs.b"]
        g = fb @ p["fork/fork_gate_inputs.W"] + p["fork/fork_gate_inputs.b"]
        gates = sigmoid(g + h @ p[t_ + "state_to_gates"])
        u, r = gates[:, :dim], gates[:, dim:]
        h = u * np.tanh(x + (h * r) @ p[t_ + "state_to_state"]) + (1 - u) * h
    assert_allclose(costs, ref, rtol=1e-4, atol=1e-5)

    cost = generator.cost(y_test, m_test)
    assert cost.ndim == 0
    assert_allclose(cost, costs.sum() / batch_size, rtol=1e-5)
    cg, per_element = _per_sequence_element(
        generator,
        lambda y, mask: generator.cost(y, mask),
        y=((None, None), jnp.int32),
        mask=(None, None),
    )
    (_,), (value,) = cg.evaluate(
        cg.parameter_values(), {"y": y_test, "mask": m_test}, extra=[per_element]
    )
    assert_allclose(value, costs.sum() / m_test.sum(), rtol=1e-5)

    result = generator.generate(n_steps, batch_size, jax.random.key(1234))
    states, outputs, gen_costs = result["states"], result["outputs"], result["costs"]
    assert states.shape == (n_steps, batch_size, dim)
    assert outputs.shape == (n_steps, batch_size)
    assert np.issubdtype(outputs.dtype, np.integer)
    assert gen_costs.shape == (n_steps, batch_size)
    # the generation costs are the model's negative log-likelihood of the sample
    assert_allclose(gen_costs, costs_fun(outputs, np.ones((n_steps, batch_size))), rtol=1e-4)

    # costs do not depend on what the mask hides
    cost1 = np.asarray(costs_fun(np.array([[1], [2]]), np.array([[1], [1]], F32)))
    cost2 = np.asarray(
        costs_fun(np.array([[3, 1], [4, 2], [2, 0]]), np.array([[1, 1], [1, 1], [1, 0]], F32))
    )
    assert_allclose(cost1.sum(), cost2[:, 1].sum(), rtol=1e-5)


class TestTransition(SimpleRecurrent):
    __test__ = False

    def __init__(self, attended_dim, **kwargs):
        super().__init__(**kwargs)
        self.attended_dim = attended_dim

    @application(contexts=["attended", "attended_mask"])
    def apply(self, *args, **kwargs):
        for context in TestTransition.apply.contexts:
            kwargs.pop(context)
        return super().apply(*args, **kwargs)

    @apply.delegate
    def apply_delegate(self):
        return super().apply

    def get_dim(self, name):
        if name == "attended":
            return self.attended_dim
        if name == "attended_mask":
            return 0
        return super().get_dim(name)


@pytest.mark.slow
@pytest.mark.ported("tests/bricks/test_sequence_generators.py::test_with_attention")
def test_with_attention():
    rng = np.random.RandomState(1234)
    inp_dim, inp_len, attended_dim, attended_len, batch_size, n_steps = 2, 10, 3, 11, 4, 30

    def rand(size):
        return rng.uniform(size=size).astype(F32)

    def generate_mask(length, batch_size):
        mask = np.ones((length, batch_size), dtype=F32)
        for i in range(batch_size):
            mask[1 + rng.randint(0, length - 1) :, i] = 0.0
        return mask

    output_vals = rand((inp_len, batch_size, inp_dim))
    output_mask_vals = generate_mask(inp_len, batch_size)
    attended_vals = rand((attended_len, batch_size, attended_dim))
    attended_mask_vals = generate_mask(attended_len, batch_size)

    transition = TestTransition(dim=inp_dim, attended_dim=attended_dim, activation=Identity())
    attention = SequenceContentAttention(state_names=transition.apply.states, match_dim=inp_dim)
    generator = SequenceGenerator(
        Readout(
            readout_dim=inp_dim,
            source_names=[transition.apply.states[0], attention.take_glimpses.outputs[0]],
            emitter=TestEmitter(),
        ),
        transition=transition,
        attention=attention,
        weights_init=IsotropicGaussian(0.1),
        biases_init=Constant(0),
        add_contexts=False,
        seed=1234,
    )
    generator.initialize()
    p = params_of(generator)

    costs = np.asarray(
        generator.cost_matrix(
            output_vals, output_mask_vals, attended=attended_vals, attended_mask=attended_mask_vals
        )
    )
    assert costs.shape == (inp_len, batch_size)

    a = "att_trans/sequencecontentattention/"
    pre = attended_vals @ p[a + "preprocess.W"] + p[a + "preprocess.b"]

    def glimpse(h):
        match = pre + (h @ p[a + "state_trans/transform_states.W"])[None]
        e = (np.tanh(match) @ p[a + "energy_comp.W"])[..., 0]
        e = np.where(attended_mask_vals > 0, e, -np.inf)
        w = np.exp(e - e.max(0, keepdims=True)) * attended_mask_vals
        w = w / w.sum(0, keepdims=True)
        return (w[..., None] * attended_vals).sum(0), w.T

    def readout(h, g):
        return (
            h @ p["readout/merge/transform_states.W"]
            + g @ p["readout/merge/transform_weighted_averages.W"]
            + p["readout/post_merge.b"]
        )

    def step(y, h, g):
        x = (
            y @ p["fork/fork_inputs.W"]
            + p["fork/fork_inputs.b"]
            + g @ p["att_trans/distribute/fork_inputs.W"]
            + p["att_trans/distribute/fork_inputs.b"]
        )
        return x + h @ p["att_trans/testtransition.W"]

    h = np.repeat(p["att_trans/testtransition.initial_state"][None], batch_size, 0)
    ref = np.zeros((inp_len, batch_size))
    for t in range(inp_len):
        g, _ = glimpse(h)
        ref[t] = ((readout(h, g) - output_vals[t]) ** 2).sum(-1) * output_mask_vals[t]
        m = output_mask_vals[t][:, None]
        h = m * step(output_vals[t], h, g) + (1 - m) * h
    assert_allclose(costs, ref, rtol=1e-4, atol=1e-5)

    results = generator.generate(
        n_steps,
        batch_size,
        jax.random.key(0),
        attended=attended_vals,
        attended_mask=attended_mask_vals,
    )
    states, outputs, glimpses, weights, gen_costs = (
        np.asarray(results[k])
        for k in ("states", "outputs", "weighted_averages", "weights", "costs")
    )
    assert states.shape == (n_steps, batch_size, inp_dim)
    assert states.shape == outputs.shape
    assert glimpses.shape == (n_steps, batch_size, attended_dim)
    assert weights.shape == (n_steps, batch_size, attended_len)
    assert gen_costs.shape == (n_steps, batch_size)
    h = np.repeat(p["att_trans/testtransition.initial_state"][None], batch_size, 0)
    for t in range(n_steps):
        g, w = glimpse(h)
        out = readout(h, g)
        h = step(out, h, g)
        assert_allclose(outputs[t], out, rtol=1e-4, atol=1e-5)
        assert_allclose(states[t], h, rtol=1e-4, atol=1e-5)
    # no generation cost: generation is deterministic
    assert_allclose(gen_costs.sum(), 0.0, atol=1e-5)
    assert_allclose(weights.sum(), n_steps * batch_size, rtol=1e-5)


@pytest.mark.ported(
    "tests/bricks/test_sequence_generators.py::test_softmax_emitter_initial_outputs"
)
def test_softmax_emitter_initial_outputs():
    emitter = SoftmaxEmitter(3)
    emitter.readout_dim = 0
    assert_equal(np.asarray(emitter.initial_outputs(2)), 3 * np.ones((2,), dtype="int64"))
