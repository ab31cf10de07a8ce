"""Fuel's tests/test_streams.py, in bricks.data's spelling."""

import numpy as np
import pytest
from numpy.testing import assert_equal

from bricks.data import (
    AbstractDataStream,
    DataStream,
    IndexableDataset,
    IterableDataset,
    SequentialExampleScheme,
    SequentialScheme,
)


class DummyDataStream(AbstractDataStream):
    def get_epoch_iterator(self, as_dict=False):
        pass


@pytest.mark.ported(
    "tests/test_streams.py::TestAbstractDataStream::"
    "test_raises_value_error_on_no_scheme_no_produces_examples"
)
def test_raises_value_error_on_no_scheme_no_produces_examples():
    stream = DummyDataStream()
    with pytest.raises(ValueError, match="set produces_examples"):
        stream.produces_examples  # noqa: B018


@pytest.mark.ported(
    "tests/test_streams.py::TestAbstractDataStream::"
    "test_raises_value_error_when_setting_produces_examples_if_scheme"
)
def test_raises_value_error_when_setting_produces_examples_if_scheme():
    stream = DummyDataStream(SequentialExampleScheme(2))
    with pytest.raises(ValueError, match="decided by its iteration scheme"):
        stream.produces_examples = True


@pytest.mark.ported("tests/test_streams.py::TestDataStream::test_sources_setter")
def test_sources_setter():
    stream = DataStream(IterableDataset(np.eye(2)))
    stream.sources = ("features",)
    assert_equal(stream.sources, ("features",))
    assert list(stream.get_epoch_iterator(as_dict=True))[0].keys() == {"features"}


def test_sources_setter_selects_or_refuses():
    """bricks: a subset of the dataset's sources selects them; other lengths raise."""
    ds = IterableDataset({"x": [1, 2], "y": [3, 4]})
    stream = DataStream(ds)
    stream.sources = ("y",)
    assert [int(y) for (y,) in stream.get_epoch_iterator()] == [3, 4]
    with pytest.raises(ValueError, match="to rename"):
        stream.sources = ("a", "b", "c")


@pytest.mark.ported("tests/test_streams.py::TestDataStream::test_no_axis_labels")
def test_no_axis_labels():
    assert DataStream(IterableDataset(np.eye(2))).axis_labels is None


@pytest.mark.ported("tests/test_streams.py::TestDataStream::test_axis_labels_on_produces_examples")
def test_axis_labels_on_produces_examples():
    dataset = IterableDataset(np.eye(2))
    dataset.axis_labels = {"data": ("batch", "features")}
    assert_equal(DataStream(dataset).axis_labels, {"data": ("features",)})


@pytest.mark.ported("tests/test_streams.py::TestDataStream::test_axis_labels_on_produces_batches")
def test_axis_labels_on_produces_batches():
    dataset = IndexableDataset(np.eye(2))
    axis_labels = {"data": ("batch", "features")}
    dataset.axis_labels = axis_labels
    stream = DataStream(dataset, iteration_scheme=SequentialScheme(2, 2))
    assert_equal(stream.axis_labels, axis_labels)


@pytest.mark.ported("tests/test_streams.py::TestDataStream::test_produces_examples")
def test_produces_examples():
    stream = DataStream(IterableDataset(np.eye(2)), iteration_scheme=SequentialExampleScheme(2))
    assert stream.produces_examples
