"""Prefetch worker processes die with the trainer; pickling and /dev/shm errors say what to do."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bricks.data import DataStream, IndexableDataset, Prefetch, SequentialScheme
from bricks.errors import WorkerError

REPO = Path(__file__).resolve().parents[2]

_TRAINER = """
import json, sys, time
import multiprocessing.forkserver as fs, multiprocessing.resource_tracker as rt
import numpy as np
from bricks.data import DataStream, IndexableDataset, Prefetch, SequentialScheme

stream = DataStream(IndexableDataset({"x": np.arange(4000.0)}),
                    iteration_scheme=SequentialScheme(4000, 10))
it = Prefetch(stream, workers=2, processes=True, buffer_size=2).get_epoch_iterator()
next(it); next(it)
inner = it._inner if hasattr(it, "_inner") else it
workers = [w.pid for w in getattr(inner, "workers", [])]
print(json.dumps({"workers": workers, "forkserver": fs._forkserver._forkserver_pid,
                  "tracker": rt._resource_tracker._pid}), flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return False


def _shm() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


@pytest.mark.slow
def test_workers_forkserver_and_tracker_exit_after_the_trainer_is_killed() -> None:
    before = _shm()
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    trainer = subprocess.Popen(
        [sys.executable, "-c", _TRAINER], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        line = trainer.stdout.readline()
        assert line, "the trainer printed nothing"
        pids = json.loads(line)
        helpers = [*pids["workers"], pids["forkserver"], pids["tracker"]]
        assert len(pids["workers"]) == 2 and all(_alive(p) for p in helpers), pids
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(timeout=30)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in helpers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in helpers if _alive(p)], f"still alive 5 s after SIGKILL: {pids}"
        time.sleep(0.5)
        assert _shm() - before == set()
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait()


def _stream() -> DataStream:
    return DataStream(
        IndexableDataset({"x": np.arange(20.0)}), iteration_scheme=SequentialScheme(20, 5)
    )


class _Holder:
    def __init__(self) -> None:
        self.transform = lambda x: x  # a lambda cannot be pickled


def test_an_unpicklable_dataset_names_the_object_and_the_fix() -> None:
    stream = _stream()
    stream.dataset.extra = {"helper": _Holder()}
    with pytest.raises(WorkerError) as info:
        next(Prefetch(stream, processes=True).get_epoch_iterator())
    message = str(info.value)
    assert "the dataset.extra['helper'].transform" in message, message
    assert "module level" in message and "processes=False" in message


def test_a_full_dev_shm_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import multiprocessing.context as context

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(context.ForkServerContext, "Queue", full, raising=False)
    with pytest.raises(
        WorkerError, match=r"Prefetch worker 0.*shared memory is exhausted.*shm-size"
    ):
        next(Prefetch(_stream(), workers=1, processes=True).get_epoch_iterator())


def test_shared_memory_is_released_at_close() -> None:
    import gc

    before = _shm()
    iterator = Prefetch(_stream(), workers=2, processes=True).get_epoch_iterator()
    next(iterator)
    # what appeared meanwhile (another test process, e.g. under pytest -n 2, may add its own
    # entries later: only these must go)
    mine = _shm() - before
    assert mine, "process workers hold semaphores in /dev/shm while they run"
    iterator._inner.close()  # the epoch ends; its workers stay for the next one
    assert mine & _shm() == mine
    del iterator  # the stream goes: its workers and their semaphores with it
    gc.collect()
    assert mine & _shm() == set()
