"""Predicates for :meth:`SimpleExtension.add_condition` (Blocks' ``blocks.extensions.predicates``).

>>> from bricks.log import TrainingLog
>>> log = TrainingLog()
>>> log.current_row["valid_cost_best_so_far"] = True
>>> OnLogRecord("valid_cost_best_so_far")(log), OnLogRecord("other")(log)
(True, False)
"""

from __future__ import annotations

from typing import Any

__all__ = ["OnLogRecord"]


class OnLogRecord:
    """True when the log's current row has a true record ``record_name``.

    Args:
        record_name: the record to look for (e.g. the notification
            :class:`~bricks.extensions.TrackTheBest` writes).
    """

    def __init__(self, record_name: str) -> None:
        self.record_name = record_name

    def __call__(self, log: Any) -> bool:
        return bool(log.current_row.get(self.record_name, False))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.record_name == self.record_name  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.record_name))

    def __repr__(self) -> str:
        return f"OnLogRecord({self.record_name!r})"
