"""AttentionRecurrent passes the contexts to the transition's initial_states, as
Blocks did (issue 14, item 11): an initial state may depend on the attended
sequence, like ``GRUInitialState`` of Blocks' machine-translation example."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bricks.core import Constant, IsotropicGaussian, Linear, application
from bricks.errors import SequenceGeneratorError
from bricks.recurrent import (
    AttentionRecurrent,
    BeamSearch,
    LookupFeedback,
    Readout,
    SequenceContentAttention,
    SequenceGenerator,
    SimpleRecurrent,
    SoftmaxEmitter,
)

ATT_DIM, DIM, VOCAB = 3, 4, 5
RNG = np.random.RandomState(7)


class AttendedMeanInitialState(SimpleRecurrent):
    """``h_0 = tanh(W_init . masked mean over time of attended + b_init)``."""

    def __init__(self, attended_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.initializer = Linear(attended_dim, name="initializer")
        self.children.append(self.initializer)

    def _push_allocation_config(self) -> None:
        super()._push_allocation_config()
        self.push_to(self.initializer, "output_dim", self.dim)

    @application
    def initial_states(self, batch_size, *args, **kwargs):
        attended = kwargs["attended"]  # KeyError before the fix
        mask = kwargs.get("attended_mask")
        mask = jnp.ones(attended.shape[:2]) if mask is None else mask
        mean = (attended * mask[..., None]).sum(0) / mask.sum(0)[:, None]
        return jnp.tanh(self.initializer.apply(mean))

    @initial_states.property("outputs")
    def _initial_states_outputs(self):
        return self.apply.states


def _reference_h0(brick: AttendedMeanInitialState, attended, mask) -> np.ndarray:
    values = brick.get_parameter_values()
    w = np.asarray(values[f"{brick.path}/initializer.W"], np.float64)
    b = np.asarray(values[f"{brick.path}/initializer.b"], np.float64)
    att, m = np.asarray(attended, np.float64), np.asarray(mask, np.float64)
    mean = (att * m[..., None]).sum(0) / m.sum(0)[:, None]
    return np.tanh(mean @ w + b)


def _data(batch=2):
    attended = jnp.asarray(RNG.randn(6, batch, ATT_DIM), jnp.float32)
    mask = np.ones((6, batch), np.float32)
    mask[4:, 0] = 0
    return attended, jnp.asarray(mask)


@pytest.mark.slow
def test_attention_recurrent_initial_states_see_the_attended_sequence():
    transition = AttendedMeanInitialState(ATT_DIM, dim=DIM)
    rec = AttentionRecurrent(
        transition,
        SequenceContentAttention(["states"], attended_dim=ATT_DIM, match_dim=5),
        weights_init=IsotropicGaussian(0.5),
        biases_init=IsotropicGaussian(0.5),
    )
    rec.initialize(seed=0)
    attended, mask = _data()
    states, glimpses, weights = rec.initial_states(2, attended=attended, attended_mask=mask)
    want = _reference_h0(transition, attended, mask)
    np.testing.assert_allclose(states, want, rtol=1e-5, atol=1e-6)
    assert glimpses.shape == (2, ATT_DIM) and weights.shape == (2, 6)
    # the iteration starts from it: same result as passing that state explicitly
    inputs = jnp.asarray(RNG.randn(3, 2, DIM), jnp.float32)
    implicit = rec.apply(inputs=inputs, attended=attended, attended_mask=mask)
    explicit = rec.apply(
        inputs=inputs, attended=attended, attended_mask=mask, states=jnp.asarray(want, jnp.float32)
    )
    for a, b in zip(implicit, explicit, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # and the attended sequence matters
    zero_start = rec.apply(
        inputs=inputs, attended=attended, attended_mask=mask, states=jnp.zeros((2, DIM))
    )
    assert not np.allclose(implicit[0], zero_start[0])


def _generator() -> tuple[SequenceGenerator, AttendedMeanInitialState]:
    transition = AttendedMeanInitialState(ATT_DIM, dim=DIM)
    gen = SequenceGenerator(
        Readout(
            readout_dim=VOCAB,
            source_names=["states", "weighted_averages"],
            emitter=SoftmaxEmitter(),
            feedback_brick=LookupFeedback(VOCAB, 3),
        ),
        transition,
        attention=SequenceContentAttention(["states"], attended_dim=ATT_DIM, match_dim=5),
        weights_init=IsotropicGaussian(1.0),
        biases_init=Constant(0.1),
    )
    gen.initialize(seed=1)
    return gen, transition


@pytest.mark.slow
def test_generator_cost_and_generate_use_the_attended_initial_state():
    gen, transition = _generator()
    attended, mask = _data()
    h0 = jnp.asarray(_reference_h0(transition, attended, mask), jnp.float32)
    outputs = jnp.asarray(RNG.randint(0, VOCAB, (4, 2)))
    implicit = gen.cost_matrix(outputs, attended=attended, attended_mask=mask)
    explicit = gen.cost_matrix(outputs, attended=attended, attended_mask=mask, states=h0)
    np.testing.assert_allclose(implicit, explicit, rtol=1e-5, atol=1e-6)
    cost = jax.jit(lambda a, m: gen.cost(outputs, attended=a, attended_mask=m))(attended, mask)
    np.testing.assert_allclose(cost, np.asarray(explicit).sum(0).mean(), rtol=1e-5)

    sample = gen.generate(4, 2, greedy=True, attended=attended, attended_mask=mask)
    given = gen.generate(4, 2, greedy=True, attended=attended, attended_mask=mask, states=h0)
    np.testing.assert_array_equal(sample["outputs"], given["outputs"])
    np.testing.assert_allclose(sample["states"], given["states"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("early_stop", [True, False])
def test_beam_search_with_attended_initial_state_and_given_states(early_stop):
    gen, transition = _generator()
    attended, mask = _data()
    h0 = jnp.asarray(_reference_h0(transition, attended, mask), jnp.float32)
    search = BeamSearch(3, gen, early_stop=early_stop)
    implicit = search.search(max_length=5, eos=0, attended=attended, attended_mask=mask)
    explicit = search.search(
        max_length=5, eos=0, attended=attended, attended_mask=mask, states=h0
    )
    np.testing.assert_array_equal(implicit.outputs, explicit.outputs)
    np.testing.assert_allclose(implicit.costs, explicit.costs, rtol=1e-5, atol=1e-5)
    # the costs are the model's negative log-likelihood of the beams found
    best = implicit.outputs[:, :, 0]
    nll = np.asarray(
        gen.cost_matrix(best, implicit.mask[:, :, 0], attended=attended, attended_mask=mask)
    ).sum(0)
    np.testing.assert_allclose(implicit.costs[:, 0], nll, rtol=1e-4, atol=1e-4)
    # states first in the keywords: the batch size is read from their axis 0
    first = search.search(max_length=5, eos=0, states=h0, attended=attended, attended_mask=mask)
    np.testing.assert_array_equal(first.outputs, implicit.outputs)


def test_beam_search_refuses_states_of_another_batch():
    gen, _ = _generator()
    attended, mask = _data()
    with pytest.raises(SequenceGeneratorError, match="'states' has shape \\(3, 4\\)"):
        BeamSearch(2, gen).search(
            max_length=3, eos=0, attended=attended, attended_mask=mask, states=jnp.zeros((3, 4))
        )
