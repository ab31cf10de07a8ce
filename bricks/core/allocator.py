"""Keep glibc's malloc from returning XLA's per-step scratch memory to the kernel.

XLA's CPU runtime allocates each step's temporaries as one large block
(128 MiB for a 2-layer LSTM 256 language model at T=100, batch 32) and
frees it when the step ends. glibc serves a block that large with a fresh
``mmap`` and gives it back with ``munmap``, so every step faults in and
zeroes every page again: a quarter of the CPU time of such a step. The same
happens to the top of the heap when it is trimmed.

:func:`tune_cpu_allocator` changes glibc's settings from inside the running
process (``mallopt``), which is what the environment variables
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...`` do at start-up: large
blocks come from the heap, and the heap is not trimmed, so the next step
reuses the same, already mapped pages. The cost is that memory freed by a
step stays in the process (resident memory stays at its high-water mark
instead of falling between steps); it does not grow beyond that.

On anything but glibc (macOS, musl, Windows) the call does nothing and
logs why at debug level; it never raises.
"""

from __future__ import annotations

import ctypes
import logging
import sys

__all__ = ["ALLOCATOR_SETTINGS", "tune_cpu_allocator"]

logger = logging.getLogger(__name__)

# glibc's <malloc.h> parameter numbers.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

#: What :func:`tune_cpu_allocator` sets: ``mallopt`` parameter -> value.
#: ``mmap_max=0``: no block is served by its own ``mmap`` (the heap serves
#: it); ``trim_threshold``: the heap top is never given back (the largest
#: value glibc takes, as ``MALLOC_TRIM_THRESHOLD_=4294967295`` would);
#: ``arena_max=1``: threads started from now on share the main heap (a
#: thread's own arena is made of 64 MiB heaps, which cannot hold a block
#: larger than that, so glibc would ``mmap`` it anyway).
ALLOCATOR_SETTINGS: dict[str, int] = {
    "mmap_max": 0,
    "trim_threshold": 2**31 - 1,
    "arena_max": 1,
}
_NUMBERS = {"mmap_max": _M_MMAP_MAX, "trim_threshold": _M_TRIM_THRESHOLD, "arena_max": _M_ARENA_MAX}

_applied: dict[str, int] = {}


def _glibc() -> ctypes.CDLL | None:
    """The C library of this process when it is glibc, else ``None``."""
    try:
        libc = ctypes.CDLL(None)
        version = libc.gnu_get_libc_version
    except (OSError, AttributeError):
        return None
    version.restype = ctypes.c_char_p
    logger.debug("glibc %s", version().decode())
    return libc


def _jax_backend_started() -> bool:
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge  # no public spelling of this question

    return bool(xla_bridge.backends_are_initialized())


def tune_cpu_allocator() -> dict[str, int]:
    """Stop glibc from unmapping and trimming freed memory, for faster CPU steps.

    Call it once, before the first jax computation: XLA's CPU client starts
    its threads with its backend, and a thread keeps the malloc arena it
    started with (called later, it logs a warning and gains nothing). Measured on a 2-layer LSTM 256
    language model step on CPU (W2 of issue 21) it took the page faults
    per step from 24,844 to 2,426 and the CPU time from 242 to 204 ms, for
    ~140 MiB more resident memory; see "CPU performance" in
    ``docs/training.md``.
    ``python -m experiments.run --malloc-tuning`` calls it on the CPU
    backend. It is off by default: it pays where each compiled call runs one
    step (the runner's char LM at ``steps_per_call=1``: 0.85-0.88x the CPU
    time), while with several steps per call (char_lm's 10) the block is
    mapped once per call and the change is within the noise (0.97-1.03x), as
    it is for small models; the peak resident memory grows by 30-420 MiB
    (``docs/benchmarks.md``, "The malloc tuning at steps_per_call 1 and 10").

    Calling it again changes nothing. Settings glibc refuses are left out of
    the result (and logged); on a C library other than glibc nothing is
    changed.

    Returns:
        The settings now in force, ``{"mmap_max": 0, "trim_threshold":
        2147483647, "arena_max": 1}`` on glibc; ``{}`` elsewhere.

    Example:
        >>> from bricks.core.allocator import tune_cpu_allocator
        >>> settings = tune_cpu_allocator()
        >>> settings in ({}, {"mmap_max": 0, "trim_threshold": 2**31 - 1, "arena_max": 1})
        True
    """
    if _applied:
        return dict(_applied)
    if _jax_backend_started():
        logger.warning(
            "tune_cpu_allocator() after jax's backend started: XLA's threads keep the malloc "
            "arenas they already use, so its large blocks are still mapped afresh every step; "
            "call it before the first jax computation"
        )
    libc = _glibc()
    if libc is None:
        logger.debug("tune_cpu_allocator: the C library is not glibc; nothing changed")
        return {}
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    for name, value in ALLOCATOR_SETTINGS.items():
        if mallopt(_NUMBERS[name], value) == 1:
            _applied[name] = value
        else:
            logger.debug("tune_cpu_allocator: glibc refused mallopt(%s, %d)", name, value)
    return dict(_applied)
