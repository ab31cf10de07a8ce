"""Fuel's tests/test_datasets.py, in bricks.data's spelling."""

import itertools
import pickle
from collections import OrderedDict

import numpy as np
import pytest
from numpy.testing import assert_equal

from bricks.data import (
    BatchSizeScheme,
    ConstantScheme,
    Dataset,
    DataStream,
    IndexableDataset,
    IterableDataset,
    Mapping,
    ShuffledScheme,
)

DATA = [1, 2, 3]


def stream():
    return DataStream(IterableDataset(DATA))


@pytest.mark.ported("tests/test_datasets.py::TestDataset::test_one_example_at_a_time")
def test_one_example_at_a_time():
    assert_equal(list(stream().get_epoch_iterator()), list(zip(DATA)))


@pytest.mark.ported("tests/test_datasets.py::TestDataset::test_multiple_epochs")
def test_multiple_epochs():
    for _, epoch in zip(range(2), stream().iterate_epochs(), strict=False):
        assert list(epoch) == list(zip(DATA))


@pytest.mark.ported("tests/test_datasets.py::TestDataset::test_as_dict")
def test_as_dict():
    assert_equal(next(stream().get_epoch_iterator(as_dict=True)), {"data": 1})


@pytest.mark.ported("tests/test_datasets.py::TestDataset::test_value_error_on_no_provided_sources")
def test_value_error_on_no_provided_sources():
    class FaultyDataset(Dataset):
        def get_data(self, state=None, request=None):
            pass

    with pytest.raises(ValueError, match="provides"):
        FaultyDataset(DATA)


@pytest.mark.ported("tests/test_datasets.py::TestDataset::test_value_error_on_nonexistent_sources")
def test_value_error_on_nonexistent_sources():
    with pytest.raises(ValueError, match="dummy"):
        IterableDataset(DATA, sources=("dummy",))


@pytest.mark.ported("tests/test_datasets.py::TestDataset::test_default_transformer")
def test_default_transformer():
    class DoublingDataset(IterableDataset):
        def apply_default_transformer(self, stream):
            return Mapping(stream, lambda sources: tuple(2 * s for s in sources))

    dataset = DoublingDataset(DATA)
    stream = dataset.apply_default_transformer(DataStream(dataset))
    assert_equal(list(stream.get_epoch_iterator()), [(2,), (4,), (6,)])

    # and Fuel's declarative form, applied by DataStream.default_stream
    class Doubling(IterableDataset):
        default_transformers = ((Mapping, [lambda d: tuple(2 * s for s in d)], {}),)

    out = DataStream.default_stream(Doubling(DATA))
    assert_equal(list(out.get_epoch_iterator()), [(2,), (4,), (6,)])


@pytest.mark.ported("tests/test_datasets.py::TestDataset::test_no_axis_labels")
def test_no_axis_labels():
    assert IterableDataset(DATA).axis_labels is None


@pytest.mark.ported("tests/test_datasets.py::TestDataset::test_axis_labels")
def test_axis_labels():
    axis_labels = {"data": ("batch",)}
    assert IterableDataset(DATA, axis_labels=axis_labels).axis_labels == axis_labels


@pytest.mark.ported(
    "tests/test_datasets.py::TestDataset::test_attribute_error_on_no_example_iteration_scheme"
)
def test_attribute_error_on_no_example_iteration_scheme():
    class FaultyDataset(Dataset):
        provides_sources = ("data",)

        def get_data(self, state=None, request=None):
            pass

    with pytest.raises(AttributeError, match="example_iteration_scheme"):
        FaultyDataset().example_iteration_scheme  # noqa: B018


@pytest.mark.ported("tests/test_datasets.py::TestDataset::test_example_iteration_scheme")
def test_example_iteration_scheme():
    scheme = ConstantScheme(2)

    class MinimalDataset(Dataset):
        provides_sources = ("data",)
        _example_iteration_scheme = scheme

        def get_data(self, state=None, request=None):
            pass

    assert MinimalDataset().example_iteration_scheme is scheme


@pytest.mark.ported("tests/test_datasets.py::TestDataset::test_filter_sources")
def test_filter_sources():
    dataset = IterableDataset(OrderedDict([("1", [1, 2]), ("2", [3, 4])]), sources=("1",))
    assert_equal(dataset.filter_sources(([1, 2], [3, 4])), ([1, 2],))


@pytest.mark.ported("tests/test_datasets.py::TestIterableDataset::test_value_error_on_non_iterable_dict")
def test_iterable_value_error_on_non_iterable_dict():
    with pytest.raises(ValueError, match="expected an iterable"):
        IterableDataset({"x": None, "y": None})


@pytest.mark.ported(
    "tests/test_datasets.py::TestIterableDataset::test_value_error_on_non_iterable",
    "tests/test_datasets.py::TestIndexableDataset::test_value_error_on_non_iterable",
)
def test_iterable_value_error_on_non_iterable():
    with pytest.raises(ValueError, match="expected an iterable"):
        IterableDataset(None)
    with pytest.raises(ValueError, match="expected an array"):
        IndexableDataset(None)


@pytest.mark.ported("tests/test_datasets.py::TestIterableDataset::test_value_error_get_data_none_state")
def test_iterable_value_error_get_data_none_state():
    with pytest.raises(ValueError, match="state returned by open"):
        IterableDataset([1, 2, 3]).get_data(None, None)


@pytest.mark.ported("tests/test_datasets.py::TestIterableDataset::test_value_error_get_data_request")
def test_iterable_value_error_get_data_request():
    with pytest.raises(ValueError, match="expected request None"):
        IterableDataset([1, 2, 3]).get_data([1, 2, 3], True)


