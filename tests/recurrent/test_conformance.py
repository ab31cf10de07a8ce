"""Every public brick of bricks.recurrent in the conformance registry of
bricks.core.testing (jit, grad, vmap, round trip by path, annotations)."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import pytest

import bricks.recurrent
from bricks.core import Brick, Constant, IsotropicGaussian, Tanh
from bricks.core.testing import REGISTRY, check_conformance, missing_from_registry, register
from bricks.recurrent import (
    LSTM,
    AbstractEmitter,
    AbstractFeedback,
    AttentionRecurrent,
    BaseRecurrent,
    Bidirectional,
    FakeAttentionRecurrent,
    GatedRecurrent,
    LookupFeedback,
    Readout,
    RecurrentStack,
    SequenceContentAttention,
    SequenceGenerator,
    SimpleRecurrent,
    SoftmaxEmitter,
    TrivialEmitter,
    TrivialFeedback,
)

_INITS = {"weights_init": IsotropicGaussian(0.3), "biases_init": Constant(0.1)}
# time, batch, state features; attended time and features, match space, vocabulary
T, B, D = 3, 2, 2
S, A, M, V = 4, 3, 4, 5


def _x(*shape: int, seed: int = 0) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def _ids(*shape: int, seed: int = 0) -> jax.Array:
    return jax.random.randint(jax.random.key(seed), shape, 0, V)


def _mask(time: int, ends: tuple[int, ...]) -> jax.Array:
    """A ``(time, batch)`` float mask: sequence ``b`` has ``ends[b]`` steps."""
    return (jnp.arange(time)[:, None] < jnp.array(ends)[None]).astype(jnp.float32)


def _ready(brick, *inputs, **keyword_inputs):
    brick.initialize(seed=0)
    return brick, inputs, keyword_inputs


def _attention() -> SequenceContentAttention:
    return SequenceContentAttention(["states"], attended_dim=A, match_dim=M)


def _attended() -> dict[str, jax.Array]:
    return {"attended": _x(S, B, A, seed=2), "attended_mask": _mask(S, (S, 2))}


# -- the transitions of issue 3 ---------------------------------------------------------

register(SimpleRecurrent)(
    lambda: _ready(SimpleRecurrent(dim=D, activation=Tanh(), **_INITS), _x(T, B, D))
)
register(LSTM)(lambda: _ready(LSTM(dim=D, **_INITS), _x(T, B, 4 * D)))
register(GatedRecurrent)(
    lambda: _ready(GatedRecurrent(dim=D, **_INITS), _x(T, B, D), _x(T, B, 2 * D, seed=1))
)
register(Bidirectional)(lambda: _ready(Bidirectional(LSTM(dim=D), **_INITS), _x(T, B, 4 * D)))
register(RecurrentStack)(
    lambda: _ready(RecurrentStack([LSTM(dim=D), GatedRecurrent(dim=D)], **_INITS), _x(T, B, 4 * D))
)

# -- attention ---------------------------------------------------------------------------

register(SequenceContentAttention, "take_glimpses")(
    lambda: _ready(
        SequenceContentAttention(["states"], attended_dim=A, match_dim=M, state_dims=[D], **_INITS),
        states=_x(B, D, seed=1),
        **_attended(),
    )
)
register(AttentionRecurrent)(
    lambda: _ready(
        AttentionRecurrent(SimpleRecurrent(dim=D, activation=Tanh()), _attention(), **_INITS),
        inputs=_x(T, B, D),
        mask=_mask(T, (T, 2)),
        **_attended(),
    )
)
register(FakeAttentionRecurrent)(
    lambda: _ready(
        FakeAttentionRecurrent(SimpleRecurrent(dim=D, activation=Tanh()), **_INITS),
        inputs=_x(T, B, D),
        mask=_mask(T, (T, 2)),
    )
)

# -- sequence generation -----------------------------------------------------------------

register(SoftmaxEmitter, "cost")(lambda: _ready(SoftmaxEmitter(), _x(T, B, V), _ids(T, B)))
register(TrivialEmitter, "cost")(
    lambda: _ready(TrivialEmitter(readout_dim=D), _x(T, B, D), _x(T, B, D, seed=1))
)
register(LookupFeedback, "feedback")(
    lambda: _ready(LookupFeedback(V, D, weights_init=IsotropicGaussian(0.3)), _ids(T, B))
)
register(TrivialFeedback, "feedback")(lambda: _ready(TrivialFeedback(D), _x(T, B, D)))
# readout() reads only the merge and the post-merge: with the default (parameter-free)
# emitter and feedback every parameter of the brick takes part
register(Readout, "readout")(
    lambda: _ready(
        Readout(V, ["states", "weighted_averages"], source_dims=[D, A], **_INITS),
        states=_x(T, B, D),
        weighted_averages=_x(T, B, A, seed=1),
    )
)
register(SequenceGenerator, "cost_matrix")(
    lambda: _ready(
        SequenceGenerator(
            Readout(
                readout_dim=V,
                source_names=["states", "weighted_averages", "feedback"],
                emitter=SoftmaxEmitter(),
                feedback_brick=LookupFeedback(V, D),
            ),
            GatedRecurrent(dim=D),
            attention=_attention(),
            **_INITS,
        ),
        _ids(T, B),
        _mask(T, (T, 2)),
        **_attended(),
    )
)

#: Public base classes of bricks.recurrent that are not used as they are.
ABSTRACT = [BaseRecurrent, AbstractEmitter, AbstractFeedback]
PUBLIC_BRICKS = [
    obj
    for obj in (getattr(bricks.recurrent, name) for name in bricks.recurrent.__all__)
    if inspect.isclass(obj) and issubclass(obj, Brick) and obj not in ABSTRACT
]


def test_every_public_brick_has_an_entry():
    assert missing_from_registry(bricks.recurrent, abstract=ABSTRACT) == []


@pytest.mark.parametrize("cls", PUBLIC_BRICKS, ids=lambda c: c.__name__)
def test_conformance(cls):
    check_conformance(REGISTRY[cls])
