"""The training log: a status plus one row of records per iteration (Blocks' TrainingLog).

Rows are keyed by ``iterations_done`` when the record was made: row 0 holds
what ``before_training`` extensions wrote, row 10 what was written after the
10th batch (and, at an epoch end, after that epoch). A row is a dict of
``record name -> value``; values should be JSON-able (numbers, strings,
lists) and are converted on the way in when they are numpy or jax scalars.

With ``path=`` the log is also an **append-only JSON-lines file** that other
processes may follow live (:func:`bricks.log.read_log`,
:class:`bricks.log.LogFollower`). Each line is one complete JSON object:
``{"iteration": 10, "records": {"train_cost": 0.5}}`` for records (an
iteration may appear on several lines; later lines add to and override
earlier ones) or ``{"status": {...}}`` for a status snapshot.

>>> log = TrainingLog()
>>> log.current_row["train_cost"] = 0.5
>>> log.status["iterations_done"] += 1
>>> log.current_row["train_cost"] = 0.25
>>> log[0]["train_cost"], log.previous_row["train_cost"], log.last_row["train_cost"]
(0.5, 0.5, 0.25)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from bricks.errors import LogError

__all__ = ["TrainingLog", "to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """Turn numpy / jax scalars and arrays into plain Python numbers and lists."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "__array__") or isinstance(value, np.generic):
        arr = np.asarray(value)
        return arr.item() if arr.ndim == 0 else arr.tolist()
    return str(value)


def _default_status() -> dict[str, Any]:
    return {
        "iterations_done": 0,
        "epochs_done": 0,
        "epoch_ends": [],
        "training_started": False,
        "epoch_started": False,
        "received_first_batch": False,
        "resumed_from": None,
        "epoch_interrupt_received": False,
        "batch_interrupt_received": False,
        "training_finish_requested": False,
        "finished_cleanly": False,
    }


class LogRow(dict):
    """One row of the log; writes through to the log's pending file lines."""

    def __init__(self, log: TrainingLog, iteration: int) -> None:
        super().__init__()
        self._log = log
        self._iteration = iteration

    def __setitem__(self, key: str, value: Any) -> None:
        value = to_jsonable(value)
        super().__setitem__(key, value)
        self._log._pending.setdefault(self._iteration, {})[key] = value

    def update(self, other: Any = (), **kwargs: Any) -> None:  # type: ignore[override]
        for k, v in dict(other, **kwargs).items():
            self[k] = v


