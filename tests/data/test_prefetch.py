"""Prefetching with threads and processes: same order, resumable, clear worker errors."""

import os
import time

import numpy as np
import pytest
from _pipelines import build, make_hdf5, run_epochs
from test_resume import cut_and_resume

from bricks.data import DataStream, IndexableDataset, Mapping, Prefetch, SequentialScheme
from bricks.errors import SchemeError, WorkerError


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("prefetch")
    make_hdf5(str(d / "resume.hdf5"))
    return str(d)


def cut_points(n_items: int, per_epoch: int) -> list[int]:
    return sorted({0, 1, per_epoch // 2, per_epoch - 1, per_epoch, per_epoch + 1, n_items})


@pytest.mark.parametrize("name", ["shuffled", "cache", "unpack_filter_batch", "hdf5_flip"])
def test_threads_same_order_and_resume(name, workdir):
    full = run_epochs(build(name, workdir), 2)
    assert run_epochs(build(name, workdir, "threads"), 2) == full
    for k in range(len(full) + 1):
        assert cut_and_resume(name, workdir, k, "threads") == full, k


@pytest.mark.parametrize("name", ["shuffled", "hdf5_flip"])
def test_processes_same_order_and_resume(name, workdir):
    full = run_epochs(build(name, workdir), 2)
    assert run_epochs(build(name, workdir, "processes"), 2) == full
    for k in cut_points(len(full), len(full) // 2):
        assert cut_and_resume(name, workdir, k, "processes") == full, k
    # a state saved with workers resumes without them, and the other way round
    k = len(full) // 2 - 1
    assert cut_and_resume(name, workdir, k, "processes", resume_prefetch=None) == full
    assert cut_and_resume(name, workdir, k, None, resume_prefetch="processes") == full


class _PidDataset(IndexableDataset):
    """Reports which process read each batch and which file handle it used."""

    def get_data(self, handle=None, request=None):
        (x,) = super().get_data(handle, request)
        return x, np.full(len(x), os.getpid())


def test_process_workers_read_in_parallel_processes():
    ds = _PidDataset({"x": np.arange(40)})
    s = Prefetch(
        DataStream(ds, iteration_scheme=SequentialScheme(40, 5)), workers=2, processes=True
    )
    out = list(s.get_epoch_iterator())
    assert np.concatenate([b[0] for b in out]).tolist() == list(range(40))
    pids = {int(b[1][0]) for b in out}
    assert len(pids) == 2 and os.getpid() not in pids


def test_hdf5_handle_is_per_process(workdir):
    from bricks.data import H5PYDataset

    ds = H5PYDataset(os.path.join(workdir, "resume.hdf5"), ("train",))
    ds.get_data(ds.open(), [0])  # the parent holds an open handle
    s = Prefetch(
        DataStream(ds, iteration_scheme=SequentialScheme(23, 5)), workers=2, processes=True
    )
    ids = np.concatenate([b[1] for b in s.get_epoch_iterator()])
    assert ids.tolist() == list(range(23))
    assert "_handle" in ds.__getstate__() and ds.__getstate__()["_handle"] is None


class _Failing(IndexableDataset):
    def __init__(self, data, mode):
        super().__init__(data)
        self.mode = mode

    def get_data(self, handle=None, request=None):
        if 12 in request:
            if self.mode == "die":
                os._exit(3)
            raise ValueError("bad example 12")
        return super().get_data(handle, request)


@pytest.mark.parametrize("processes", [False, True])
def test_worker_exception_is_reported(processes):
    s = Prefetch(
        DataStream(
            _Failing({"x": np.arange(20)}, "raise"), iteration_scheme=SequentialScheme(20, 4)
        ),
        workers=2,
        processes=processes,
    )
    it = s.get_epoch_iterator()
    assert [next(it)[0].tolist() for _ in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    with pytest.raises(WorkerError, match="bad example 12"):
        next(it)


def test_dead_worker_raises_within_seconds():
    s = Prefetch(
        DataStream(_Failing({"x": np.arange(20)}, "die"), iteration_scheme=SequentialScheme(20, 4)),
        workers=2,
        processes=True,
    )
    it = s.get_epoch_iterator()
    start = time.monotonic()
    with pytest.raises(WorkerError, match="exit code 3"):
        for _ in it:
            pass
    assert time.monotonic() - start < 5


def test_read_ahead_of_a_transformer_in_a_thread():
    base = DataStream(
        IndexableDataset({"x": np.arange(9)}), iteration_scheme=SequentialScheme(9, 2)
    )
    m = Mapping(base, lambda d: (d[0] * 2,))
    assert [b[0].tolist() for b in Prefetch(m).get_epoch_iterator()] == [
        [0, 2],
        [4, 6],
        [8, 10],
        [12, 14],
        [16],
    ]
    with pytest.raises(SchemeError, match="needs a DataStream"):
        Prefetch(m, workers=2)


def test_abandoned_epoch_keeps_workers_for_the_next_and_close_stops_them():
    s = Prefetch(
        DataStream(
            IndexableDataset({"x": np.arange(1000)}), iteration_scheme=SequentialScheme(1000, 10)
        ),
        workers=2,
        processes=True,
    )
    it = s.get_epoch_iterator()
    next(it)
    workers = list(it._inner.workers)
    start = time.monotonic()
    it.close()
    assert time.monotonic() - start < 3
    assert all(w.is_alive() for w in workers)  # persistent: the next epoch reuses them
    again = s.get_epoch_iterator()
    assert next(again)[0].tolist() == list(range(10))
    assert [w.pid for w in again._inner.workers] == [w.pid for w in workers]
    start = time.monotonic()
    s.close()
    assert time.monotonic() - start < 3
    assert not any(w.is_alive() for w in workers)
