"""Prefetch workers start once per run, keep their files open, and end with the trainer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_prefetch_lifecycle import _alive

from bricks.data import (
    DataStream,
    H5PYDataset,
    IndexableDataset,
    Prefetch,
    SequentialScheme,
    ShuffledScheme,
    write_hdf5,
)
from bricks.errors import WorkerError

REPO = Path(__file__).resolve().parents[2]
N = 200
X = np.arange(N * 6, dtype=np.float32).reshape(N, 6)
Y = np.arange(N) % 7

_OPENS = {"dataset": 0, "file": 0}  # per process


class _CountingH5(H5PYDataset):
    """Reports, in its ``tag`` source, the reading process and how often it opened the file."""

    def open(self):
        _OPENS["dataset"] += 1
        return super().open()

    def _file(self):
        if self._handle is None or self._pid != os.getpid():
            _OPENS["file"] += 1
        return super()._file()

    def get_data(self, state=None, request=None):
        x, tag = super().get_data(state, request)
        info = os.getpid() * 100 + _OPENS["dataset"] * 10 + _OPENS["file"]
        return x, np.full_like(tag, info)


class _FailingH5(H5PYDataset):
    def get_data(self, state=None, request=None):
        if 50 in np.atleast_1d(request):
            raise ValueError("bad request with example 50")
        return super().get_data(state, request)


@pytest.fixture(scope="module")
def h5path(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("persistent") / "d.hdf5")
    write_hdf5(path, {"x": X, "y": Y, "tag": np.zeros(N, np.int64)})
    return path


def _reference(epochs: int, seed: int = 3) -> list:
    s = DataStream(IndexableDataset({"x": X, "y": Y}), iteration_scheme=ShuffledScheme(N, 16, seed))
    return [[(b[0], b[1]) for b in s.get_epoch_iterator()] for _ in range(epochs)]


def _h5stream(path: str, seed: int = 3, **kw) -> Prefetch:
    s = DataStream(H5PYDataset(path, ("train",), sources=("x", "y")),
                   iteration_scheme=ShuffledScheme(N, 16, seed))
    return Prefetch(s, **kw)


def _same(got: list, want: list) -> bool:
    if len(got) != len(want):
        return False
    pairs = zip(got, want, strict=True)
    return all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in pairs)


def _shm_files(pid: int | None = None) -> set[str]:
    prefix = f"bricks-{pid if pid is not None else os.getpid()}-"
    return {f for f in os.listdir("/dev/shm") if f.startswith(prefix)}


def test_process_workers_start_once_and_open_their_file_once(h5path):
    ds = _CountingH5(h5path, ("train",), sources=("x", "tag"))
    s = Prefetch(DataStream(ds, iteration_scheme=SequentialScheme(N, 16)), workers=2,
                 processes=True)
    try:
        infos, pools = set(), []
        for _ in range(3):
            it = s.get_epoch_iterator()
            batches = list(it)
            assert np.array_equal(np.concatenate([b[0] for b in batches]), X)
            infos |= {int(t) for b in batches for t in np.unique(b[1])}
            pools.append(tuple(w.pid for w in s._live_pools[0].workers))
        assert len(set(pools)) == 1 and len(pools[0]) == 2  # the same two processes
        assert {i // 100 for i in infos} == set(pools[0])
        assert {i % 100 for i in infos} == {11}  # one open() and one file open each
    finally:
        s.close()
    assert not any(_alive(p) for p in pools[0])


def test_thread_workers_persist_across_epochs(h5path):
    s = _h5stream(h5path, workers=2)
    want = _reference(3)
    idents = []
    for e in range(3):
        assert _same(list(s.get_epoch_iterator()), want[e])
        idents.append(tuple(w.ident for w in s._live_pools[0].workers))
    assert len(set(idents)) == 1
    threads = s._live_pools[0].workers
    s.close()
    assert not any(t.is_alive() for t in threads)


@pytest.mark.parametrize("processes", [False, True])
def test_an_abandoned_epoch_leaves_the_next_one_exact(h5path, processes):
    want = _reference(3)
    s = _h5stream(h5path, workers=2, processes=processes, buffer_size=3)
    try:
        it = s.get_epoch_iterator()
        assert _same([next(it), next(it)], want[0][:2])
        it.close()  # reads of epoch 0 are still queued: they must never come out
        assert _same(list(s.get_epoch_iterator()), want[1])
        it = s.get_epoch_iterator()
        next(it)  # abandoned without close: a second epoch iterator gets its own workers
        assert _same(list(_h5stream(h5path).get_epoch_iterator()), want[0])
        saved = s.get_state()
        resumed = _h5stream(h5path, workers=2, processes=processes)
        resumed.set_state(saved)
        assert _same(list(resumed.get_epoch_iterator()), want[2][1:])
        resumed.close()
    finally:
        s.close()


def test_two_live_epochs_of_one_stream_read_independently(h5path):
    want = _reference(2)
    s = _h5stream(h5path, workers=2, processes=True)
    try:
        a, b = s.get_epoch_iterator(), s.get_epoch_iterator()
        got_a, got_b = [], []
        for x, y in zip(a, b, strict=True):
            got_a.append(x)
            got_b.append(y)
        assert _same(got_a, want[0]) and _same(got_b, want[1])
        assert len(s._live_pools) == 1  # the second pool was closed once idle
    finally:
        s.close()


def _via_shm(batch: tuple) -> bool:
    return type(batch[0].base).__name__.startswith("c_char_Array")


def test_batches_come_through_shared_memory_and_stay_intact(h5path):
    want = _reference(4)
    s = _h5stream(h5path, workers=2, processes=True, buffer_size=2)
    try:
        # the slot size is learnt from the first batches, which are pickled
        epoch = enumerate(s.get_epoch_iterator())
        via = [_via_shm(b) and _same([b], [want[0][e]]) for e, b in epoch]
        assert via[2 * 2 + 1 :] == [True] * (len(via) - 5), via
        for e, batch in enumerate(s.get_epoch_iterator()):  # each batch dropped: slots reused
            assert _via_shm(batch) and _same([batch], [want[1][e]]), e
        slots = s._live_pools[0].slots.slots
        assert len(slots) <= 2 * 2 * 2 + 4 and _shm_files() == set(slots_names(slots))
        kept = list(s.get_epoch_iterator())  # more batches than slots (the rest are pickled)
        kept[0][0][:] = -1  # the caller may write into its batch
        assert _same(kept[1:], want[2][1:]) and (kept[0][0] == -1).all()
        assert _same(list(s.get_epoch_iterator()), want[3])
        assert _same(kept[1:], want[2][1:])
    finally:
        s.close()
    assert _shm_files() == set()


class _Growing(IndexableDataset):
    """Batches whose second source grows with the request, and a ragged (object) source."""

    def get_data(self, state=None, request=None):
        (x,) = super().get_data(state, request)
        ragged = np.empty(len(x), dtype=object)
        ragged[:] = [np.arange(int(i) % 3) for i in x[:, 0]]
        return x, np.full(int(x[0, 0]) * 50 + 1, x[0, 0]), ragged


def test_growing_batches_get_larger_slots_and_object_arrays_are_pickled():
    s = Prefetch(DataStream(_Growing({"x": X}), iteration_scheme=SequentialScheme(N, 10)),
                 workers=2, processes=True, buffer_size=2)
    try:
        for _ in range(2):
            for k, (x, grow, ragged) in enumerate(s.get_epoch_iterator()):
                assert np.array_equal(x, X[10 * k : 10 * k + 10])
                assert np.array_equal(grow, np.full(int(X[10 * k, 0]) * 50 + 1, X[10 * k, 0]))
                assert [r.tolist() for r in ragged] == [
                    list(range(int(v) % 3)) for v in X[10 * k : 10 * k + 10, 0]
                ]
        pool = s._live_pools[0]
        assert pool.slots.size >= X[-10:].nbytes + (int(X[-10, 0]) * 50 + 1) * 4
        assert len(pool.slots.slots) <= 2 * 2 * 2 + 4
        assert _shm_files() == set(slots_names(pool.slots.slots))  # small ones were unlinked
    finally:
        s.close()


def slots_names(slots: dict) -> list[str]:
    return [name.lstrip("/") for name in slots]


def test_a_worker_error_names_the_file_and_carries_its_traceback(h5path):
    ds = _FailingH5(h5path, ("train",), sources=("x", "y"))
    s = Prefetch(DataStream(ds, iteration_scheme=SequentialScheme(N, 16)), workers=2,
                 processes=True)
    try:
        it = s.get_epoch_iterator()
        for _ in range(3):
            next(it)
        with pytest.raises(WorkerError) as info:
            next(it)
        message = str(info.value)
        assert "bad request with example 50" in message and h5path in message
        assert "Traceback" in message and "in get_data" in message and "request 3" in message
        pids = [w.pid for w in s._live_pools[0].workers]
        first = next(s.get_epoch_iterator())  # the workers survive a failed read
        assert np.array_equal(first[0], X[:16])
        assert [w.pid for w in s._live_pools[0].workers] == pids
    finally:
        s.close()


@pytest.mark.parametrize("processes", [False, True])
def test_workers_give_only_the_selected_sources(h5path, processes):
    stream = DataStream(H5PYDataset(h5path, ("train",)), iteration_scheme=SequentialScheme(N, 50))
    stream.sources = ("y",)
    s = Prefetch(stream, workers=2, processes=processes)
    try:
        batches = list(s.get_epoch_iterator())
        assert all(len(b) == 1 for b in batches)
        assert np.array_equal(np.concatenate([b[0] for b in batches]), Y)
    finally:
        s.close()


def test_a_stream_read_ahead_in_one_process_keeps_its_worker(h5path):
    from bricks.data import ScaleAndShift

    inner = DataStream(IndexableDataset({"x": X}), iteration_scheme=SequentialScheme(N, 40))
    s = Prefetch(ScaleAndShift(inner, 2.0, 1.0), processes=True)
    try:
        pids = []
        for _ in range(2):
            got = np.concatenate([b[0] for b in s.get_epoch_iterator()])
            assert np.array_equal(got, X * 2 + 1)
            pids.append(s._live_pools[0].workers[0].pid)
        assert pids[0] == pids[1]
    finally:
        s.close()


def test_garbage_collection_stops_the_workers(h5path):
    import gc

    s = _h5stream(h5path, workers=2, processes=True)
    next(s.get_epoch_iterator())
    pids = [w.pid for w in s._live_pools[0].workers]
    del s
    gc.collect()
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)
    assert _shm_files() == set()
    assert not [t for t in threading.enumerate() if t.name.startswith("bricks-prefetch")]


class _DiesOnce(IndexableDataset):
    """A worker reading it exits (as if killed) while the marker file exists, once."""

    def __init__(self, data, marker):
        super().__init__(data)
        self.marker = marker

    def get_data(self, state=None, request=None):
        try:
            os.remove(self.marker)  # the one worker that removes it dies
        except FileNotFoundError:
            pass
        else:
            os._exit(3)
        return super().get_data(state, request)


def test_a_dead_worker_raises_and_the_next_epoch_starts_new_ones(tmp_path):
    marker = tmp_path / "die"
    s = Prefetch(DataStream(_DiesOnce({"x": X}, str(marker)),
                            iteration_scheme=SequentialScheme(N, 20)), workers=2, processes=True)
    try:
        assert np.array_equal(np.concatenate([b[0] for b in s.get_epoch_iterator()]), X)
        old = [w.pid for w in s._live_pools[0].workers]
        marker.touch()
        with pytest.raises(WorkerError, match="exit code 3"):
            list(s.get_epoch_iterator())
        assert np.array_equal(np.concatenate([b[0] for b in s.get_epoch_iterator()]), X)
        new = [w.pid for w in s._live_pools[0].workers]
        assert len(s._live_pools) == 1 and not set(old) & set(new)
    finally:
        s.close()


def test_worker_processes_leave_ctrl_c_to_the_trainer(h5path):
    s = _h5stream(h5path, workers=2, processes=True)
    try:
        it = s.get_epoch_iterator()
        next(it), next(it)  # one batch from each worker: both are running
        for w in s._live_pools[0].workers:
            status = Path(f"/proc/{w.pid}/status").read_text()
            line = next(x for x in status.splitlines() if x.startswith("SigIgn:"))
            ignored = int(line.split()[1], 16)
            assert ignored & (1 << (signal.SIGINT - 1)), status
    finally:
        s.close()


# --- the trainer process ends: by exit, by SIGKILL; scripts without a __main__ guard ------


def _env() -> dict:
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path)


_TRAINER = """
import json, os, sys, time
import numpy as np
from bricks.data import DataStream, H5PYDataset, Prefetch, ShuffledScheme
stream = Prefetch(DataStream(H5PYDataset(sys.argv[1], ("train",)),
                             iteration_scheme=ShuffledScheme(200, 16, seed=1)),
                  workers=2, processes=True)
