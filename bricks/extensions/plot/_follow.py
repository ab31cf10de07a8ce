"""Serve the plots of a persisted training log, finished or still being written.

A second process (``python -m bricks.extensions.plot RUN_DIR``) follows the
JSON-lines log with a :class:`~bricks.log.LogFollower` on the server's own
thread: a page shows everything logged so far and extends as the training
process appends to the file. Iterations written again after a resume from
an earlier checkpoint replace the old ones on the page.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from typing import Any

from bricks.errors import PlotError
from bricks.extensions.plot._channels import (
    group_by_quantity,
    normalize_channels,
    numeric_channels,
    points_from_rows,
)
from bricks.extensions.plot._server import PlotServer
from bricks.log import LogFollower, read_log

__all__ = ["find_log", "serve_log", "default_channels"]

LOG_FILE = "log.jsonl"


def find_log(run: str | os.PathLike) -> str:
    """The log file of ``run``: itself, ``RUN_DIR/log.jsonl``, or the only ``*.jsonl`` there."""
    run = os.fspath(run)
    if os.path.isfile(run):
        return run
    if not os.path.isdir(run):
        raise PlotError(f"no run directory or log file at {run!r}")
    path = os.path.join(run, LOG_FILE)
    if os.path.exists(path):
        return path
    candidates = sorted(glob.glob(os.path.join(run, "*.jsonl")))
    if len(candidates) == 1:
        return candidates[0]
    raise PlotError(
        f"cannot tell which training log to plot in {run!r}: expected {LOG_FILE!r}"
        + (
            f", found {', '.join(os.path.basename(c) for c in candidates)}"
            if candidates
            else ", found no *.jsonl file"
        )
        + "; pass the log file itself"
    )


def default_channels(path: str) -> list[list[str]]:
    """Every numeric record of the log, one figure per quantity (train/valid together)."""
    return group_by_quantity(numeric_channels(read_log(path).items()))


def default_document_name(run: str | os.PathLike) -> str:
    """A URL-safe name for the run's page: the run directory's name."""
    run = os.path.abspath(os.fspath(run))
    base = os.path.basename(os.path.dirname(run) if os.path.isfile(run) else run)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", base).strip("_") or "plots"


def serve_log(
    run: str | os.PathLike,
    channels: Sequence[Sequence[str] | str] | None = None,
    document_name: str | None = None,
    announce: bool = True,
    **server_options: Any,
) -> PlotServer:
    """Start a :class:`PlotServer` that follows the log of ``run``; returns it started.

    Args:
        run: a run directory (holding ``log.jsonl``) or a log file.
        channels: channel groups; default: every numeric record of the log
            so far, one figure per quantity.
        document_name: the page's URL path; default the run directory's name.
        announce: print the URL.
        **server_options: ``port``, ``address``, ``allow_remote`` ... of
            :class:`PlotServer`.
    """
    path = find_log(run)
    if channels is None:
        channels = default_channels(path)
        if not channels:
            raise PlotError(
                f"the training log {path!r} has no numeric records yet; "
                "pass the channels to plot (e.g. --channels train_cost,valid_cost)"
            )
    groups = normalize_channels(channels)
    names = [c for group in groups for c in group]
    server = PlotServer(document_name or default_document_name(run), groups, **server_options)
    follower = LogFollower(path)
    server.add_poller(lambda: points_from_rows(follower.poll(), names))
    server.start(announce=announce)
    return server