class TrainingLog:
    """Status and per-iteration records of a training run.

    Args:
        path: optional JSON-lines file to append rows and status to; made if
            missing, appended to when resuming.

    Attributes:
        status: ``iterations_done``, ``epochs_done``, ``epoch_ends`` (list of
            iterations at which epochs ended), ``training_started``,
            ``epoch_started``, ``received_first_batch``, ``resumed_from``,
            ``epoch_interrupt_received``, ``batch_interrupt_received``,
            ``training_finish_requested``, ``finished_cleanly``.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.status: dict[str, Any] = _default_status()
        self._rows: dict[int, LogRow] = {}
        self._pending: dict[int, dict[str, Any]] = {}
        self.path = None if path is None else os.fspath(path)
        self._file = None

    # -- rows -----------------------------------------------------------------
    def __getitem__(self, iteration: int) -> LogRow:
        iteration = int(iteration)
        if iteration < 0:
            raise LogError(f"log rows are numbered from 0, asked for row {iteration}")
        row = self._rows.get(iteration)
        if row is None:
            row = self._rows[iteration] = LogRow(self, iteration)
        return row

    def __contains__(self, iteration: int) -> bool:
        return int(iteration) in self._rows

    def __iter__(self) -> Iterator[tuple[int, LogRow]]:
        """Iterate ``(iteration, row)`` over rows with records, in order."""
        for i in sorted(self._rows):
            if self._rows[i]:
                yield i, self._rows[i]

    def __len__(self) -> int:
        return sum(1 for row in self._rows.values() if row)

    @property
    def current_row(self) -> LogRow:
        """The row of the current iteration (``status['iterations_done']``)."""
        return self[self.status["iterations_done"]]

    @property
    def previous_row(self) -> LogRow:
        """The row before the current one."""
        return self[self.status["iterations_done"] - 1]

    @property
    def last_row(self) -> LogRow:
        """The latest row that holds any record (the current row if none)."""
        for i in sorted(self._rows, reverse=True):
            if self._rows[i]:
                return self._rows[i]
        return self.current_row

    def last_value(self, record: str, default: Any = None) -> Any:
        """The value of ``record`` in the latest row that has it."""
        for i in sorted(self._rows, reverse=True):
            if record in self._rows[i]:
                return self._rows[i][record]
        return default

    def records(self, name: str) -> list[tuple[int, Any]]:
        """All ``(iteration, value)`` pairs of one record name, in order."""
        return [(i, row[name]) for i, row in self if name in row]

    # -- persistence ----------------------------------------------------------
    def flush(self, with_status: bool = False) -> None:
        """Append pending records (and optionally the status) to the file; flush it."""
        if self.path is None:
            self._pending.clear()
            return
        if not self._pending and not with_status:
            return
        try:
            if self._file is None:
                directory = os.path.dirname(self.path)
                if directory:
                    os.makedirs(directory, exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            lines = [
                json.dumps({"iteration": i, "records": records})
                for i, records in sorted(self._pending.items())
            ]
            if with_status:
                lines.append(json.dumps({"status": to_jsonable(self.status)}))
            self._file.write("".join(line + "\n" for line in lines))
            self._file.flush()
        except OSError as error:
            raise LogError(
                f"cannot append to the training log file {self.path!r}: {error}"
            ) from error
        self._pending.clear()

    def close(self) -> None:
        """Flush and close the file (reopened on the next flush)."""
        self.flush(with_status=True)
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- checkpointing --------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """A JSON-able snapshot: the status and every row."""
        return {
            "status": to_jsonable(self.status),
            "rows": {str(i): dict(row) for i, row in self._rows.items() if row},
        }

    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint stores: :meth:`get_state`, or, for a log with a
        file, only where the file stands (its size grows with the run, the
        checkpoint's does not).

        Pending records and the status are appended and fsynced first, so the
        file holds every row up to ``offset``; :meth:`set_state` reads them
        back and truncates the file to that point.
        """
        if self.path is None:
            return self.get_state()
        self.flush(with_status=True)
        assert self._file is not None
        os.fsync(self._file.fileno())
        status = to_jsonable(self.status)
        epoch_ends = status.pop("epoch_ends")
        return {
            "status": status,
            "epoch_ends_count": len(epoch_ends),
            "file": {"path": os.path.abspath(self.path), "offset": self._file.tell()},
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`get_state` or :meth:`checkpoint_state` snapshot.

        For a checkpoint state the rows are read from the log file up to the
        saved offset (this log's file, or the saved path when this log has
        none), and this log's file is truncated back to that offset when it
        is that same file: what was logged after the checkpoint is gone, as
        it is from the training state.

        Raises:
            LogError: the log file is missing or shorter than the checkpoint
                says, or does not end a line at the saved offset.
        """
        status = _default_status()
        status.update(state["status"])
        self._rows = {}
        self._pending.clear()
        if "file" in state:
            info = state["file"]
            saved_path, offset = str(info["path"]), int(info["offset"])
            source = saved_path  # a moved run directory: its log is where this log writes
            if not os.path.exists(saved_path) and self.path is not None:
                source = self.path
            rows, last_status = _read_file_rows(source, offset)
            count = int(state.get("epoch_ends_count", 0))
            ends = list((last_status or {}).get("epoch_ends", []))[:count]
            if len(ends) != count:
                raise LogError(
                    f"the training log {source!r} holds {len(ends)} epoch ends before byte "
                    f"{offset}, the checkpoint says {count}; is it the log of this run?"
                )
            status["epoch_ends"] = ends
            if self.path is not None and os.path.realpath(self.path) == os.path.realpath(source):
                if self._file is not None:
                    self._file.close()
                    self._file = None
                if os.path.getsize(source) > offset:
                    os.truncate(source, offset)
            for iteration, records in rows.items():
                dict.update(self[iteration], records)
        else:
            for key, records in state.get("rows", {}).items():
                dict.update(self[int(key)], records)
        self.status = status

    def __repr__(self) -> str:
        return (
            f"TrainingLog(iterations_done={self.status['iterations_done']}, "
            f"epochs_done={self.status['epochs_done']}, rows={len(self)}, path={self.path!r})"
        )


def _read_file_rows(
    path: str, offset: int
) -> tuple[dict[int, dict[str, Any]], dict[str, Any] | None]:
    """Rows (merged by iteration) and the last status of the first ``offset``
    bytes of a log file."""
    try:
        with open(path, "rb") as f:
            data = f.read(offset)
    except OSError as error:
        raise LogError(
            f"the checkpoint's log rows are in {path!r}, which cannot be read ({error})"
        ) from error
    if len(data) < offset or (offset and not data.endswith(b"\n")):
        raise LogError(
            f"the training log {path!r} is {len(data)} bytes where the checkpoint expects at "
            f"least {offset} ending a line: it was truncated or replaced since"
        )
    rows: dict[int, dict[str, Any]] = {}
    status = None
    for number, line in enumerate(data.splitlines(), 1):
        try:
            entry = json.loads(line)
        except ValueError as error:
            raise LogError(f"{path!r} line {number} is not JSON ({error})") from None
        if "status" in entry:
            status = entry["status"]
        elif "iteration" in entry:
            rows.setdefault(int(entry["iteration"]), {}).update(entry.get("records", {}))
    return rows, status
