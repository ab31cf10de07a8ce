"""JAX's persistent compilation cache for runs: on by default, in a user cache directory.

A second run of the same config (or a resumed one) loads its compiled steps
from disk instead of compiling them again. The directory is, in order:
``--compile-cache DIR``; the config's ``compile_cache`` value (a path, or
``False`` for none); ``$JAX_COMPILATION_CACHE_DIR`` when set (JAX's own);
``$XDG_CACHE_HOME/bricks/jax-compile`` (``~/.cache/...``).
``--no-compile-cache`` turns it off.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bricks.errors import ExperimentError

__all__ = ["default_cache_dir", "configure_compile_cache", "MIN_COMPILE_TIME_S"]

#: Compilations shorter than this are not written (JAX's default is 1 s; the
#: runner's small steps and evaluation functions take a fraction of that).
MIN_COMPILE_TIME_S = 0.2


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/bricks/jax-compile``, by default ``~/.cache/bricks/jax-compile``."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "bricks" / "jax-compile"


def _choose(flag_dir: str | None, disabled: bool, config: dict[str, Any]) -> Path | None:
    if disabled:
        return None
    if flag_dir:
        return Path(flag_dir).expanduser()
    if "compile_cache" in config:
        value = config["compile_cache"]
        if value is False or value == "":
            return None
        if value is not None and value is not True:
            if not isinstance(value, str):
                raise ExperimentError(
                    f"config compile_cache: expected a directory path, True/None (the default "
                    f"directory) or False (off), found {value!r}"
                )
            return Path(value).expanduser()
    env = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    return Path(env) if env else default_cache_dir()


def configure_compile_cache(
    flag_dir: str | None, disabled: bool, config: dict[str, Any]
) -> Path | None:
    """Point JAX's persistent compilation cache at the chosen directory; returns it.

    ``None`` (and the cache off) when ``disabled`` or the config says
    ``compile_cache=False``.
    """
    import jax

    path = _choose(flag_dir, disabled, config)
    if path is None:
        jax.config.update("jax_compilation_cache_dir", None)
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExperimentError(
            f"compile cache: cannot create {os.fspath(path)!r} ({error}); pass "
            "--compile-cache DIR or --no-compile-cache"
        ) from error
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", os.fspath(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    return path
