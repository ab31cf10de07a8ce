"""Inspect checkpoints without a model: ``python -m bricks.checkpoint show PATH``.

``show PATH`` verifies a checkpoint (or the newest good one in a directory)
and lists its metadata, files, arrays and state; ``list DIR`` lists every
checkpoint of a directory with its verification result. ``PATH``/``DIR`` may
also be a run directory of ``python -m experiments.run``: its
``checkpoints/`` are used, and the run's status is printed first (a run
whose ``summary.json`` says ``running`` but whose lock nobody holds is
reported as died: killed, or out of memory). Nothing is
unpickled; a crafted file is reported as refused (exit code 2), a damaged
one as damaged (exit code 1).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from bricks.errors import CheckpointError, UnsafeCheckpointError

from ._format import _human, read_checkpoint, verify_checkpoint
from ._manager import DAMAGED_MARK, _list, find_checkpoint, lock_holder

RUN_CHECKPOINTS = "checkpoints"  # experiments.run's layout (read only, never imported)


def _resolve(path: str | Path, out: TextIO) -> Path:
    """``path``, or ``path/checkpoints`` for a run directory (whose status is printed)."""
    path = Path(path)
    inner = path / RUN_CHECKPOINTS
    if not inner.is_dir() or _list(path):
        return path
    summary = path / "summary.json"
    if summary.is_file():
        try:
            data = json.loads(summary.read_text(encoding="utf8"))
        except (OSError, ValueError) as error:
            print(f"run {path}: summary.json unreadable ({error})", file=out)
        else:
            print(f"run {path}: {_run_status(data, inner)}", file=out)
    return inner


def _run_status(summary: Any, checkpoints: Path) -> str:
    if not isinstance(summary, dict):
        return "summary.json holds no object"
    status = str(summary.get("status"))
    done = summary.get("iterations_done")
    if status != "running":
        return f"{status}" + (f" at iteration {done}" if done is not None else "")
    holder = lock_holder(checkpoints)
    if holder is not None:
        return f"running ({holder})"
    return (
        f"died: summary.json says running but its process (pid {summary.get('pid', '?')}) "
        "is gone and holds no lock (killed, out of memory?); resume it with --resume"
    )


def show(path: str | Path, out: TextIO = sys.stdout) -> None:
    """Print what the checkpoint at ``path`` holds (see the module docstring)."""
    chosen, skipped = find_checkpoint(_resolve(path, out))
    for problem in skipped:
        print(f"skipped damaged: {problem}", file=out)
    state, arrays, meta = read_checkpoint(chosen, verify=False)
    print(f"checkpoint {chosen}", file=out)
    created = meta.get("created")
    if isinstance(created, (int, float)):
        meta = dict(
            meta, created=datetime.datetime.fromtimestamp(created).isoformat(" ", "seconds")
        )
    for key in ("kind", "step", "iterations_done", "epochs_done", "created", "config_hash"):
        if key in meta:
            print(f"  {key}: {meta[key]}", file=out)
    if meta.get("metrics"):
        print(f"  metrics: {meta['metrics']}", file=out)
    if meta.get("versions"):
        print("  versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()), file=out)
    print("files:", file=out)
    for f in sorted(chosen.iterdir()):
        print(f"  {f.name:<16} {_human(f.stat().st_size):>10}", file=out)
    total = sum(int(np.asarray(v).nbytes) for v in arrays.values())
    print(f"arrays: {len(arrays)} ({_human(total)})", file=out)
    width = max((len(k) for k in arrays), default=0)
    for name, value in arrays.items():
        print(f"  {name:<{width}}  {value.dtype!s:<9} {tuple(value.shape)}", file=out)
    print("state:", file=out)
    for key, value in state.items():
        print(f"  {key}: {_summary(value)}", file=out)
    log = state.get("log")
    if isinstance(log, dict) and isinstance(log.get("status"), dict):
        status = log["status"]
        keys = ("iterations_done", "epochs_done", "epoch_started", "finished_cleanly")
        print("  log status: " + ", ".join(f"{k}={status.get(k)}" for k in keys), file=out)
    if isinstance(state.get("extensions"), dict):
        for name, ext_state in state["extensions"].items():
            print(f"  extension {name}: {_summary(ext_state, 100)}", file=out)


def _summary(value: Any, limit: int = 60) -> str:
    if isinstance(value, dict):
        text = "{" + ", ".join(map(str, value)) + "}"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def list_directory(path: str | Path, out: TextIO = sys.stdout) -> None:
    """Print every checkpoint of a directory with its verification result."""
    directory = _resolve(path, out)
    found = _list(directory)
    if not found:
        print(f"no complete checkpoint in {directory}", file=out)
    for ckpt in found:
        problems = verify_checkpoint(ckpt)
        print(
            f"{ckpt.name}  {'ok' if not problems else 'DAMAGED: ' + '; '.join(problems)}", file=out
        )
    if directory.is_dir():
        for aside in sorted(p for p in directory.iterdir() if p.name.startswith(DAMAGED_MARK)):
            print(f"{aside.name}  (moved aside as damaged)", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bricks.checkpoint", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("show", help="what a checkpoint holds").add_argument("path")
    sub.add_parser("list", help="every checkpoint of a directory").add_argument("path")
    args = parser.parse_args(argv)
    try:
        if args.command == "show":
            show(args.path)
        else:
            list_directory(args.path)
    except UnsafeCheckpointError as error:
        print(f"refused: {error}", file=sys.stderr)
        return 2
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
