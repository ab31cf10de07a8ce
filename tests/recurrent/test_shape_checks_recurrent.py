"""Issue 14, items 2 and 3 for recurrent bricks: sequences are time-major
``(time, batch, features)``; a missing batch axis, a wrong feature size, a
mask or state of the wrong shape is a ShapeError naming the brick path, the
input and the setting that decides its size — never a broadcast."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bricks.core import Constant, IsotropicGaussian, Tanh
from bricks.errors import InputTypeError, RecurrentError, SequenceShapeError, ShapeError
from bricks.recurrent import (
    LSTM,
    AttentionRecurrent,
    Bidirectional,
    GatedRecurrent,
    LookupFeedback,
    Readout,
    RecurrentStack,
    SequenceContentAttention,
    SequenceGenerator,
    SimpleRecurrent,
    SoftmaxEmitter,
    TrivialEmitter,
)

INITS = {"weights_init": IsotropicGaussian(0.1), "biases_init": Constant(0.0)}


def _ready(brick):
    brick.initialize(seed=0)
    return brick


def test_lstm_without_a_batch_axis_is_an_error_not_a_broadcast():
    # used to return (2, 16, 4) with all 16 "batch" rows identical
    lstm = _ready(LSTM(dim=4, **INITS))
    with pytest.raises(ShapeError) as info:
        lstm.apply(np.zeros((2, 16), np.float32))
    message = str(info.value)
    for part in ("LSTM /lstm", "'inputs'", "(2, 16)", "(time, batch, 16)", "iterate=False"):
        assert part in message
    assert isinstance(info.value, RecurrentError)


def test_simple_recurrent_without_a_batch_axis_is_an_error():
    # used to return (5, 4, 4)
    rnn = _ready(SimpleRecurrent(dim=4, activation=Tanh(), **INITS))
    with pytest.raises(SequenceShapeError, match="SimpleRecurrent /simplerecurrent: input 'in"):
        rnn.apply(np.ones((5, 4), np.float32))
    with pytest.raises(SequenceShapeError, match="expected \\(batch, 4\\)"):
        jax.jit(lambda x: rnn.apply(x, iterate=False))(jnp.ones((5, 2, 4)))


def test_lstm_fed_dim_instead_of_four_dim_features_names_the_setting():
    lstm = _ready(LSTM(dim=4, **INITS))
    with pytest.raises(ShapeError, match=r"4 features on its last axis, expected 4 \* dim = 16 "
                                         r"\(dim=4\)") as info:
        lstm.apply(jnp.ones((3, 2, 4)))
    assert "add got incompatible shapes" not in str(info.value)


def test_gated_recurrent_gate_inputs_and_states():
    gru = _ready(GatedRecurrent(dim=3, **INITS))
    x, gates = jnp.ones((5, 2, 3)), jnp.ones((5, 2, 6))
    with pytest.raises(ShapeError, match="'gate_inputs'.*2 \\* dim = 6 \\(dim=3\\)"):
        gru.apply(x, jnp.ones((5, 2, 3)))
    # a state of another batch size used to fail inside the scan (carry mismatch)
    with pytest.raises(ShapeError, match=r"disagree on the batch size.*'states' has shape \(1, 3"):
        gru.apply(x, gates, states=jnp.zeros((1, 3)))
    with pytest.raises(ShapeError, match="'states'.*expected dim=3"):
        gru.apply(x, gates, states=jnp.zeros((2, 4)))
    assert gru.apply(x, gates, states=jnp.zeros((2, 3))).shape == (5, 2, 3)


def test_masks_must_be_time_by_batch():
    rnn = _ready(SimpleRecurrent(dim=3, **INITS))
    x = jnp.ones((5, 2, 3))
    with pytest.raises(ShapeError, match="input 'mask' has shape \\(5,\\)"):
        rnn.apply(x, mask=jnp.ones(5))
    with pytest.raises(RecurrentError, match="disagree"):
        rnn.apply(x, mask=jnp.ones((5, 1)))
    with pytest.raises(ShapeError, match="'mask' has shape \\(2, 1\\)"):
        rnn.apply(x[0], mask=jnp.ones((2, 1)), iterate=False)


def test_single_steps_check_rank_and_batch():
    lstm = _ready(LSTM(dim=2, **INITS))
    with pytest.raises(ShapeError, match="'inputs' has shape \\(8,\\).*expected \\(batch, 8\\)"):
        lstm.apply(jnp.ones(8), iterate=False)
    with pytest.raises(ShapeError, match="disagree on the batch size"):
        lstm.apply(jnp.ones((3, 8)), states=jnp.ones((2, 2)), cells=jnp.ones((3, 2)),
                   iterate=False)
    states, cells = lstm.apply(jnp.ones((3, 8)), iterate=False)
    assert states.shape == cells.shape == (3, 2)


def test_bidirectional_and_stack_name_the_layer():
    birnn = _ready(Bidirectional(LSTM(dim=2), **INITS))
    with pytest.raises(ShapeError, match="LSTM /bidirectional/forward: input 'inputs'"):
        birnn.apply(jnp.ones((4, 8)))
    stack = _ready(RecurrentStack([LSTM(dim=2), GatedRecurrent(dim=3)], **INITS))
    with pytest.raises(ShapeError, match=r"/recurrentstack/lstm.0: input .inputs.*4 \* dim = 8"):
        stack.apply(jnp.ones((4, 2, 6)))
    with pytest.raises(ShapeError, match="4 \\* dim = 8 \\(dim=2\\) of layer 0"):
        stack.apply(jnp.ones((4, 2, 6)), low_memory=True)


def _attention():
    return SequenceContentAttention(["states"], attended_dim=4, match_dim=3)


def test_attention_checks_attended_its_mask_and_the_batch():
    rec = _ready(AttentionRecurrent(SimpleRecurrent(dim=3), _attention(), **INITS))
    x, attended = jnp.ones((6, 2, 3)), jnp.ones((7, 2, 4))
    with pytest.raises(ShapeError, match="'attended'.*expected attended_dim=4"):
        rec.apply(inputs=x, attended=jnp.ones((7, 2, 5)))
    with pytest.raises(ShapeError, match="'attended' has shape \\(7, 4\\)"):
        rec.apply(inputs=x, attended=jnp.ones((7, 4)))
    with pytest.raises(ShapeError, match="disagree on the attended time"):
        rec.apply(inputs=x, attended=attended, attended_mask=jnp.ones((6, 2)))
    # an attended batch of 1 used to broadcast against the states' batch of 2
    with pytest.raises(ShapeError, match="disagree on the batch size"):
        rec.apply(inputs=x, attended=jnp.ones((7, 1, 4)))
    states, glimpses, weights = rec.apply(inputs=x, attended=attended)
    assert weights.shape == (6, 2, 7)


def test_generator_outputs_mask_and_emitter_shapes():
    gen = _ready(
        SequenceGenerator(
            Readout(readout_dim=5, source_names=["states"], emitter=SoftmaxEmitter(),
                    feedback_brick=LookupFeedback(5, 4)),
            SimpleRecurrent(dim=3),
            **INITS,
        )
    )
    outputs = jnp.array([[1, 2], [3, 4], [0, 0]])
    with pytest.raises(ShapeError, match="'outputs' has shape \\(3,\\).*\\(time, batch\\)"):
        gen.cost_matrix(outputs[:, 0])
    with pytest.raises(ShapeError, match="disagree on the batch"):
        gen.cost_matrix(outputs, mask=jnp.ones((3, 1)))
    # float symbols used to be truncated to integers silently
    with pytest.raises(InputTypeError, match="LookupFeedback .*'outputs' must hold integer"):
        gen.cost_matrix(outputs.astype(jnp.float32) + 0.5)
    emitter = SoftmaxEmitter()
    with pytest.raises(ShapeError, match="symbols 'outputs' of shape \\(1,\\)"):
        emitter.cost(jnp.zeros((2, 4)), jnp.array([1]))
    with pytest.raises(ShapeError, match="'readouts' has shape \\(2, 3\\) but 'outputs'"):
        TrivialEmitter(readout_dim=3).cost(jnp.zeros((2, 3)), jnp.zeros((1, 3)))


def test_an_integer_attended_sequence_is_not_truncated():
    # the glimpses (averages) used to be carried in the attended dtype: int32, truncated
    rec = _ready(AttentionRecurrent(SimpleRecurrent(dim=3), _attention(), **INITS))
    x = jnp.ones((4, 2, 3))
    attended = jnp.arange(24).reshape(3, 2, 4) % 5
    got = rec.apply(inputs=x, attended=attended)
    want = rec.apply(inputs=x, attended=attended.astype(jnp.float32))
    for a, b in zip(got, want, strict=True):
        assert a.dtype == jnp.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_integer_readouts_are_scored_as_floats():
    emitter = SoftmaxEmitter()
    readouts = jnp.array([[0, 3, 1], [2, 2, 0]])
    got = emitter.cost(readouts, jnp.array([1, 0]))
    want = emitter.cost(readouts.astype(jnp.float32), jnp.array([1, 0]))
    np.testing.assert_allclose(got, want, rtol=1e-6)
