"""At most CPU_STEPS_IN_FLIGHT training steps in flight on several CPU devices (issue 20).

XLA's CPU client deadlocked (SIGABRT after its 40 s rendezvous timeout) when
the host dispatched steps far ahead of a multi-device step's collectives:
see :class:`bricks.algorithms.parallel.StepPacer`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from bricks.algorithms import Adam, GradientDescent
from bricks.algorithms import parallel as parallel_module
from bricks.algorithms.parallel import CPU_STEPS_IN_FLIGHT, StepPacer, paced
from bricks.distributed import DataParallel
from bricks.errors import ShardingError

from .inflight_models import wide_mlp

WORKER = Path(__file__).with_name("inflight_worker.py")


def _heavy(parallel, shard: bool = False) -> tuple[GradientDescent, list[dict]]:
    """An MLP 256-512-512-8 on batches of 128: a step takes much longer than its dispatch,
    so unpaced steps pile up."""
    graph, data = wide_mlp([256, 512, 512, 8], 128)
    if parallel is not None:
        parallel = DataParallel(parallel, shard_parameters=shard)
    return GradientDescent(cost=graph, step_rule=Adam(1e-3), parallel=parallel), data


def _unfinished_before_each_step(algorithm, data, steps: int) -> list[int]:
    """For each step: how many earlier steps had not finished when its call returned
    (read from the flags every step returns, through the algorithm's flag hook)."""
    flags, unfinished = [], []
    called = algorithm._flags.called

    def hook(new):
        unfinished.append(sum(not f.is_ready() for f in flags))
        flags.append(new)
        called(new)

    algorithm._flags.called = hook
    for i in range(steps):
        algorithm.process_batch(data[i % len(data)])
    jax.block_until_ready(flags)
    return unfinished


@pytest.mark.parametrize("shard", [False, True])
def test_steps_in_flight_are_bounded_on_several_cpu_devices(shard):
    assert len(jax.devices()) == 2 and jax.devices()[0].platform == "cpu"  # tests/conftest.py
    algorithm, data = _heavy(2, shard)
    unfinished = _unfinished_before_each_step(algorithm, data, 12)
    assert len(unfinished) == 12
    # when step n + 1 is dispatched, step n + 1 - CPU_STEPS_IN_FLIGHT has finished
    assert max(unfinished) <= CPU_STEPS_IN_FLIGHT - 1, unfinished


def test_steps_of_several_calls_per_scan_are_bounded():
    algorithm, data = _heavy(2)
    flags = []
    called = algorithm._flags.called
    algorithm._flags.called = lambda new: (flags.append(new), called(new))
    for _ in range(6):
        algorithm.process_batches(data, length=4)
        algorithm.process_batches(data[:3], length=4)  # the masked scan
    assert len(flags) == 12
    # the pacer holds the last CPU_STEPS_IN_FLIGHT calls; everything before them finished
    assert all(f.is_ready() for f in flags[:-CPU_STEPS_IN_FLIGHT])


def test_one_device_and_gpus_are_not_paced():
    def step(state, batch, key):
        return state, state

    assert paced(step, DataParallel(1)) is step
    gpu = SimpleNamespace(platform="gpu")
    on_gpus = SimpleNamespace(size=2, mesh=SimpleNamespace(devices=np.array([gpu, gpu])))
    assert paced(step, on_gpus) is step
    assert paced(step, DataParallel(2)) is not step
    algorithm, data = _heavy(None)
    algorithm.process_batch(data[0])
    assert not isinstance(algorithm._step_fn, type(paced(step, DataParallel(2))))


def test_a_paced_step_is_still_the_jitted_step():
    algorithm, data = _heavy(2)
    algorithm.process_batch(data[0])
    assert algorithm._step_fn._cache_size() == 1  # attributes of the jitted function
    lowered = algorithm._step_fn.lower(algorithm._state, algorithm.parallel.shard_batch(data[0]),
                                       algorithm._base_key)
    assert "all-reduce" in lowered.compile().as_text()


def test_the_pacer_waits_for_the_oldest_step():
    class Marker:
        def __init__(self):
            self.waited = False

        def block_until_ready(self):
            self.waited = True

        def is_ready(self):
            return self.waited

    pacer = StepPacer(2)
    markers = [Marker() for _ in range(4)]
    for i, marker in enumerate(markers):
        pacer.wait()
        pacer.dispatched(marker)
        assert [m.waited for m in markers[:i + 1]] == [j < i - 1 for j in range(i + 1)]
    assert pacer.in_flight() == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ShardingError, match="limit must be an int >= 1"):
            StepPacer(bad)


def test_one_pacer_serves_every_algorithm(monkeypatch):
    pacer = StepPacer(1)
    monkeypatch.setattr(parallel_module, "CPU_PACER", pacer)
    first, data = _heavy(2)
    second, _ = _heavy(2)
    for i in range(3):
        first.process_batch(data[i])
        second.process_batch(data[i])
        assert len(pacer._pending) == 1  # the other algorithm's step was waited for


@pytest.mark.slow
def test_many_unblocked_steps_on_four_devices_never_hang():
    """Without the bound (``inflight_worker.py 4 300 --unpaced``) XLA aborted after 40 s in
    8 of 8 runs on the 2-core machine (load average 4-11); see docs/distributed.md."""
    out = subprocess.run([sys.executable, str(WORKER), "4", "300"], capture_output=True,
                         text=True, timeout=420)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1].startswith("OK")
