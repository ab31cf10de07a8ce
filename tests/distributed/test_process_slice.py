"""ProcessSlice: each process reads its block of every global batch; the state stays global."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from bricks.data import (
    ConstantScheme,
    DataStream,
    H5PYDataset,
    IndexableDataset,
    ProcessSlice,
    SequentialExampleScheme,
    SequentialScheme,
    ShuffledScheme,
    write_hdf5,
)
from bricks.errors import ProcessSliceError, SchemeError

N = 24


def _stream(index: int, count: int, seed: int = 5) -> DataStream:
    dataset = IndexableDataset({"x": np.arange(N * 2).reshape(N, 2), "id": np.arange(N)})
    return DataStream(dataset, iteration_scheme=ProcessSlice(ShuffledScheme(N, 6, seed=seed),
                                                             index, count))


def _global_batches(count: int, epochs: int = 2, state=None) -> list[np.ndarray]:
    """The global batches seen by ``count`` processes: their slices concatenated in order."""
    streams = [_stream(i, count) for i in range(count)]
    out = []
    for _ in range(epochs):
        iterators = []
        for s in streams:
            if state is not None:
                s.set_state(json.loads(json.dumps(state)))
            iterators.append(s.get_epoch_iterator(as_dict=True))
        state = None
        for parts in zip(*iterators, strict=True):
            out.append(np.concatenate([p["id"] for p in parts]))
    return out


def test_slices_concatenate_to_the_global_batches():
    one, two, three = _global_batches(1), _global_batches(2), _global_batches(3)
    assert len(one) == 8  # 4 batches x 2 epochs, a new order in epoch 2
    for a, b, c in zip(one, two, three, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert not np.array_equal(np.concatenate(one[:4]), np.concatenate(one[4:]))
    plain = DataStream(IndexableDataset({"id": np.arange(N)}),
                       iteration_scheme=ShuffledScheme(N, 6, seed=5))
    np.testing.assert_array_equal(next(plain.get_epoch_iterator())[0], one[0])


def test_state_saved_with_two_processes_resumes_on_one_and_on_three():
    streams = [_stream(i, 2) for i in range(2)]
    iterators = [s.get_epoch_iterator() for s in streams]
    for _ in range(3):  # three global batches into epoch 0
        [next(it) for it in iterators]
    states = [s.get_state() for s in streams]
    assert states[0] == states[1]  # the state is global: the same on every process
    uninterrupted = _global_batches(1, epochs=2)[3:]
    for count in (1, 3):
        resumed = _global_batches(count, epochs=2, state=states[0])
        assert len(resumed) == len(uninterrupted)
        for a, b in zip(resumed, uninterrupted, strict=True):
            np.testing.assert_array_equal(a, b)


def test_state_saved_with_one_process_resumes_on_two():
    stream = _stream(0, 1)
    it = stream.get_epoch_iterator()
    next(it)
    state = stream.get_state()
    resumed = _global_batches(2, epochs=1, state=state)
    np.testing.assert_array_equal(np.concatenate(resumed),
                                  np.concatenate(_global_batches(1, epochs=1)[1:]))


def test_hdf5_reads_only_the_process_rows(tmp_path, monkeypatch):
    path = tmp_path / "d.hdf5"
    write_hdf5(path, {"x": np.arange(16, dtype=np.float32).reshape(8, 2)})
    asked = []
    original = H5PYDataset._read_file

    def spy(self, f, s, request):
        asked.append(list(np.asarray(request).ravel()))
        return original(self, f, s, request)

    monkeypatch.setattr(H5PYDataset, "_read_file", spy)
    dataset = H5PYDataset(path, which_sets=("train",))
    stream = DataStream(dataset, iteration_scheme=ProcessSlice(SequentialScheme(8, 4), 1, 2))
    got = [x for (x,) in stream.get_epoch_iterator()]
    assert asked == [[2, 3], [6, 7]]
    np.testing.assert_array_equal(got[1], [[12, 13], [14, 15]])


def test_indivisible_global_batch_is_refused_by_name():
    scheme = ProcessSlice(SequentialScheme(10, 4), 0, 2)
    requests = scheme.get_request_iterator()
    assert next(requests) == [0, 1]
    assert next(requests) == [4, 5]
    assert next(requests) == [8]  # the last global batch [8, 9] divides too
    with pytest.raises(ProcessSliceError, match=r"global batch 0 of epoch 0 .* 4 examples.* 3 "):
        list(ProcessSlice(SequentialScheme(10, 4), 0, 3).get_request_iterator())
    last = ProcessSlice(SequentialScheme(9, 6), 1, 2).get_request_iterator(epoch=1)
    assert next(last) == [3, 4, 5]
    with pytest.raises(ProcessSliceError, match=r"global batch 1 of epoch 1 .* 3 examples"):
        next(last)
    assert issubclass(ProcessSliceError, SchemeError) and issubclass(ProcessSliceError, ValueError)


@pytest.mark.parametrize(
    "bad, match",
    [
        ((SequentialExampleScheme(4), 0, 2), "batch scheme"),
        ((ConstantScheme(4), 0, 2), "batch scheme"),
        ((SequentialScheme(4, 2), 2, 2), "process_index=2, process_count=2"),
        ((SequentialScheme(4, 2), 0, 0), "process_count=0"),
    ],
)
def test_bad_arguments(bad, match):
    with pytest.raises(ProcessSliceError, match=match):
        ProcessSlice(*bad)


def test_attributes_of_the_global_scheme_and_pickling():
    scheme = ProcessSlice(SequentialScheme(8, 4), 1, 2)
    assert scheme.batch_size == 4 and scheme.num_requests() == 2
    again = pickle.loads(pickle.dumps(scheme))
    assert list(again.get_request_iterator()) == [[2, 3], [6, 7]]


def test_doctest():
    import doctest

    import bricks.data._sharding as module

    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0


def test_slice_stream_wraps_the_leaf_scheme_under_transformers():
    from bricks.data import Batch, Mapping, Prefetch, slice_stream

    def leaf():
        return DataStream(IndexableDataset({"x": np.arange(8)}),
                          iteration_scheme=SequentialScheme(8, 4))

    stream = Prefetch(Mapping(leaf(), lambda d: (d[0] * 2,)), 1)
    assert slice_stream(stream, 0, 2) is stream
    assert [x.tolist() for (x,) in stream.get_epoch_iterator()] == [[0, 2], [8, 10]]
    single = leaf()
    assert slice_stream(single, 0, 1).iteration_scheme.__class__ is SequentialScheme
    with pytest.raises(ProcessSliceError, match="sliced already"):
        slice_stream(stream, 0, 2)
    examples = DataStream(IndexableDataset({"x": np.arange(8)}),
                          iteration_scheme=SequentialExampleScheme(8))
    with pytest.raises(ProcessSliceError, match=r"Batch draws or drops"):
        slice_stream(Batch(examples, ConstantScheme(4)), 0, 2)
    with pytest.raises(ProcessSliceError, match="expected a bricks DataStream"):
        slice_stream([{"x": np.zeros(2)}], 0, 2)
