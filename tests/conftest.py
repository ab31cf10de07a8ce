"""Strict settings shared by every test (as in equinox's tests/conftest.py).

* Two host CPU devices, so sharding and ``pmap``-style code can be tested on
  a laptop. ``XLA_FLAGS`` is read when jax initializes its backend, so it is
  set here, before anything imports jax.
* Implicit rank promotion raises: ``x + b`` with ``x`` of shape
  ``(batch, dim)`` and ``b`` of shape ``(dim,)`` is an error; write
  ``b[None]`` (or ``jnp.broadcast_to``). Scalars still broadcast freely.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
# Runner subprocesses keep JAX's persistent compilation cache under
# $XDG_CACHE_HOME: the tests use one of their own, removed at exit, so they
# never write into the user's ~/.cache.
_CACHE = tempfile.mkdtemp(prefix="bricks-test-cache-")
os.environ["XDG_CACHE_HOME"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