for _ in range(2):
    kept = list(stream.get_epoch_iterator())
pool = stream._live_pools[0]
print(json.dumps({"workers": [w.pid for w in pool.workers], "pid": os.getpid(),
                  "slots": len(pool.slots.slots)}), flush=True)
if sys.argv[2] == "sleep":
    time.sleep(120)
"""


@pytest.mark.slow
def test_workers_and_shared_memory_go_when_the_trainer_is_killed(h5path):
    trainer = subprocess.Popen([sys.executable, "-c", _TRAINER, h5path, "sleep"],
                               stdout=subprocess.PIPE, text=True, env=_env())
    try:
        info = json.loads(trainer.stdout.readline())
        assert len(info["workers"]) == 2 and info["slots"] > 0
        assert all(_alive(p) for p in info["workers"]) and _shm_files(info["pid"])
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(timeout=30)
        deadline = time.monotonic() + 5
        while (any(_alive(p) for p in info["workers"]) or _shm_files(info["pid"])) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
        assert not [p for p in info["workers"] if _alive(p)], info
        assert _shm_files(info["pid"]) == set()
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait()


@pytest.mark.slow
def test_a_trainer_that_exits_without_close_leaves_nothing(h5path):
    done = subprocess.run([sys.executable, "-c", _TRAINER, h5path, "exit"], capture_output=True,
                          text=True, env=_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "leaked" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    info = json.loads(done.stdout)
    time.sleep(0.2)
    assert not [p for p in info["workers"] if _alive(p)]
    assert _shm_files(info["pid"]) == set()


_SCRIPT_HEAD = """
import numpy as np
from bricks.data import DataStream, IndexableDataset, Prefetch, SequentialScheme
print("top of the script", flush=True)
"""
_LIBRARY_ONLY = """
s = Prefetch(DataStream(IndexableDataset({"x": np.arange(20)}),
                        iteration_scheme=SequentialScheme(20, 5)),
             processes=True, workers=2, start_method=METHOD)
