"""Blocks' tests/test_search.py, in bricks' idiom.

Blocks searched one input repeated ``beam_size`` times as a batch; bricks'
:class:`~bricks.recurrent.BeamSearch` keeps ``beam_size`` beams per batch
element, so the input is one sequence (batch 1). Blocks froze the sum of the
outputs of a randomly initialized model; here the costs are checked against
the model's own cost, as in the original.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose

from bricks.core import Initializable, IsotropicGaussian, LookupTable, Tanh, application
from bricks.errors import SequenceGeneratorError
from bricks.recurrent import (
    BeamSearch,
    LookupFeedback,
    Readout,
    SequenceContentAttention,
    SequenceGenerator,
    SimpleRecurrent,
    SoftmaxEmitter,
)


class SimpleGenerator(Initializable):
    """The top brick, as in Blocks' reverse_words demo."""

    def __init__(self, dimension, alphabet_size, **kwargs):
        super().__init__(**kwargs)
        lookup = LookupTable(alphabet_size, dimension)
        transition = SimpleRecurrent(activation=Tanh(), dim=dimension, name="transition")
        attention = SequenceContentAttention(
            state_names=transition.apply.states,
            attended_dim=dimension,
            match_dim=dimension,
            name="attention",
        )
        readout = Readout(
            readout_dim=alphabet_size,
            source_names=[transition.apply.states[0], attention.take_glimpses.outputs[0]],
            emitter=SoftmaxEmitter(name="emitter"),
            feedback_brick=LookupFeedback(alphabet_size, dimension),
            name="readout",
        )
        generator = SequenceGenerator(
            readout=readout, transition=transition, attention=attention, name="generator"
        )
        self.lookup = lookup
        self.generator = generator
        self.children = [lookup, generator]

    @application
    def cost(self, chars, chars_mask, targets, targets_mask):
        return self.generator.cost_matrix(
            targets, targets_mask, attended=self.lookup.apply(chars), attended_mask=chars_mask
        )


@pytest.mark.ported("tests/test_search.py::test_beam_search_smallest")
def test_beam_search_smallest():
    a = np.array([[3, 6, 4], [1, 2, 7]])
    ind, mins = BeamSearch._smallest(a, 2)
    assert np.all(np.array(ind) == np.array([[1, 1], [0, 1]]))
    assert np.all(mins == [1, 2])


@pytest.mark.slow
@pytest.mark.ported("tests/test_search.py::test_beam_search")
def test_beam_search():
    rng = np.random.RandomState(1234)
    alphabet_size, beam_size, length = 20, 10, 15
    simple_generator = SimpleGenerator(10, alphabet_size, seed=1234)
    simple_generator.weights_init = IsotropicGaussian(0.5)
    simple_generator.biases_init = IsotropicGaussian(0.5)
    simple_generator.initialize()

    chars = rng.randint(alphabet_size, size=(length, 1))
    search = BeamSearch(beam_size, simple_generator.generator)
    result = search.search(
        3 * length,
        0,
        attended=simple_generator.lookup.apply(chars),
        attended_mask=jnp.ones((length, 1)),
    )
    results = np.asarray(result.outputs[:, 0])  # (time, beam)
    mask = np.asarray(result.mask[:, 0])
    costs = np.asarray(result.costs[0])
    assert results.shape == (3 * length, beam_size)

    true_costs = simple_generator.cost(
        np.tile(chars, (1, beam_size)),
        np.ones((length, beam_size), dtype=np.float32),
        results,
        mask,
    )
    true_costs = (np.asarray(true_costs) * mask).sum(axis=0)
    assert_allclose(costs, true_costs, rtol=1e-5)

    # Blocks' default result: lists trimmed after eos
    (results2,), (costs2,) = result.as_lists()
    for i in range(len(results2)):
        assert results2[i] == list(results.T[i, : int(mask.T[i].sum())])
    assert_allclose(costs2, costs)


def test_blocks_spelling_of_beam_search_says_what_to_write():
    gen = SimpleGenerator(4, 5).generator
    with pytest.raises(SequenceGeneratorError, match=r"BeamSearch\(beam_size, generator\)"):
        BeamSearch(object(), gen)


def test_ignore_first_eol():
    """Blocks' ``ignore_first_eol``: an eos at the first step ends no beam (issue 15)."""
    from bricks.core import Constant

    gen = SequenceGenerator(
        Readout(readout_dim=5, source_names=["states"], emitter=SoftmaxEmitter(),
                feedback_brick=LookupFeedback(5, 3)),
        SimpleRecurrent(dim=3, activation=Tanh()),
        weights_init=Constant(0.0), biases_init=Constant(0.0),
    )
    gen.initialize()
    (bias,) = [p for p in gen.get_parameter_values() if p.endswith("post_merge.b")]
    gen.set_parameter_values({bias: np.array([5.0, 0, 0, 0, 0], np.float32)})
    search = BeamSearch(1, gen)
    plain = search.search(4, 0, batch_size=1)
    assert np.asarray(plain.mask)[:, 0, 0].tolist() == [1, 0, 0, 0]
    ignoring = search.search(4, 0, batch_size=1, ignore_first_eol=True)
    assert np.asarray(ignoring.mask)[:, 0, 0].tolist() == [1, 1, 0, 0]
    assert np.asarray(ignoring.outputs)[:2, 0, 0].tolist() == [0, 0]
    (sequences,), _ = ignoring.as_lists()
    assert sequences == [[0, 0]]
