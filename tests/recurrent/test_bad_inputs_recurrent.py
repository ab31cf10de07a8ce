"""Issue 14: bad inputs thrown at every recurrent brick of the conformance registry
(see tests/core/test_bad_inputs.py and :func:`bricks.core.testing.check_bad_input`).

Sequences are time-major, so the batch is axis 1 of every sequence, mask and
attended sequence, and of the outputs; states (``(batch, dim)``) and the
glimpses of an attention have it on axis 0.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bricks.core.testing import BAD_INPUTS, REGISTRY, check_bad_input
from bricks.recurrent import SequenceContentAttention

from . import test_conformance  # noqa: F401 - registers the recurrent entries

RECURRENT = sorted(
    (e for e in REGISTRY.values() if e.cls.__module__.startswith("bricks.recurrent")),
    key=lambda e: e.cls.__name__,
)

_MADE: dict[type, tuple] = {}


def _check(example, kind: str, which: int, values: bool) -> str:
    if example.cls not in _MADE:
        _MADE[example.cls] = example.make()
    if example.cls is SequenceContentAttention:  # states and glimpses are batch-first

        def batch_axis(name: str) -> int:
            return 0 if name == "states" else 1

        output_axis = 0
    else:

        def batch_axis(name: str) -> int:
            return 1

        output_axis = 1
    return check_bad_input(
        example,
        kind,
        which,
        made=_MADE[example.cls],
        batch_axis=batch_axis,
        output_batch_axis=output_axis,
        values=values,
    )


def test_the_registry_has_the_recurrent_entries():
    names = {e.cls.__name__ for e in RECURRENT}
    assert {"LSTM", "SimpleRecurrent", "AttentionRecurrent", "SequenceGenerator"} <= names


@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    example=st.sampled_from(RECURRENT),
    kind=st.sampled_from(BAD_INPUTS),
    which=st.integers(min_value=0, max_value=3),
)
def test_a_bad_input_is_a_named_error_or_a_documented_result(example, kind, which):
    # shapes only (values need a compiled scan per call); the slow test compares values
    _check(example, kind, which, values=False)


@pytest.mark.slow
@pytest.mark.parametrize("example", RECURRENT, ids=lambda e: e.cls.__name__)
def test_every_bad_input_of_every_recurrent_brick(example):
    for kind in BAD_INPUTS:
        for which in range(4):
            _check(example, kind, which, values=True)
