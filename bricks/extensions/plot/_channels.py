"""Channel groups and the points a training log holds for them.

A *channel* is a record name of the training log (``"train_cost"``); a
*group* is the list of channels drawn in one figure. A *point* is
``(channel, iteration, value)``; only numbers become points (lists, strings
and ``None`` in the log are skipped; infinities are drawn as gaps, like NaN).

>>> normalize_channels([["train_cost", "valid_cost"], "valid_error_rate"])
[['train_cost', 'valid_cost'], ['valid_error_rate']]
>>> group_by_quantity(["train_cost", "valid_cost", "valid_error_rate", "lr"])
[['train_cost', 'valid_cost'], ['valid_error_rate'], ['lr']]
>>> points_from_rows([(0, {"train_cost": 2.0}), (5, {"train_cost": 1.5, "note": "x"})],
...                  ["train_cost", "note"])
[('train_cost', 0, 2.0), ('train_cost', 5, 1.5)]
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bricks.errors import PlotError

__all__ = [
    "normalize_channels",
    "group_by_quantity",
    "numeric_channels",
    "points_from_rows",
    "as_number",
    "check_document_name",
]

Point = tuple[str, int, float]

_PREFIXES = ("train_", "valid_", "validation_", "test_", "dev_")
_DOCUMENT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def check_document_name(name: str) -> str:
    """Return ``name`` if it can be the URL path of a Bokeh document, else raise.

    >>> check_document_name("mnist")
    'mnist'
    """
    if not isinstance(name, str) or not _DOCUMENT_NAME.match(name):
        suggestion = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "plots"
        raise PlotError(
            f"the plot document name becomes the URL path /<name>, so it may hold only letters, "
            f"digits, '_', '.' and '-'; got {name!r} (try {suggestion!r})"
        )
    return name


def normalize_channels(channels: Sequence[Sequence[str] | str]) -> list[list[str]]:
    """Blocks' ``channels``: a list of groups, each a list of record names.

    A bare string stands for a group of one. Empty groups, non-strings and a
    channel named twice are errors.
    """
    if isinstance(channels, str) or not isinstance(channels, Sequence) or not channels:
        raise PlotError(
            "channels must be a non-empty list of channel groups, e.g. "
            f"[['train_cost', 'valid_cost'], ['valid_error_rate']]; got {channels!r}"
        )
    groups: list[list[str]] = []
    seen: set[str] = set()
    for index, group in enumerate(channels):
        names = [group] if isinstance(group, str) else list(group)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise PlotError(
                f"channel group {index} must be a non-empty list of record names, got {group!r}"
            )
        for name in names:
            if name in seen:
                raise PlotError(f"channel {name!r} is named twice in channels={channels!r}")
            seen.add(name)
        groups.append(names)
    return groups


def _quantity(name: str) -> str:
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def group_by_quantity(names: Iterable[str]) -> list[list[str]]:
    """One group per quantity: ``train_cost`` and ``valid_cost`` share a figure."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(_quantity(name), []).append(name)
    return list(groups.values())


def as_number(value: Any) -> float | None:
    """The value as a float to draw, or ``None`` when it is not a number."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        value = float(value)
        return value if math.isfinite(value) else math.nan
    return None


def numeric_channels(rows: Iterable[tuple[int, Mapping[str, Any]]]) -> list[str]:
    """Names of the records that hold a number in some row, in order of appearance."""
    names: dict[str, None] = {}
    for _, row in rows:
        for name, value in row.items():
            if name not in names and not isinstance(value, bool) and as_number(value) is not None:
                names[name] = None
    return list(names)


def points_from_rows(
    rows: Iterable[tuple[int, Mapping[str, Any]]], channels: Sequence[str]
) -> list[Point]:
    """The ``(channel, iteration, value)`` points of ``rows`` for ``channels``."""
    points: list[Point] = []
    for iteration, row in rows:
        for channel in channels:
            if channel in row:
                y = as_number(row[channel])
                if y is not None:
                    points.append((channel, int(iteration), y))
    return points
