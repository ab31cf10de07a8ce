"""glibc malloc tuning: what tune_cpu_allocator sets, what it changes, and the runner's flag."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from bricks.core import allocator
from bricks.core.allocator import ALLOCATOR_SETTINGS, tune_cpu_allocator

from ._helpers import REPO, check_run_dir, env, run

GLIBC = allocator._glibc() is not None

# Faults of a second 64 MiB buffer after the first was freed: glibc's default
# maps it afresh (every page faults again); tuned, the freed heap is reused.
_PROBE = """
import ctypes, json, resource

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
SIZE = 2**26  # 64 MiB, as a step's scratch buffer: malloc, write every byte, free

def use_buffer():
    block = libc.malloc(SIZE)
    ctypes.memset(block, 1, SIZE)
    libc.free(block)

def faults_of_second_buffer():
    use_buffer()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    use_buffer()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

result = {"default": faults_of_second_buffer()}
from bricks.core.allocator import tune_cpu_allocator
result["first"] = tune_cpu_allocator()
result["second"] = tune_cpu_allocator()
result["tuned"] = faults_of_second_buffer()
print(json.dumps(result))
"""


PAGES = 2**26 // 4096  # of the probe's buffer


def _probe(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; the JSON it prints."""
    out = subprocess.run(
        [sys.executable, "-c", code], env=env(), cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_tuning_applies_idempotently_and_stops_refaulting_freed_memory():
    result = _probe(_PROBE)
    assert result["first"] == result["second"] == ALLOCATOR_SETTINGS
    assert result["default"] > PAGES // 2, result  # mapped afresh: every page faults again
    assert result["tuned"] < PAGES // 20, result  # the freed heap is reused


# Importing bricks (every layer, and the runner's module) and computing with jax
# must leave glibc's malloc as it was: only the runner or an explicit call tunes it.
_IMPORT_PROBE = _PROBE.split("result = ")[0] + """
import jax.numpy as jnp
import bricks, bricks.algorithms, bricks.core, bricks.data, bricks.distributed
import bricks.extensions, bricks.graph, bricks.log, bricks.main_loop, bricks.recurrent
import experiments.run
from bricks.core import allocator

jnp.ones(3).block_until_ready()
print(json.dumps({"applied": allocator._applied, "faults": faults_of_second_buffer()}))
"""


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_importing_bricks_leaves_malloc_alone():
    result = _probe(_IMPORT_PROBE)
    assert result["applied"] == {}
    assert result["faults"] > PAGES // 2, result  # still mapped afresh: glibc's default


class _FakeMallopt:
    """Stands in for glibc's ``mallopt``: records calls, refuses some parameters."""

    def __init__(self, refuse: set[int]):
        self.calls: list[tuple[int, int]] = []
        self.refuse = refuse

    def __call__(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 0 if param in self.refuse else 1


class _FakeLibc:
    def __init__(self, refuse: set[int]):
        self.mallopt = _FakeMallopt(refuse)


def test_settings_glibc_refuses_are_left_out(monkeypatch, caplog):
    fake = _FakeLibc(refuse={allocator._M_ARENA_MAX})
    monkeypatch.setattr(allocator, "_glibc", lambda: fake)
    monkeypatch.setattr(allocator, "_applied", {})
    with caplog.at_level(logging.DEBUG, logger=allocator.__name__):
        applied = tune_cpu_allocator()
    assert applied == {"mmap_max": 0, "trim_threshold": 2**31 - 1}
    assert fake.mallopt.calls == [(-4, 0), (-1, 2**31 - 1), (-8, 1)]
    assert "refused mallopt(arena_max, 1)" in caplog.text
    assert tune_cpu_allocator() == applied and len(fake.mallopt.calls) == 3  # not applied twice


def test_without_glibc_nothing_changes_and_nothing_raises(monkeypatch, caplog):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    monkeypatch.setattr(allocator, "_applied", {})
    with caplog.at_level(logging.DEBUG, logger=allocator.__name__):
        assert tune_cpu_allocator() == {}
    assert "not glibc" in caplog.text


@pytest.mark.slow
@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_runner_tunes_when_asked_and_records_it(tmp_path):
    common = ("--set", "num_batches=3", "--set", "plot=False", "--no-compile-cache")
    run("sqrt", tmp_path / "on", *common, "--malloc-tuning")
    assert check_run_dir(tmp_path / "on")["malloc_tuning"] == {"applied": ALLOCATOR_SETTINGS}
    run("sqrt", tmp_path / "off", *common)
    assert check_run_dir(tmp_path / "off")["malloc_tuning"] == {
        "applied": {},
        "skipped": "off (--malloc-tuning turns it on)",
    }


def test_resume_command_keeps_the_choice():
    from experiments import run as runner

    args = runner._parser().parse_args(["c.py", "--malloc-tuning"])
    assert runner.resume_command(args, "r")[-1] == "--malloc-tuning"
    args = runner._parser().parse_args(["c.py"])
    assert "--malloc-tuning" not in runner.resume_command(args, "r")


def test_runner_skips_when_the_backend_already_started():
    import jax

    from experiments._allocator import malloc_tuning

    jax.devices()
    assert malloc_tuning(True) == {
        "applied": {},
        "skipped": "jax's backend started before the runner could tune",
    }
    assert malloc_tuning(False) == {"applied": {}, "skipped": "off (--malloc-tuning turns it on)"}


@pytest.mark.parametrize(
    ("platforms", "plugins", "skipped"),
    [
        ("cuda", [], "JAX_PLATFORMS=cuda"),
        ("", ["cuda"], "accelerator plugins installed: cuda"),
    ],
)
def test_runner_skips_accelerator_runs(monkeypatch, platforms, plugins, skipped):
    from experiments import _allocator

    monkeypatch.setattr(allocator, "_jax_backend_started", lambda: False)
    monkeypatch.setattr(_allocator, "_platforms", lambda: platforms)
    monkeypatch.setattr(_allocator, "_accelerator_plugins", lambda: plugins)
    assert _allocator.malloc_tuning(True) == {"applied": {}, "skipped": skipped}


_LATE = """
import logging, jax
from bricks.core.allocator import tune_cpu_allocator
logging.basicConfig(level=logging.WARNING)
jax.devices()
tune_cpu_allocator()
"""


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_tuning_after_the_backend_started_warns():
    out = subprocess.run(
        [sys.executable, "-c", _LATE], env=env(), cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "after jax's backend started" in out.stderr
