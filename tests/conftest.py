"""Strict settings shared by every test (as in equinox's tests/conftest.py).

* Two host CPU devices, so sharding and ``pmap``-style code can be tested on
  a laptop. ``XLA_FLAGS`` is read when jax initializes its backend, so it is
  set here, before anything imports jax.
* XLA's CPU backend compiles cheaply: optimization level 0, and fusions
  emitted by the classic elemental emitter instead of the MLIR fusion
  emitters. The quick pass compiles about 3,500 small programs and runs most
  of them once, so XLA's compilation, not execution, was most of its CPU
  time; together the two flags cut it by about half. They change how the
  machine code is generated and optimized, not what the program computes:
  every numerical test still compares against its numpy reference. Set
  ``XLA_FLAGS`` yourself to run the tests with other flags (XLA's defaults:
  ``XLA_FLAGS=--xla_force_host_platform_device_count=2``).
* Implicit rank promotion raises: ``x + b`` with ``x`` of shape
  ``(batch, dim)`` and ``b`` of shape ``(dim,)`` is an error; write
  ``b[None]`` (or ``jnp.broadcast_to``). Scalars still broadcast freely.
"""

import atexit
import os
import shutil
import tempfile

#: The flags the tests run with unless XLA_FLAGS is set (see the docstring).
TEST_XLA_FLAGS = (
    "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"
    " --xla_cpu_use_fusion_emitters=false"
)
if "XLA_FLAGS" not in os.environ:
    os.environ["XLA_FLAGS"] = TEST_XLA_FLAGS
    # read by tests/test_settings.py, which checks these flags reached XLA
    os.environ["BRICKS_TEST_XLA_FLAGS"] = TEST_XLA_FLAGS
# Runner subprocesses keep JAX's persistent compilation cache under
# $XDG_CACHE_HOME: the tests use one of their own, removed at exit, so they
# never write into the user's ~/.cache.
_CACHE = tempfile.mkdtemp(prefix="bricks-test-cache-")
os.environ["XDG_CACHE_HOME"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
