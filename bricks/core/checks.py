"""Trace-time checks of what reaches an application (DESIGN decision 10).

Every application whose input sizes follow from its brick's configuration
checks them here, before any JAX operation sees the input, and raises a
:class:`~bricks.errors.ShapeError` (or :class:`~bricks.errors.InputTypeError`)
that names the brick path, the input, what was expected — with the setting
that decides it (``"input_dim=784"``) — and what came. Shapes are static
under ``jit``, so the checks cost nothing at run time.

Sizes that are not plain integers (the symbolic batch of a
:class:`~bricks.graph.ComputationGraph` traced with ``None`` dimensions) are
unknown and pass every check: only a size known to differ is an error.

>>> import jax.numpy as jnp
>>> from bricks.core import Linear
>>> lin = Linear(784, 10, name="lin")
>>> check_size(lin, "input_", jnp.ones((5, 783)), -1, 784, "input_dim=784")
Traceback (most recent call last):
...
bricks.errors.ShapeError: Linear /lin: input 'input_' has shape (5, 783): 783 features on its
last axis, expected input_dim=784
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from bricks.errors import InputTypeError, ShapeError

__all__ = [
    "describe",
    "is_non_numeric",
    "as_input",
    "check_rank",
    "check_size",
    "check_same_size",
    "check_same_shape",
    "check_integer",
    "same_sizes",
]

#: numpy dtype kinds that no brick computes with: objects, bytes, strings, records
_NON_NUMERIC_KINDS = "OSUV"


def describe(brick: Any) -> str:
    """``"Linear /mlp/linear_0"``: the class and path of a brick, for messages."""
    return f"{type(brick).__name__} {brick.path}"


def _known(size: Any) -> bool:
    """Whether ``size`` is a plain integer (not a symbolic dimension)."""
    return isinstance(size, (int, np.integer))


def _differ(a: Any, b: Any) -> bool:
    return _known(a) and _known(b) and int(a) != int(b)


def same_sizes(a: Sequence[Any], b: Sequence[Any]) -> bool:
    """Whether two shapes may be the same: equal ranks, and no size known to differ
    (a symbolic size matches anything)."""
    return len(a) == len(b) and not any(_differ(x, y) for x, y in zip(a, b, strict=True))


def _shape(value: Any) -> tuple:
    return tuple(jnp.shape(value))


def is_non_numeric(value: Any) -> bool:
    """Whether ``value`` is a string, bytes, or an array of strings or objects."""
    if isinstance(value, (str, bytes)):
        return True
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return False
    try:
        return np.dtype(dtype).kind in _NON_NUMERIC_KINDS
    except TypeError:  # an extended JAX dtype (PRNG keys) is not ours to judge
        return False


def as_input(brick: Any, name: str, value: Any) -> Any:
    """``value`` as an array, refusing strings and object arrays by name.

    Raises:
        InputTypeError: for strings, bytes, arrays of strings or objects, or
            anything else that is not an array of numbers.
    """
    if is_non_numeric(value):
        raise InputTypeError(
            f"{describe(brick)}: input {name!r} is {_what(value)}; it needs an array of numbers"
        )
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return value
    try:
        return jnp.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InputTypeError(
            f"{describe(brick)}: input {name!r} is {_what(value)}, which is not an array of "
            f"numbers ({exc})"
        ) from None


def _what(value: Any) -> str:
    if isinstance(value, (str, bytes)):
        return f"a {type(value).__name__} {value[:20]!r}"
    dtype = getattr(value, "dtype", None)
    if dtype is not None:
        return f"an array of dtype {dtype} and shape {_shape(value)}"
    return f"a {type(value).__name__}"


def check_rank(
    brick: Any,
    name: str,
    value: Any,
    rank: int | tuple[int, int | None],
    layout: str,
    hint: str = "",
) -> None:
    """Raise :class:`ShapeError` unless ``value`` has the rank ``layout`` describes.

    Args:
        rank: the rank, or ``(lowest, highest)`` (``highest`` ``None``: no limit).
        layout: the expected axes, e.g. ``"(time, batch, 16)"``.
        hint: a sentence appended to the message (how to fix it).
    """
    ndim = len(_shape(value))
    low, high = (rank, rank) if isinstance(rank, int) else rank
    if ndim < low or (high is not None and ndim > high):
        if high == low:
            want = f"rank {low}"
        elif high is None:
            want = f"rank >= {low}"
        else:
            want = f"rank {low} to {high}"
        raise ShapeError(
            f"{describe(brick)}: input {name!r} has shape {_shape(value)} (rank {ndim}), "
            f"expected {layout} ({want}){'; ' + hint if hint else ''}"
        )


def check_size(
    brick: Any,
    name: str,
    value: Any,
    axis: int,
    expected: Any,
    setting: str,
    what: str = "features",
) -> None:
    """Raise :class:`ShapeError` when axis ``axis`` of ``value`` is not ``expected``.

    Args:
        expected: the size (``None``: unknown, nothing is checked).
        setting: the configuration that decides it, e.g. ``"input_dim=784"``.
        what: what the axis holds, for the message (``"features"``, ``"channels"``).
    """
    shape = _shape(value)
    if expected is None or not -len(shape) <= axis < len(shape):
        return
    if _differ(shape[axis], expected):
        where = "its last axis" if axis == -1 else f"axis {axis}"
        raise ShapeError(
            f"{describe(brick)}: input {name!r} has shape {shape}: {shape[axis]} {what} on "
            f"{where}, expected {setting}"
        )


def check_same_size(
    brick: Any, entries: Sequence[tuple[str, Any, int]], what: str = "batch"
) -> None:
    """Raise :class:`ShapeError` unless the ``(name, value, axis)`` entries agree
    on the size of their axis (e.g. every input's batch axis); ``None`` values
    are skipped."""
    first: tuple[str, Any, int] | None = None
    for name, value, axis in entries:
        if value is None:
            continue
        shape = _shape(value)
        if not -len(shape) <= axis < len(shape):
            continue
        if first is None:
            first = (name, shape, axis)
            continue
        name0, shape0, axis0 = first
        if _differ(shape0[axis0], shape[axis]):
            raise ShapeError(
                f"{describe(brick)}: inputs disagree on the {what} size: {name0!r} has shape "
                f"{shape0} ({what} {shape0[axis0]} on axis {axis0}), {name!r} has shape {shape} "
                f"({what} {shape[axis]} on axis {axis}); nothing is broadcast"
            )


def check_same_shape(brick: Any, first: tuple[str, Any], second: tuple[str, Any]) -> None:
    """Raise :class:`ShapeError` unless two inputs have the same shape (no broadcasting)."""
    (name_a, a), (name_b, b) = first, second
    shape_a, shape_b = _shape(a), _shape(b)
    if not same_sizes(shape_a, shape_b):
        raise ShapeError(
            f"{describe(brick)}: {name_a!r} has shape {shape_a} but {name_b!r} has shape "
            f"{shape_b}; they must match (nothing is broadcast)"
        )


def check_integer(
    brick: Any, name: str, value: Any, hint: str = "", what: str = "values"
) -> None:
    """Raise :class:`InputTypeError` unless ``value`` holds integers (indices, symbols)."""
    dtype = jnp.result_type(value)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise InputTypeError(
            f"{describe(brick)}: input {name!r} must hold integer {what}, got dtype {dtype} "
            f"(shape {_shape(value)}){'; ' + hint if hint else ''}"
        )
