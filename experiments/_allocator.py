"""The runner's malloc tuning: on by default on the CPU backend (``--no-malloc-tuning``)."""

from __future__ import annotations

from typing import Any


def malloc_tuning(enabled: bool) -> dict[str, Any]:
    """Apply :func:`bricks.core.allocator.tune_cpu_allocator` when it helps.

    Args:
        enabled: ``False`` for ``--no-malloc-tuning``.

    Returns:
        What ``summary.json`` records under ``"malloc_tuning"``: ``{"applied":
        settings}``, with ``"skipped"`` saying why when nothing was applied.
    """
    if not enabled:
        return {"applied": {}, "skipped": "--no-malloc-tuning"}
    import jax

    backend = jax.default_backend()
    if backend != "cpu":  # device memory is XLA's own: glibc's settings change nothing
        return {"applied": {}, "skipped": f"backend is {backend}, not cpu"}
    from bricks.core.allocator import tune_cpu_allocator

    applied = tune_cpu_allocator()
    return {"applied": applied} if applied else {"applied": {}, "skipped": "C library not glibc"}
