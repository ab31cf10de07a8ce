"""The training log (:class:`TrainingLog`) and readers for its JSON-lines file."""

from bricks.log.follow import LogFollower, read_log, read_status
from bricks.log.training_log import LogRow, TrainingLog, to_jsonable

__all__ = ["TrainingLog", "LogRow", "to_jsonable", "read_log", "read_status", "LogFollower"]