for _ in range(2):
    print(sum(int(b[0].sum()) for b in s.get_epoch_iterator()), flush=True)
"""
_OWN_CLASS = """
class Doubled(IndexableDataset):
    def get_data(self, state=None, request=None):
        return tuple(2 * a for a in super().get_data(state, request))

def main():
    s = Prefetch(DataStream(Doubled({"x": np.arange(20)}),
                            iteration_scheme=SequentialScheme(20, 5)), processes=True)
    print(sum(int(b[0].sum()) for b in s.get_epoch_iterator()), flush=True)
"""


def _run_script(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    script = tmp_path / "train_script.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=_env(), timeout=120, cwd=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_a_script_without_main_guard_works_when_it_sends_only_library_objects(tmp_path, method):
    done = _run_script(tmp_path, _SCRIPT_HEAD + _LIBRARY_ONLY.replace("METHOD", repr(method)))
    assert done.returncode == 0, done.stderr
    # the workers did not run the script again
    assert done.stdout.split("\n") == ["top of the script", "190", "190", ""], done.stdout


@pytest.mark.slow
def test_a_script_without_main_guard_that_sends_its_own_class_is_told_to_add_one(tmp_path):
    done = _run_script(tmp_path, _SCRIPT_HEAD + _OWN_CLASS + "\nmain()\n")
    assert done.returncode == 1
    assert "WorkerError" in done.stderr and "Doubled" in done.stderr, done.stderr
    assert 'if __name__ == "__main__":' in done.stderr and "train_script.py" in done.stderr
    assert done.stdout.count("top of the script") == 1  # no worker started


@pytest.mark.slow
def test_a_guarded_script_sends_its_own_class(tmp_path):
    code = _SCRIPT_HEAD + _OWN_CLASS + '\nif __name__ == "__main__":\n    main()\n'
    done = _run_script(tmp_path, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "380"


def test_a_class_from_an_interactive_main_is_refused_with_the_fix():
    code = textwrap.dedent(_SCRIPT_HEAD + _OWN_CLASS + "\nmain()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert done.returncode == 1
    assert "interactive session" in done.stderr and "Doubled" in done.stderr, done.stderr


_FORK_SCRIPT = """
import os, sys
import numpy as np
from bricks.data import DataStream, IndexableDataset, Mapping, Prefetch, SequentialScheme
assert "jax" not in sys.modules  # bricks.data never imports jax: forking is safe here
X = np.arange(200 * 6, dtype=np.float32).reshape(200, 6)
inner = DataStream(IndexableDataset({"x": X}), iteration_scheme=SequentialScheme(200, 40))
s = Prefetch(Mapping(inner, lambda d: (d[0] + 1,)), processes=True, start_method="fork")
try:
    pids = []
    for _ in range(2):
        got = np.concatenate([b[0] for b in s.get_epoch_iterator()])
        assert np.array_equal(got, X + 1)
        pids.append(s._live_pools[0].workers[0].pid)
    assert pids[0] == pids[1] != os.getpid(), pids
finally:
    s.close()
print("ok")
"""


def test_fork_workers_take_a_lambda_and_persist():
    # In a fresh interpreter: once jax runs in a process (as in the test session),
    # forking it warns that jax's threads may deadlock the child, rightly.
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", _FORK_SCRIPT],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.parametrize("processes", [False, True])
def test_an_epoch_read_while_the_stream_is_closed_raises(h5path, processes):
    s = _h5stream(h5path, workers=2, processes=processes)
    older = s.get_epoch_iterator()
    next(older)
    latest = s.get_epoch_iterator()  # its own pool: `older` still holds the first
    next(latest)
    s.close()  # stops every pool; the latest epoch iterator is closed with them
    with pytest.raises(StopIteration):
        next(latest)
    with pytest.raises(WorkerError, match=r"stopped \(close\(\)\).*get_epoch_iterator"):
        next(older)
    older.close()
    assert _same(list(s.get_epoch_iterator()), _reference(3)[2])  # new workers start
    s.close()
