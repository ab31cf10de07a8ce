"""What reproduces a run (provenance) and what changed since its checkpoint (drift).

Each accepted start of a run appends one entry to ``provenance.json``: the
config file's source text and sha256, the overrides, the command line, the
host, the start time, Python, the installed package versions, jax/jaxlib,
the XLA flags and devices, and the git commit of the config's repository
(with whether its work tree had changes).
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["provenance", "config_diff", "format_diff", "version_changes", "git_state"]


def git_state(directory: str | os.PathLike) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git repository holding ``directory``, or ``None``."""
    try:
        commit = subprocess.run(
            ["git", "-C", os.fspath(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", os.fspath(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def _packages() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[str(name)] = str(dist.version)
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


def _jax_info() -> dict[str, Any]:
    info: dict[str, Any] = {"xla_flags": os.environ.get("XLA_FLAGS", "")}
    info["jax_platforms"] = os.environ.get("JAX_PLATFORMS", "")
    try:
        import jax

        info["jax"] = jax.__version__
        info["jaxlib"] = importlib.metadata.version("jaxlib")
        info["backend"] = jax.default_backend()
        info["devices"] = [str(d) for d in jax.devices()]
    except Exception as error:  # provenance is recorded even when jax is broken
        info["error"] = f"{type(error).__name__}: {error}"
    return info


def provenance(
    config_file: str | os.PathLike,
    overrides: Sequence[str],
    config: Mapping[str, Any],
    resumed_from: str | None = None,
) -> dict[str, Any]:
    """One provenance entry for a start of the run (see the module docstring)."""
    path = Path(config_file)
    source = path.read_bytes()
    return {
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "command": [sys.executable, *sys.argv],
        "cwd": os.getcwd(),
        "config_file": os.fspath(path.resolve()),
        "config_sha256": hashlib.sha256(source).hexdigest(),
        "config_source": source.decode("utf8", errors="replace"),
        "overrides": list(overrides),
        "resolved_config": dict(config),
        "resumed_from": resumed_from,
        "git": git_state(path.resolve().parent),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "jax": _jax_info(),
        "packages": _packages(),
    }


def config_diff(saved: Mapping[str, Any], now: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (saved value, new value)}`` for every key whose value differs.

    A key only in ``now`` (added to the config file since) is no change: it
    takes its default, which the saved run did not have a value for.
    """
    missing = object()
    changed = {}
    for key in sorted(set(saved) | set(now)):
        old, new = saved.get(key, missing), now.get(key, missing)
        if old is missing:
            continue
        if new is missing or old != new or type(old) is not type(new):
            changed[key] = (old, None if new is missing else new)
    return changed


def format_diff(diff: Mapping[str, tuple[Any, Any]]) -> str:
    """``"lr: 0.1 -> 0.2, batch_size: 20 -> 10"``."""
    return ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in diff.items())


def version_changes(saved: Mapping[str, Any], now: Mapping[str, Any]) -> dict[str, tuple]:
    """Library versions that differ between a checkpoint's and this process's."""
    return {
        name: (saved[name], now.get(name))
        for name in sorted(saved)
        if isinstance(saved.get(name), str) and saved[name] != now.get(name)
    }