@pytest.mark.ported("tests/test_datasets.py::TestIndexableDataset::test_getattr")
def test_indexable_getattr():
    assert_equal(IndexableDataset({"a": (1, 2)}).a, (1, 2))
    with pytest.raises(AttributeError, match="'b'"):
        IndexableDataset({"a": (1, 2)}).b  # noqa: B018


@pytest.mark.ported("tests/test_datasets.py::TestIndexableDataset::test_value_error_get_data_state")
def test_indexable_value_error_get_data_state():
    with pytest.raises(ValueError, match="expected state None"):
        IndexableDataset([1, 2, 3]).get_data(True, [1, 2])


@pytest.mark.ported(
    "tests/test_datasets.py::TestIndexableDataset::test_value_error_get_data_none_request"
)
def test_indexable_value_error_get_data_none_request():
    with pytest.raises(ValueError, match="expected a request"):
        IndexableDataset([1, 2, 3]).get_data(None, None)


@pytest.mark.ported("tests/test_datasets.py::TestIndexableDataset::test_pickling")
def test_indexable_pickling():
    copy = pickle.loads(pickle.dumps(IndexableDataset({"a": (1, 2)})))
    assert copy.a == (1, 2)


@pytest.mark.ported(
    "tests/test_datasets.py::TestIndexableDataset::test_batch_iteration_scheme_with_lists"
)
def test_batch_iteration_scheme_with_lists():
    data = IndexableDataset(
        OrderedDict([("foo", list(range(50))), ("bar", list(range(1, 51)))])
    )
    stream = DataStream(data, iteration_scheme=ShuffledScheme(data.num_examples, 5))
    batches = list(stream.get_epoch_iterator())
    returned = [sum(column, []) for column in zip(*batches, strict=True)]
    assert set(returned[0]) == set(range(50))
    assert set(returned[1]) == set(range(1, 51))


@pytest.mark.ported("tests/test_datasets.py::test_sources_selection")
def test_sources_selection():
    features = [5, 6, 7, 1]
    targets = [1, 0, 1, 1]
    stream = DataStream(
        IterableDataset(OrderedDict([("features", features), ("targets", targets)]))
    )
    assert list(stream.get_epoch_iterator()) == list(zip(features, targets, strict=False))
    stream = DataStream(
        IterableDataset({"features": features, "targets": targets}, sources=("targets",))
    )
    assert list(stream.get_epoch_iterator()) == list(zip(targets))


class _DataDriven(IterableDataset):
    sources = ("data",)

    def __init__(self):
        self.axis_labels = None
        self.data = [[1, 2, 3, 4], [5, 6, 7, 8]]

    def open(self):
        epoch_iter = iter(self.data)
        data_iter = iter(next(epoch_iter))
        return (epoch_iter, data_iter)

    def next_epoch(self, state):
        try:
            data_iter = iter(next(state[0]))
            return (state[0], data_iter)
        except StopIteration:
            return self.open()

    def get_data(self, state, request):
        data = []
        for _ in range(request):
            data.append(next(state[1]))
        return (data,)


@pytest.mark.ported("tests/test_datasets.py::test_data_driven_epochs")
def test_data_driven_epochs():
    epochs = [[([1],), ([2],), ([3],), ([4],)], [([5],), ([6],), ([7],), ([8],)]]
    stream = DataStream(_DataDriven(), iteration_scheme=ConstantScheme(1))
    assert list(stream.get_epoch_iterator()) == epochs[0]
    assert list(stream.get_epoch_iterator()) == epochs[1]
    assert list(stream.get_epoch_iterator()) == epochs[0]

    stream.reset()
    for i, epoch in zip(range(2), stream.iterate_epochs(), strict=False):
        assert list(epoch) == epochs[i]

    class TestScheme(BatchSizeScheme):
        def get_request_iterator(self):
            return iter([1, 2, 1, 3])

    epochs = [[([1],), ([2, 3],), ([4],)], [([5],), ([6, 7],), ([8],)]]
    stream = DataStream(_DataDriven(), iteration_scheme=TestScheme())
    for i, epoch in zip(range(2), stream.iterate_epochs(), strict=False):
        assert list(epoch) == epochs[i]


def test_data_driven_epochs_resume_from_state():
    """bricks' addition: a data-driven stream resumes from a JSON state."""
    stream = DataStream(_DataDriven(), iteration_scheme=ConstantScheme(1))
    list(stream.get_epoch_iterator())
    it = stream.get_epoch_iterator()
    next(it)
    state = stream.get_state()
    fresh = DataStream(_DataDriven(), iteration_scheme=ConstantScheme(1))
    fresh.set_state(state)
    assert list(fresh.get_epoch_iterator()) == [([6],), ([7],), ([8],)]


@pytest.mark.ported("tests/test_datasets.py::test_num_examples")
def test_num_examples():
    with pytest.raises(ValueError, match="equal length"):
        IterableDataset({"features": range(10), "targets": range(7)})
    assert IterableDataset({"features": range(7), "targets": range(7)}).num_examples == 7
    assert np.isnan(IterableDataset(itertools.repeat(1)).num_examples)
    x, y = np.random.rand(5, 3), np.random.rand(5, 4)
    assert IndexableDataset({"features": x, "targets": y}).num_examples == 5
    with pytest.raises(ValueError, match="equal length"):
        IndexableDataset({"features": x, "targets": y[:4]})


def test_one_shot_iterator_serves_one_epoch_then_raises():
    """bricks: a generator is consumed by one epoch; a second is an error, not an empty epoch."""
    stream = DataStream(IterableDataset(iter([1, 2])))
    assert len(list(stream.get_epoch_iterator())) == 2
    with pytest.raises(ValueError, match="one-shot iterator"):
        stream.get_epoch_iterator()
