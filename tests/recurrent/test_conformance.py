"""The bricks of issue 3 in the conformance registry of bricks.core.testing
(jit, grad, vmap, round trip by path, annotations)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import bricks.recurrent
from bricks.core import Constant, IsotropicGaussian, Tanh
from bricks.core.testing import REGISTRY, check_conformance, missing_from_registry, register
from bricks.recurrent import (
    LSTM,
    BaseRecurrent,
    Bidirectional,
    GatedRecurrent,
    RecurrentStack,
    SimpleRecurrent,
)

_INITS = {"weights_init": IsotropicGaussian(0.3), "biases_init": Constant(0.1)}
T, B, D = 3, 2, 2


def _x(*shape: int, seed: int = 0) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def _ready(brick, *inputs):
    brick.initialize(seed=0)
    return brick, inputs


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

MINE = [SimpleRecurrent, LSTM, GatedRecurrent, Bidirectional, RecurrentStack]


def test_issue_3_bricks_have_entries():
    missing = missing_from_registry(bricks.recurrent, abstract=[BaseRecurrent])
    assert not [name for name in missing if getattr(bricks.recurrent, name) in MINE]


@pytest.mark.parametrize("cls", MINE, ids=lambda c: c.__name__)
def test_conformance(cls):
    check_conformance(REGISTRY[cls])
