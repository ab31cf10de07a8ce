"""Shape checks of recurrent calls (DESIGN decision 10): time-major sequences,
``(time, batch)`` masks, ``(batch, dim)`` states and single steps, each a
:class:`~bricks.errors.SequenceShapeError` naming the brick, the input and the
setting that decides its size."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from bricks.core.checks import check_rank, check_same_size, check_size
from bricks.errors import SequenceShapeError, ShapeError

__all__ = ["dim_setting"]


@contextlib.contextmanager
def _as_sequence_shape_error() -> Iterator[None]:
    """Raise the shape errors of a recurrent call as :class:`SequenceShapeError`
    (both a ``ShapeError`` and a ``RecurrentError``)."""
    try:
        yield
    except SequenceShapeError:
        raise
    except ShapeError as exc:
        raise SequenceShapeError(str(exc)) from None


def _known_dim(brick: Any, name: str) -> int | None:
    """``brick.get_dim(name)`` when it is a plain integer, else ``None`` (unknown)."""
    try:
        dim = brick.get_dim(name)
    except Exception:  # noqa: BLE001 - a brick need not know every dimension
        return None
    return int(dim) if isinstance(dim, int) and not isinstance(dim, bool) else None


def dim_setting(brick: Any, name: str, dim: int) -> str:
    """The configuration that decides the dimension ``name`` (``"4 * dim = 16
    (dim=4)"``), from the brick's ``dim_setting`` method where it has one."""
    describe_dim = getattr(brick, "dim_setting", None)
    text = describe_dim(name) if callable(describe_dim) else None
    return text or f"{type(brick).__name__}.get_dim({name!r})={dim}"


def _check_sequences(
    brick: Any, named: dict[str, Any], names: Sequence[str], transformed: set[str], mask: Any
) -> None:
    """Time-major sequences ``(time, batch, get_dim(name))`` (``(time, batch)`` for a
    dimension 0) and a ``(time, batch)`` mask; a sequence with an input transform
    only needs ``(time, batch, ...)``."""
    hint = (
        "sequences are time-major (time, batch, features): is the batch axis missing? For one "
        "step on (batch, features) inputs pass iterate=False"
    )
    for name in names:
        value = named.get(name)
        if value is None:
            continue
        dim = None if name in transformed else _known_dim(brick, name)
        if dim is None:
            check_rank(brick, name, value, (2, None), "time-major (time, batch, ...)", hint)
        elif dim == 0:
            check_rank(brick, name, value, 2, "time-major (time, batch)", hint)
        else:
            check_rank(brick, name, value, 3, f"time-major (time, batch, {dim})", hint)
            check_size(brick, name, value, -1, dim, dim_setting(brick, name, dim))
    if mask is not None:
        check_rank(brick, "mask", mask, 2, "(time, batch)", "a mask is 0 after a sequence's end")


def _check_states(
    brick: Any, named: dict[str, Any], states: Sequence[str], batch: list[tuple[str, Any, int]]
) -> None:
    """States ``(batch, get_dim(state))`` whose batch agrees with ``batch``'s entries."""
    entries = list(batch)
    for name in states:
        value = named.get(name)
        if value is None:
            continue
        dim = _known_dim(brick, name)
        if dim:  # 0 or unknown: the state's shape is the brick's business
            check_rank(brick, name, value, 2, f"(batch, {dim})")
            check_size(brick, name, value, -1, dim, dim_setting(brick, name, dim))
        else:
            check_rank(brick, name, value, (1, None), "(batch, ...)")
        entries.append((name, value, 0))
    check_same_size(brick, entries)


def _check_step(
    brick: Any, named: dict[str, Any], sequences: Sequence[str], states: Sequence[str], mask: Any
) -> None:
    """One step (``iterate=False``): sequences ``(batch, get_dim(name))``, states
    ``(batch, dim)`` and a ``(batch,)`` mask, all of one batch size."""
    hint = "iterate=False runs one step on (batch, features) inputs"
    entries = []
    for name in sequences:
        value = named.get(name)
        if value is None or name == "mask":
            continue
        dim = _known_dim(brick, name)
        if dim is None:
            check_rank(brick, name, value, (1, None), "(batch, ...)", hint)
        elif dim == 0:
            check_rank(brick, name, value, 1, "(batch,)", hint)
        else:
            check_rank(brick, name, value, 2, f"(batch, {dim})", hint)
            check_size(brick, name, value, -1, dim, dim_setting(brick, name, dim))
        entries.append((name, value, 0))
    if mask is not None:
        check_rank(brick, "mask", mask, 1, "(batch,)", hint)
        entries.append(("mask", mask, 0))
    _check_states(brick, named, states, entries)
