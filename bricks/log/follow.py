"""Reading a persisted training log, whole or live, from another process.

>>> import os, tempfile
>>> from bricks.log import TrainingLog
>>> path = os.path.join(tempfile.mkdtemp(), "log.jsonl")
>>> log = TrainingLog(path)
>>> follower = LogFollower(path)
>>> follower.poll()
[]
>>> log[1]["train_cost"] = 0.5
>>> log.flush()
>>> follower.poll()
[(1, {'train_cost': 0.5})]
>>> read_log(path)
{1: {'train_cost': 0.5}}
"""

from __future__ import annotations

import json
import os
from typing import Any

from bricks.errors import LogError

__all__ = ["read_log", "read_status", "LogFollower"]


def _parse(line: str, path: str, lineno: int) -> dict[str, Any]:
    try:
        return json.loads(line)
    except json.JSONDecodeError as error:
        raise LogError(f"line {lineno} of training log {path!r} is not JSON: {error}") from error


def read_log(path: str | os.PathLike) -> dict[int, dict[str, Any]]:
    """Read a JSON-lines training log into ``{iteration: {record: value}}``.

    A trailing line still being written (no newline yet) is ignored.
    """
    path = os.fspath(path)
    rows: dict[int, dict[str, Any]] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.endswith("\n") or not line.strip():
                    continue
                obj = _parse(line, path, lineno)
                if "iteration" in obj:
                    rows.setdefault(int(obj["iteration"]), {}).update(obj.get("records", {}))
    except FileNotFoundError as error:
        raise LogError(f"no training log at {path!r}") from error
    return dict(sorted(rows.items()))


def read_status(path: str | os.PathLike) -> dict[str, Any]:
    """The latest status snapshot written to a JSON-lines training log ({} if none)."""
    status: dict[str, Any] = {}
    with open(os.fspath(path), encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.endswith("\n") and '"status"' in line:
                obj = _parse(line, os.fspath(path), lineno)
                status = obj.get("status", status)
    return status


class LogFollower:
    """Incrementally follow a training log file that another process appends to.

    :meth:`poll` returns the ``(iteration, records)`` lines completed since
    the previous poll (an iteration may come back in several polls), and
    keeps the latest status in :attr:`status`. A missing file reads as empty.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._offset = 0
        self.status: dict[str, Any] = {}

    def poll(self) -> list[tuple[int, dict[str, Any]]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        complete = data[: end + 1]
        self._offset += len(complete)
        out = []
        for line in complete.decode("utf-8").splitlines():
            if not line.strip():
                continue
            obj = _parse(line, self.path, 0)
            if "iteration" in obj:
                out.append((int(obj["iteration"]), dict(obj.get("records", {}))))
            elif "status" in obj:
                self.status = obj["status"]
        return out
