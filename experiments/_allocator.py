"""The runner's ``--malloc-tuning``: glibc's malloc tuned for XLA on the CPU backend.

glibc's settings only help when they are in place before XLA's CPU client
starts its threads (each thread keeps the malloc arena it first used), so
the runner decides before any jax backend exists, from ``JAX_PLATFORMS``
and the installed accelerator plugins, not from ``jax.default_backend()``
(which would start the client).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from typing import Any


def _accelerator_plugins() -> list[str]:
    """Installed jax PJRT plugins (``jax_plugins`` modules or entry points)."""
    found = [ep.name for ep in importlib.metadata.entry_points(group="jax_plugins")]
    if importlib.util.find_spec("jax_plugins") is not None:
        import pkgutil

        import jax_plugins  # type: ignore[import-not-found]

        found += [m.name for m in pkgutil.iter_modules(jax_plugins.__path__)]
    return sorted(set(found))


def _platforms() -> str:
    import jax

    return jax.config.jax_platforms or ""  # JAX_PLATFORMS, e.g. "cpu" or "cuda,cpu"


def malloc_tuning(enabled: bool) -> dict[str, Any]:
    """Apply :func:`bricks.core.allocator.tune_cpu_allocator` when the run will be on CPU.

    Args:
        enabled: ``--malloc-tuning`` was given.

    Returns:
        What ``summary.json`` records under ``"malloc_tuning"``: ``{"applied":
        settings}``, with ``"skipped"`` saying why when nothing was applied.
    """
    if not enabled:
        return {"applied": {}, "skipped": "off (--malloc-tuning turns it on)"}
    from bricks.core.allocator import _jax_backend_started, tune_cpu_allocator

    if _jax_backend_started():
        return {"applied": {}, "skipped": "jax's backend started before the runner could tune"}
    platforms = _platforms()
    if platforms and platforms.split(",")[0] != "cpu":
        return {"applied": {}, "skipped": f"JAX_PLATFORMS={platforms}"}
    plugins = _accelerator_plugins()
    if not platforms and plugins:
        return {"applied": {}, "skipped": f"accelerator plugins installed: {', '.join(plugins)}"}
    applied = tune_cpu_allocator()
    return {"applied": applied} if applied else {"applied": {}, "skipped": "C library not glibc"}
