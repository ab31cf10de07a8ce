"""The strict settings of tests/conftest.py are in force in every test."""

import os

import jax
import jax.numpy as jnp
import pytest


def test_two_host_devices_and_xla_flags():
    own = os.environ.get("BRICKS_TEST_XLA_FLAGS")
    if own is None:
        pytest.skip("XLA_FLAGS was set before the tests started: the tests use those")
    # XLA rejects unknown flags when the backend starts, so a misspelt flag fails here
    assert os.environ["XLA_FLAGS"] == own
    assert {"--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false"} <= set(
        own.split()
    )
    assert len(jax.devices("cpu")) == 2


def test_rank_promotion_raises():
    with pytest.raises(ValueError, match="rank_promotion='raise'"):
        jnp.ones((2, 3)) + jnp.ones((3,))
