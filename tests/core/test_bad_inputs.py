"""Issue 14: bad inputs thrown at every core brick of the conformance registry.

Each bad input (wrong rank, wrong feature size, integers where floats go,
strings, objects, a missing or empty batch) either works with a documented
meaning — checked against what the good input gives — or raises a
``bricks.errors`` exception whose message names the brick path: never a raw
JAX/XLA error, never a silently broadcast result (see
:func:`bricks.core.testing.check_bad_input`).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bricks.core import Flattener, Parallel
from bricks.core.testing import BAD_INPUTS, REGISTRY, check_bad_input

CORE = sorted(
    (e for e in REGISTRY.values() if e.cls.__module__.startswith("bricks.core")),
    key=lambda e: e.cls.__name__,
)

#: Results with another documented meaning than the good input's reference.
DOCUMENTED = {
    # Flattener reads the first axis as the batch and flattens all the others
    Flattener: ("extra_axis", "missing_batch"),
    # each channel of a Parallel is transformed on its own: a channel may hold one example
    Parallel: ("fewer_axes",),
}

_MADE: dict[type, tuple] = {}


def _check(example, kind: str, which: int, values: bool = True) -> str:
    if example.cls not in _MADE:
        _MADE[example.cls] = example.make()
    return check_bad_input(
        example,
        kind,
        which,
        made=_MADE[example.cls],
        documented=DOCUMENTED.get(example.cls, ()),
        values=values,
    )


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    example=st.sampled_from(CORE),
    kind=st.sampled_from(BAD_INPUTS),
    which=st.integers(min_value=0, max_value=2),
)
def test_a_bad_input_is_a_named_error_or_a_documented_result(example, kind, which):
    # shapes only (eval_shape, no compilation); the slow test also compares values
    _check(example, kind, which, values=False)


@pytest.mark.slow
@pytest.mark.parametrize("example", CORE, ids=lambda e: e.cls.__name__)
def test_every_bad_input_of_every_core_brick(example):
    outcomes = {}
    for kind in BAD_INPUTS:
        for which in range(3):
            outcomes[kind, which] = _check(example, kind, which)
    assert "error" in outcomes.values() or "works" in outcomes.values()


def test_the_check_catches_a_broadcast_and_a_raw_error():
    """The property fails on the bugs it is meant to find."""
    import jax.numpy as jnp

    from bricks.core import Brick, application
    from bricks.core.testing import Example

    class Broadcasting(Brick):  # always answers a batch of 2, whatever batch came
        @application(inputs=["x"])
        def apply(self, x):
            return jnp.ones((2, 3)) * jnp.sum(x)

    def make():
        return Broadcasting(), (jnp.ones((2, 3)),)

    example = Example(Broadcasting, make)
    with pytest.raises(AssertionError, match="lost the batch size"):
        check_bad_input(example, "empty_batch")

    class Raw(Brick):
        @application(inputs=["x"])
        def apply(self, x):
            return jnp.dot(x, jnp.ones((3, 2)))

    with pytest.raises(AssertionError, match="not a bricks error"):
        check_bad_input(Example(Raw, lambda: (Raw(), (jnp.ones((2, 3)),))), "wrong_features")
