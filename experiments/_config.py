"""A run's config and directory: import a config file, apply ``--set``/``--seed``,
make a new run directory or find the newest one (for ``--resume``)."""

from __future__ import annotations

import datetime
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from bricks.errors import ExperimentError, OverrideError

from ._overrides import apply_overrides, check_plain

__all__ = ["CONFIG_FILE", "load_config_module", "resolve_config", "new_run_dir", "newest_run_dir"]

#: the resolved config, in every run directory
CONFIG_FILE = "config.json"


def load_config_module(path: str | os.PathLike) -> ModuleType:
    """Import the config file at ``path`` (this runs its code) and check its exports."""
    path = Path(path)
    if not path.is_file():
        raise ExperimentError(f"config file {os.fspath(path)!r} does not exist")
    name = f"_bricks_experiment_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ExperimentError(f"cannot import config file {os.fspath(path)!r} (not a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        text = (error.text or "").rstrip()
        raise ExperimentError(
            f"config file {error.filename or os.fspath(path)!r}, line {error.lineno}: "
            f"{error.msg}" + (f"\n    {text.strip()}" if text else "")
        ) from None
    for export in ("get_config", "build"):
        if not callable(getattr(module, export, None)):
            raise ExperimentError(
                f"config file {os.fspath(path)!r} must define {export}(); "
                "see docs/experiments.md for the contract"
            )
    return module


def resolve_config(
    base: dict[str, Any], overrides: Sequence[str] = (), seed: int | None = None
) -> dict[str, Any]:
    """``base`` with ``--set`` overrides and ``--seed`` applied, checked to be plain data."""
    if not isinstance(base, dict):
        raise ExperimentError(f"get_config() must return a dict, found {type(base).__name__}")
    check_plain(base, "get_config()")
    config = apply_overrides(base, overrides)
    if seed is not None:
        if "seed" not in config:
            raise OverrideError("--seed given but the config has no 'seed' key to set")
        config["seed"] = int(seed)
    return config


def new_run_dir(config_name: str, root: str | os.PathLike = "runs") -> Path:
    """A new, empty ``root/<config_name>-<YYYYmmdd-HHMMSS>`` directory (suffixed if taken)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{config_name}-{stamp}"
    candidate, n = base, 1
    while True:
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            n += 1
            candidate = Path(f"{base}-{n}")


def newest_run_dir(config_name: str, root: str | os.PathLike = "runs") -> Path:
    """The most recently modified ``root/<config_name>-*`` directory that holds a run."""
    runs = [
        p for p in Path(root).glob(f"{config_name}-*") if p.is_dir() and (p / CONFIG_FILE).is_file()
    ]
    if not runs:
        raise ExperimentError(
            f"--resume: no run of {config_name!r} under {os.fspath(root)!r}; pass --output-dir DIR"
        )
    return max(runs, key=lambda p: (p / CONFIG_FILE).stat().st_mtime)
