"""Fuel's tests/transformers/test_transformers.py, in bricks.data's spelling."""

import logging
import operator
import pickle
from collections import OrderedDict

import numpy as np
import pytest
from numpy.testing import assert_equal

from bricks.data import (
    Batch,
    Cache,
    Cast,
    ConstantScheme,
    DataStream,
    ExpectsAxisLabels,
    Filter,
    FilterSources,
    Flatten,
    ForceFloatX,
    IndexableDataset,
    IterableDataset,
    Mapping,
    Merge,
    MultiProcessing,
    Padding,
    Rename,
    ScaleAndShift,
    SequentialExampleScheme,
    SequentialScheme,
    SortMapping,
    SourcewiseTransformer,
    ToBytes,
    Transformer,
    Unpack,
)

T = "tests/transformers/test_transformers.py::"


class FlagDataStream(DataStream):
    close_called = False
    reset_called = False
    next_epoch_called = False
    produces_examples = True

    def close(self):
        self.close_called = True
        super().close()

    def reset(self):
        self.reset_called = True
        super().reset()

    def next_epoch(self):
        self.next_epoch_called = True
        super().next_epoch()


def flagged():
    stream = FlagDataStream(IterableDataset([1, 2, 3]))
    return stream, Transformer(stream, produces_examples=True)


@pytest.mark.ported(T + "TestTransformer::test_close")
def test_transformer_close():
    stream, transformer = flagged()
    transformer.close()
    assert stream.close_called


@pytest.mark.ported(T + "TestTransformer::test_reset")
def test_transformer_reset():
    stream, transformer = flagged()
    transformer.reset()
    assert stream.reset_called


@pytest.mark.ported(T + "TestTransformer::test_next_epoch")
def test_transformer_next_epoch():
    stream, transformer = flagged()
    transformer.next_epoch()
    assert stream.next_epoch_called


@pytest.mark.ported(T + "TestTransformer::test_value_error_on_request")
def test_transformer_value_error_on_request():
    _, transformer = flagged()
    with pytest.raises(ValueError, match="expected no request"):
        transformer.get_data([0, 1])


@pytest.mark.ported(T + "TestTransformer::test_batch_to_example_and_vice_versa_not_implemented")
def test_batch_to_example_and_vice_versa_not_implemented():
    _, transformer = flagged()
    transformer.produces_examples = False
    transformer.get_epoch_iterator()
    with pytest.raises(NotImplementedError, match="from a stream of examples"):
        transformer.get_data()


@pytest.mark.ported(T + "TestTransformer::test_transform_example_not_implemented_by_default")
def test_transform_example_not_implemented_by_default():
    _, transformer = flagged()
    with pytest.raises(NotImplementedError):
        transformer.transform_example(None)


@pytest.mark.ported(T + "TestTransformer::test_transform_batch_not_implemented_by_default")
def test_transform_batch_not_implemented_by_default():
    _, transformer = flagged()
    with pytest.raises(NotImplementedError):
        transformer.transform_batch(None)


def test_fuel_style_transformer_subclass_resumes():
    """bricks: a Fuel-style subclass (transform_example only) keeps the state contract."""

    class Double(Transformer):
        def transform_example(self, example):
            return tuple(2 * x for x in example)

    def build():
        return Double(DataStream(IterableDataset([1, 2, 3])))

    a = build()
    it = a.get_epoch_iterator()
    assert int(next(it)[0]) == 2
    b = build()
    b.set_state(a.get_state())
    assert [int(x) for (x,) in b.get_epoch_iterator()] == [4, 6]


MDATA = [[1, 2, 3], [2, 3, 1], [3, 2, 1]]
MDATA_X = [[1, 2, 3], [2, 3, 1], [3, 2, 1]]
MDATA_Y = [[6, 5, 4], [6, 5, 4], [6, 5, 4]]


def mstream():
    return DataStream(IterableDataset(MDATA))


@pytest.mark.ported(T + "TestMapping::test_mapping")
def test_mapping():
    transformer = Mapping(mstream(), lambda d: ([2 * i for i in d[0]],))
    assert_equal(
        list(transformer.get_epoch_iterator()), list(zip([[2, 4, 6], [4, 6, 2], [6, 4, 2]]))
    )


@pytest.mark.ported(T + "TestMapping::test_mapping_dict")
def test_mapping_dict():
    def mapping(d):
        return {"data": [2 * i for i in d["data"]]}

    transformer = Mapping(mstream(), mapping, mapping_accepts=dict)
    assert_equal(
        list(transformer.get_epoch_iterator()), list(zip([[2, 4, 6], [4, 6, 2], [6, 4, 2]]))
    )


@pytest.mark.ported(T + "TestMapping::test_mapping_accepts_list_or_dict")
def test_mapping_accepts_list_or_dict():
    with pytest.raises(ValueError, match="list or dict"):
        Mapping(mstream(), lambda d: ([2 * i for i in d[0]],), mapping_accepts=int)


@pytest.mark.ported(T + "TestMapping::test_add_sources")
def test_add_sources():
    transformer = Mapping(mstream(), lambda d: ([2 * i for i in d[0]],), add_sources=("doubled",))
    assert_equal(transformer.sources, ("data", "doubled"))
    assert_equal(
        list(transformer.get_epoch_iterator()),
        list(zip(MDATA, [[2, 4, 6], [4, 6, 2], [6, 4, 2]], strict=False)),
    )


@pytest.mark.ported(T + "TestMapping::test_mapping_dict_add_sources")
def test_mapping_dict_add_sources():
    transformer = Mapping(
        mstream(),
        lambda d: {"doubled": [2 * i for i in d["data"]]},
        mapping_accepts=dict,
        add_sources=("doubled",),
    )
    assert_equal(transformer.sources, ("data", "doubled"))
    assert_equal(
        list(transformer.get_epoch_iterator()),
        list(zip(MDATA, [[2, 4, 6], [4, 6, 2], [6, 4, 2]], strict=False)),
    )


def test_mapping_dict_with_wrong_keys_raises():
    transformer = Mapping(mstream(), lambda d: {"other": d["data"]}, mapping_accepts=dict)
    with pytest.raises(ValueError, match="expected a dict with the sources"):
        next(transformer.get_epoch_iterator())


@pytest.mark.ported(T + "TestMapping::test_sort_mapping_trivial_key")
def test_sort_mapping_trivial_key():
    transformer = Mapping(mstream(), SortMapping(operator.itemgetter(0)))
    assert_equal(list(transformer.get_epoch_iterator()), list(zip([[1, 2, 3]] * 3)))


@pytest.mark.ported(T + "TestMapping::test_sort_mapping_alternate_key")
def test_sort_mapping_alternate_key():
    transformer = Mapping(mstream(), SortMapping(lambda x: -x[0]))
    assert_equal(list(transformer.get_epoch_iterator()), list(zip([[3, 2, 1]] * 3)))


@pytest.mark.ported(T + "TestMapping::test_sort_mapping_reverse")
def test_sort_mapping_reverse():
    transformer = Mapping(mstream(), SortMapping(operator.itemgetter(0), reverse=True))
    assert_equal(list(transformer.get_epoch_iterator()), list(zip([[3, 2, 1]] * 3)))


@pytest.mark.ported(T + "TestMapping::test_mapping_sort_multisource_ndarrays")
def test_mapping_sort_multisource_ndarrays():
    data = OrderedDict([("x", np.array(MDATA_X)), ("y", np.array(MDATA_Y))])
    data_sorted = [
        (np.array([1, 2, 3]), np.array([6, 5, 4])),
        (np.array([1, 2, 3]), np.array([4, 6, 5])),
        (np.array([1, 2, 3]), np.array([4, 5, 6])),
    ]
    transformer = Mapping(
        DataStream(IterableDataset(data)), mapping=SortMapping(operator.itemgetter(0))
    )
    assert_equal(list(transformer.get_epoch_iterator()), data_sorted)


@pytest.mark.ported(T + "TestMapping::test_mapping_sort_multisource")
def test_mapping_sort_multisource():
    data = OrderedDict([("x", MDATA_X), ("y", MDATA_Y)])
    data_sorted = [([1, 2, 3], [6, 5, 4]), ([1, 2, 3], [4, 6, 5]), ([1, 2, 3], [4, 5, 6])]
    transformer = Mapping(
        DataStream(IterableDataset(data)), mapping=SortMapping(operator.itemgetter(0))
    )
    assert_equal(list(transformer.get_epoch_iterator()), data_sorted)


@pytest.mark.ported(T + "TestMapping::test_value_error_on_request")
def test_mapping_value_error_on_request():
    transformer = Mapping(mstream(), lambda d: ([2 * i for i in d[0]],))
    with pytest.raises(ValueError, match="expected no request"):
        transformer.get_data([0, 1])


@pytest.mark.ported(T + "TestSourcewiseTransformer::test_transform_source_example_not_implemented")
def test_transform_source_example_not_implemented():
    transformer = SourcewiseTransformer(DataStream(IterableDataset([1, 2])), True)
    with pytest.raises(NotImplementedError):
        transformer.transform_source_example(None, "foo")


@pytest.mark.ported(T + "TestSourcewiseTransformer::test_transform_source_batch_not_implemented")
def test_transform_source_batch_not_implemented():
    transformer = SourcewiseTransformer(DataStream(IterableDataset([1, 2])), True)
    with pytest.raises(NotImplementedError):
        transformer.transform_source_batch(None, "foo")


FDATA = OrderedDict(
    [("features", np.ones((4, 2, 2))), ("targets", np.array([[0], [1], [0], [1]]))]
)


def fstream(scheme, axis_labels=None):
    return DataStream(IndexableDataset(FDATA), iteration_scheme=scheme, axis_labels=axis_labels)


@pytest.mark.ported(T + "TestFlatten::test_flatten_batches")
def test_flatten_batches():
    wrapper = Flatten(fstream(SequentialScheme(4, 2)), which_sources=("features",))
    assert_equal(
        list(wrapper.get_epoch_iterator()),
        [(np.ones((2, 4)), np.array([[0], [1]])), (np.ones((2, 4)), np.array([[0], [1]]))],
    )


@pytest.mark.ported(T + "TestFlatten::test_axis_labels_on_flatten_batches")
def test_axis_labels_on_flatten_batches():
    labels = {"features": ("batch", "width", "height"), "targets": ("batch", "index")}
    wrapper = Flatten(fstream(SequentialScheme(4, 2), labels), which_sources=("features",))
    assert_equal(
        wrapper.axis_labels, {"features": ("batch", "feature"), "targets": ("batch", "index")}
    )


@pytest.mark.ported(T + "TestFlatten::test_axis_labels_on_flatten_batches_with_none")
def test_axis_labels_on_flatten_batches_with_none():
    labels = {"features": None, "targets": ("batch", "index")}
    wrapper = Flatten(fstream(SequentialScheme(4, 2), labels), which_sources=("features",))
    assert_equal(wrapper.axis_labels, {"features": None, "targets": ("batch", "index")})


@pytest.mark.ported(T + "TestFlatten::test_flatten_examples")
def test_flatten_examples():
    wrapper = Flatten(fstream(SequentialExampleScheme(4)), which_sources=("features",))
    assert_equal(list(wrapper.get_epoch_iterator()), [(np.ones(4), 0), (np.ones(4), 1)] * 2)


@pytest.mark.ported(T + "TestFlatten::test_axis_labels_on_flatten_examples")
def test_axis_labels_on_flatten_examples():
    labels = {"features": ("batch", "width", "height"), "targets": ("batch", "index")}
    wrapper = Flatten(fstream(SequentialExampleScheme(4), labels), which_sources=("features",))
    assert_equal(wrapper.axis_labels, {"features": ("feature",), "targets": ("index",)})


def scale_stream():
    dataset = IterableDataset(
        OrderedDict([("features", [1, 2, 3]), ("targets", [0, 1, 0])]),
        axis_labels={"features": ("batch"), "targets": ("batch")},
    )
    return DataStream(dataset)


@pytest.mark.ported(T + "TestScaleAndShift::test_scale_and_shift")
def test_scale_and_shift():
    wrapper = ScaleAndShift(scale_stream(), 2, -1, which_sources=("targets",))
    assert_equal(list(wrapper.get_epoch_iterator()), [(1, -1), (2, 1), (3, -1)])


@pytest.mark.ported(T + "TestScaleAndShift::test_axis_labels_are_passed_through")
def test_scale_and_shift_axis_labels_are_passed_through():
    stream = scale_stream()
    wrapper = ScaleAndShift(stream, 2, -1, which_sources=("targets",))
    assert_equal(wrapper.axis_labels, stream.axis_labels)


def cast_stream():
    dataset = IterableDataset(
        OrderedDict([("features", np.array([1, 2, 3]).astype("float64")), ("targets", [0, 1, 0])]),
        axis_labels={"features": ("batch"), "targets": ("batch")},
    )
    return DataStream(dataset)


@pytest.mark.ported(T + "TestCast::test_cast")
def test_cast():
    wrapper = Cast(cast_stream(), "float32", which_sources=("features",))
    assert_equal(
        list(wrapper.get_epoch_iterator()),
        [(np.array(1), 0), (np.array(2), 1), (np.array(3), 0)],
    )
    assert all(f.dtype == "float32" for f, t in wrapper.get_epoch_iterator())


@pytest.mark.ported(T + "TestCast::test_axis_labels_are_passed_through")
def test_cast_axis_labels_are_passed_through():
    stream = cast_stream()
    wrapper = Cast(stream, "float32", which_sources=("features",))
    assert_equal(wrapper.axis_labels, stream.axis_labels)


def floatx_dataset():
    x = np.arange(6, dtype="float64").reshape((3, 2))
    y = np.arange(3, dtype="int64").reshape((3, 1))
    return IterableDataset(OrderedDict([("x", x), ("y", y)]))


@pytest.mark.ported(T + "TestForceFloatX::test_force_floatx")
def test_force_floatx():
    data = next(ForceFloatX(DataStream(floatx_dataset())).get_epoch_iterator())
    assert_equal(str(data[0].dtype), "float32")
    assert_equal(str(data[1].dtype), "int64")


@pytest.mark.ported(T + "TestForceFloatX::test_axis_labels_are_passed_through")
def test_force_floatx_axis_labels_are_passed_through():
    dataset = floatx_dataset()
    dataset.axis_labels = {"x": ("batch", "feature"), "y": ("batch", "index")}
    stream = DataStream(dataset)
    assert_equal(ForceFloatX(stream).axis_labels, stream.axis_labels)


@pytest.mark.ported(T + "TestFilter::test_filter_examples")
def test_filter_examples():
    wrapper = Filter(DataStream(IterableDataset([1, 2, 3])), lambda d: d[0] % 2 == 1)
    assert_equal(list(wrapper.get_epoch_iterator()), list(zip([1, 3])))


@pytest.mark.ported(T + "TestFilter::test_filter_batches")
def test_filter_batches():
    stream = DataStream(IndexableDataset([1, 2, 3, 4]), iteration_scheme=SequentialScheme(4, 2))
    wrapper = Filter(stream, lambda d: d[0][0] % 3 == 0)
    assert_equal(list(wrapper.get_epoch_iterator()), [([3, 4],)])


@pytest.mark.ported(T + "TestFilter::test_axis_labels_are_passed_through")
def test_filter_axis_labels_are_passed_through():
    stream = DataStream(
        IndexableDataset({"features": [1, 2, 3, 4]}, axis_labels={"features": ("batch",)}),
        iteration_scheme=SequentialScheme(4, 2),
    )
    wrapper = Filter(stream, lambda d: d[0][0] % 3 == 0)
    assert_equal(wrapper.axis_labels, stream.axis_labels)


def cache_child():
    return Batch(DataStream(IterableDataset(range(100))), ConstantScheme(11))


@pytest.mark.ported(T + "TestCache::test_cache_fills_correctly")
def test_cache_fills_correctly():
    cached_stream = Cache(cache_child(), ConstantScheme(7))
    epoch = cached_stream.get_epoch_iterator()
    sizes = [4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 0, 4]
    for (_features,), cache_size in zip(epoch, sizes, strict=False):
        assert_equal(len(cached_stream.cache[0]), cache_size)


@pytest.mark.ported(T + "TestCache::test_epoch_finishes_correctly")
def test_cache_epoch_finishes_correctly():
    cached_stream = Cache(cache_child(), ConstantScheme(7))
    data = list(cached_stream.get_epoch_iterator())
    assert_equal(len(data[-1][0]), 100 % 7)
    assert not cached_stream.cache[0]

    stream = Batch(DataStream(IterableDataset(range(3000))), ConstantScheme(3200))
    cached_stream = Cache(stream, ConstantScheme(64))
    data = list(cached_stream.get_epoch_iterator())
    assert_equal(len(data[-1][0]), 3000 % 64)
    assert not cached_stream.cache[0]


@pytest.mark.ported(T + "TestCache::test_epoch_transition")
def test_cache_epoch_transition():
    cached_stream = Cache(cache_child(), ConstantScheme(7, times=3))
    for _, epoch in zip(range(2), cached_stream.iterate_epochs(), strict=False):
        cache_sizes = [4, 8, 1]
        for i, (features,) in enumerate(epoch):
            assert_equal(len(cached_stream.cache[0]), cache_sizes[i])
            assert_equal(len(features), 7)
            assert_equal(list(range(100))[i * 7 : (i + 1) * 7], features)
        assert_equal(i, 2)


@pytest.mark.ported(T + "TestCache::test_value_error_on_non_batchsizescheme")
def test_cache_value_error_on_non_batchsizescheme():
    with pytest.raises(ValueError, match="scheme of batch sizes"):
        Cache(cache_child(), SequentialScheme(4, 2))


@pytest.mark.ported(T + "TestCache::test_value_error_on_none_request")
def test_cache_value_error_on_none_request():
    cached_stream = Cache(cache_child(), ConstantScheme(7))
    cached_stream.get_epoch_iterator()
    with pytest.raises(ValueError, match="drawn by its scheme"):
        cached_stream.get_data(None)


@pytest.mark.ported(T + "TestCache::test_axis_labels_passed_on_by_default")
def test_cache_axis_labels_passed_on_by_default():
    stream = cache_child()
    stream.axis_labels = {"features": ("batch", "index")}
    assert_equal(Cache(stream, ConstantScheme(7)).axis_labels, stream.axis_labels)


@pytest.mark.ported(T + "TestBatch::test_strictness_0")
def test_strictness_0():
    transformer = Batch(DataStream(IterableDataset([1, 2, 3, 4, 5])), ConstantScheme(2), 0)
    assert_equal(
        list(transformer.get_epoch_iterator()),
        [(np.array([1, 2]),), (np.array([3, 4]),), (np.array([5]),)],
    )


@pytest.mark.ported(T + "TestBatch::test_strictness_1")
def test_strictness_1():
    transformer = Batch(DataStream(IterableDataset([1, 2, 3, 4, 5])), ConstantScheme(2), 1)
    assert_equal(
        list(transformer.get_epoch_iterator()), [(np.array([1, 2]),), (np.array([3, 4]),)]
    )


@pytest.mark.ported(T + "TestBatch::test_strictness_2")
def test_strictness_2():
    transformer = Batch(DataStream(IterableDataset([1, 2, 3, 4, 5, 6])), ConstantScheme(2), 2)
    assert_equal(
        list(transformer.get_epoch_iterator()),
        [(np.array([1, 2]),), (np.array([3, 4]),), (np.array([5, 6]),)],
    )


@pytest.mark.ported(T + "TestBatch::test_strictness_2_error")
def test_strictness_2_error():
    transformer = Batch(DataStream(IterableDataset([1, 2, 3, 4, 5])), ConstantScheme(2), 2)
    with pytest.raises(ValueError, match="strictness=2"):
        list(transformer.get_epoch_iterator())


@pytest.mark.ported(T + "TestBatch::test_value_error_on_request_none")
def test_batch_value_error_on_request_none():
    transformer = Batch(DataStream(IterableDataset([1, 2, 3, 4, 5])), ConstantScheme(2))
    with pytest.raises(ValueError, match="drawn by its scheme"):
        transformer.get_data(None)


@pytest.mark.ported(T + "TestBatch::test_adds_batch_to_axis_labels")
def test_adds_batch_to_axis_labels():
    stream = DataStream(
        IterableDataset({"features": [1, 2, 3, 4, 5]}, axis_labels={"features": ("index",)})
    )
    transformer = Batch(stream, ConstantScheme(2), strictness=0)
    assert_equal(transformer.axis_labels, {"features": ("batch", "index")})


@pytest.mark.ported(T + "TestBatch::test_value_error_on_batch_stream")
def test_batch_value_error_on_batch_stream():
    stream = DataStream(IndexableDataset([1, 2, 3, 4]), iteration_scheme=SequentialScheme(4, 2))
    with pytest.raises(ValueError, match="found one of batches"):
        Batch(stream, SequentialScheme(4, 2))


@pytest.mark.ported(T + "TestBatch::test_value_error_on_example_scheme")
def test_batch_value_error_on_example_scheme():
    with pytest.raises(ValueError, match="scheme of batch sizes"):
        Batch(DataStream(IterableDataset([1, 2, 3, 4])), SequentialExampleScheme(4))


def unpack_child(data):
    return Batch(DataStream(IterableDataset(data)), iteration_scheme=ConstantScheme(2))


@pytest.mark.ported(T + "TestUnpack::test_unpack")
def test_unpack():
    for i, v in enumerate(Unpack(unpack_child(range(10))).get_epoch_iterator()):
        assert np.shape(v)[0] == 1
        assert v[0] == i


@pytest.mark.ported(T + "TestUnpack::test_unpack_picklable")
def test_unpack_picklable():
    epoch = Unpack(unpack_child(np.arange(10))).get_epoch_iterator()
    next(epoch)
    copy = pickle.loads(pickle.dumps(epoch))
    assert [int(v[0]) for v in copy] == list(range(1, 10))  # it resumes where it was


@pytest.mark.ported(T + "TestUnpack::test_value_error_on_example_stream")
def test_unpack_value_error_on_example_stream():
    stream = DataStream(IterableDataset(dict(features=[[1], [2, 3]], targets=[[4, 5, 6], [7]])))
    with pytest.raises(ValueError, match="found one of examples"):
        Unpack(stream)


@pytest.mark.ported(T + "TestUnpack::test_value_error_on_request")
def test_unpack_value_error_on_request():
    with pytest.raises(ValueError, match="expected no request"):
        Unpack(unpack_child(range(10))).get_data([0, 1])


@pytest.mark.ported(T + "TestUnpack::test_axis_labels_default")
def test_unpack_axis_labels_default():
    stream = unpack_child(range(10))
    stream.axis_labels = {"features": ("batch", "index")}
    assert_equal(Unpack(stream).axis_labels, {"features": ("index",)})


@pytest.mark.ported(T + "TestPadding::test_1d_sequences")
def test_padding_1d_sequences():
    stream = Batch(
        DataStream(IterableDataset([[1], [2, 3], [], [4, 5, 6], [7]])), ConstantScheme(2)
    )
    transformer = Padding(stream)
    assert_equal(transformer.sources, ("data", "data_mask"))
    assert_equal(
        list(transformer.get_epoch_iterator()),
        [
            (np.array([[1, 0], [2, 3]]), np.array([[1, 0], [1, 1]])),
            (np.array([[0, 0, 0], [4, 5, 6]]), np.array([[0, 0, 0], [1, 1, 1]])),
            (np.array([[7]]), np.array([[1]])),
        ],
    )


@pytest.mark.ported(T + "TestPadding::test_2d_sequences")
def test_padding_2d_sequences():
    stream = Batch(
        DataStream(IterableDataset([np.ones((3, 4)), 2 * np.ones((2, 4))])), ConstantScheme(2)
    )
    data, mask = next(Padding(stream).get_epoch_iterator())
    assert data.shape == (2, 3, 4)
    assert (data[0, :, :] == 1).all()
    assert (data[1, :2, :] == 2).all()
    assert (mask == np.array([[1, 1, 1], [1, 1, 0]])).all()


@pytest.mark.ported(T + "TestPadding::test_2d_sequences_error_on_unequal_shapes")
def test_padding_2d_sequences_error_on_unequal_shapes():
    stream = Batch(
        DataStream(IterableDataset([np.ones((3, 4)), 2 * np.ones((2, 3))])), ConstantScheme(2)
    )
    with pytest.raises(ValueError, match="like example 0"):
        next(Padding(stream).get_epoch_iterator())


def two_sources(ordered=False):
    data = dict(features=[[1], [2, 3]], targets=[[4, 5, 6], [7]])
    if ordered:
        data = OrderedDict([("features", [[1], [2, 3]]), ("targets", [[4, 5, 6], [7]])])
    return Batch(DataStream(IterableDataset(data)), ConstantScheme(2))


@pytest.mark.ported(T + "TestPadding::test_two_sources")
def test_padding_two_sources():
    assert len(next(Padding(two_sources()).get_epoch_iterator())) == 4


@pytest.mark.ported(T + "TestPadding::test_mask_dtype")
def test_padding_mask_dtype():
    transformer = Padding(two_sources(), mask_dtype="uint8")
    assert_equal(str(next(transformer.get_epoch_iterator())[1].dtype), "uint8")


@pytest.mark.ported(T + "TestPadding::test_mask_sources")
def test_padding_mask_sources():
    transformer = Padding(two_sources(ordered=True), mask_sources=("features",))
    assert_equal(len(next(transformer.get_epoch_iterator())), 3)


@pytest.mark.ported(T + "TestPadding::test_value_error_on_request")
def test_padding_value_error_on_request():
    with pytest.raises(ValueError, match="expected no request"):
        Padding(two_sources()).get_data([0, 1])


@pytest.mark.ported(T + "TestPadding::test_value_error_on_example_stream")
def test_padding_value_error_on_example_stream():
    stream = DataStream(IterableDataset(dict(features=[[1], [2, 3]], targets=[[4, 5, 6], [7]])))
    with pytest.raises(ValueError, match="found one of examples"):
        Padding(stream)


def merge_streams():
    return (
        DataStream(IterableDataset(["Hello world!"])),
        DataStream(IterableDataset(["Bonjour le monde!"])),
    )


def merge_batch_streams():
    return (
        Batch(DataStream(IterableDataset(["Hello world!", "Hi!"])), ConstantScheme(2)),
        Batch(DataStream(IterableDataset(["Bonjour le monde!", "Salut!"])), ConstantScheme(2)),
    )


@pytest.mark.ported(T + "TestMerge::test_sources")
def test_merge_sources():
    assert_equal(Merge(merge_streams(), ("english", "french")).sources, ("english", "french"))


def _merge_twice(transformer, expected):
    for _ in range(2):  # resetting Merge used to be a problem in Fuel
        it = transformer.get_epoch_iterator()
        assert_equal(next(it), expected)
        with pytest.raises(StopIteration):
            next(it)


@pytest.mark.ported(T + "TestMerge::test_merge", T + "TestMerge::test_merge_batch_streams")
def test_merge():
    _merge_twice(
        Merge(merge_streams(), ("english", "french")), ("Hello world!", "Bonjour le monde!")
    )


@pytest.mark.ported(T + "TestMerge::test_batch_merge")
def test_batch_merge():
    _merge_twice(
        Merge(merge_batch_streams(), ("english", "french")),
        (("Hello world!", "Hi!"), ("Bonjour le monde!", "Salut!")),
    )


@pytest.mark.ported(T + "TestMerge::test_as_dict")
def test_merge_as_dict():
    transformer = Merge(merge_streams(), ("english", "french"))
    assert_equal(
        next(transformer.get_epoch_iterator(as_dict=True)),
        {"english": "Hello world!", "french": "Bonjour le monde!"},
    )


@pytest.mark.ported(T + "TestMerge::test_error_on_wrong_number_of_sources")
def test_merge_error_on_wrong_number_of_sources():
    with pytest.raises(ValueError, match="distinct source names"):
        Merge(merge_streams(), ("english",))


@pytest.mark.ported(T + "TestMerge::test_value_error_on_different_stream_output_type")
def test_merge_value_error_on_different_stream_output_type():
    spanish = DataStream(IndexableDataset(["Hola mundo!"]), iteration_scheme=SequentialScheme(2, 2))
    with pytest.raises(ValueError, match="all of examples or all of batches"):
        Merge(merge_streams() + (spanish,), ("english", "french", "spanish"))


def flag_streams():
    return [FlagDataStream(IterableDataset([i, i + 1, i + 2])) for i in (1, 4, 7)]


@pytest.mark.ported(T + "TestMerge::test_close_calls_close_on_all_streams")
def test_merge_close_calls_close_on_all_streams():
    streams = flag_streams()
    Merge(streams, ("1", "2", "3")).close()
    assert all(stream.close_called for stream in streams)


@pytest.mark.ported(T + "TestMerge::test_next_epoch_calls_next_epoch_on_all_streams")
def test_merge_next_epoch_calls_next_epoch_on_all_streams():
    streams = flag_streams()
    Merge(streams, ("1", "2", "3")).next_epoch()
    assert all(stream.next_epoch_called for stream in streams)


@pytest.mark.ported(T + "TestMerge::test_reset_calls_reset_on_all_streams")
def test_merge_reset_calls_reset_on_all_streams():
    streams = flag_streams()
    Merge(streams, ("1", "2", "3")).reset()
    assert all(stream.reset_called for stream in streams)
    assert Merge(streams, ("1", "2", "3")).data_streams == streams


def mp_transformer():
    return Mapping(DataStream(IterableDataset(range(100))), lambda x: (x[0] + 1,))


@pytest.mark.ported(T + "TestMultiprocessing::test_multiprocessing")
def test_multiprocessing():
    background = MultiProcessing(mp_transformer())
    assert_equal(list(background.get_epoch_iterator()), list(zip(range(1, 101))))


@pytest.mark.ported(T + "TestMultiprocessing::test_value_error_on_request")
def test_multiprocessing_value_error_on_request():
    with pytest.raises(ValueError, match="expected no request"):
        MultiProcessing(mp_transformer()).get_data([0, 1])


@pytest.mark.ported(T + "TestMultiprocessing::test_axis_labels_passed_on_by_default")
def test_multiprocessing_axis_labels_passed_on_by_default():
    transformer = mp_transformer()
    transformer.axis_labels = {"features": ("batch", "index")}
    assert_equal(MultiProcessing(transformer).axis_labels, transformer.axis_labels)


def rename_stream():
    return DataStream(
        IndexableDataset(
            OrderedDict([("X", np.ones((4, 2, 2))), ("y", np.array([0, 1, 0, 1]))]),
            axis_labels={"X": ("batch", "width", "height"), "y": ("batch",)},
        ),
        iteration_scheme=SequentialScheme(4, 2),
    )


def renamed():
    return Rename(rename_stream(), {"X": "features", "y": "targets"})


@pytest.mark.ported(T + "TestRename::test_renames_sources")
def test_renames_sources():
    assert_equal(renamed().sources, ("features", "targets"))


@pytest.mark.ported(T + "TestRename::test_leaves_data_unchanged")
def test_rename_leaves_data_unchanged():
    assert_equal(
        list(renamed().get_epoch_iterator()),
        [(np.ones((2, 2, 2)), np.array([0, 1])), (np.ones((2, 2, 2)), np.array([0, 1]))],
    )


@pytest.mark.ported(T + "TestRename::test_raises_error_on_nonexistent_source_name")
def test_rename_raises_error_on_nonexistent_source_name():
    with pytest.raises(KeyError, match="no source 'Z'"):
        Rename(rename_stream(), {"Z": "features"})


@pytest.mark.ported(T + "TestRename::test_raises_on_invalid_kwargs")
def test_rename_raises_on_invalid_kwargs():
    with pytest.raises(ValueError, match="on_non_existent"):
        Rename(rename_stream(), {"X": "features"}, on_non_existent="foo")


@pytest.mark.ported(T + "TestRename::test_name_clash")
def test_rename_name_clash():
    with pytest.raises(KeyError, match="duplicate"):
        Rename(rename_stream(), {"X": "y"})


@pytest.mark.ported(T + "TestRename::test_not_really_a_name_clash")
def test_rename_not_really_a_name_clash():
    Rename(rename_stream(), {"foobar": "y"}, on_non_existent="ignore")


@pytest.mark.ported(T + "TestRename::test_name_swap")
def test_rename_name_swap():
    swapped = Rename(rename_stream(), {"X": "y", "y": "X"}, on_non_existent="ignore")
    assert_equal(swapped.sources, ("y", "X"))


@pytest.mark.ported(T + "TestRename::test_raises_on_not_one_to_one")
def test_rename_raises_on_not_one_to_one():
    with pytest.raises(KeyError, match="duplicate"):
        Rename(rename_stream(), {"X": "features", "y": "features"})


@pytest.mark.ported(T + "TestRename::test_intentionally_ignore_missing")
def test_rename_intentionally_ignore_missing():
    names = {"X": "features", "y": "targets", "Z": "fudgesicle"}
    assert_equal(
        Rename(rename_stream(), names, on_non_existent="ignore").sources, ("features", "targets")
    )


def test_rename_warns_on_missing(caplog):
    with caplog.at_level(logging.WARNING):
        Rename(rename_stream(), {"Z": "z"}, on_non_existent="warn")
    assert "no source 'Z'" in caplog.text


@pytest.mark.ported(T + "TestRename::test_not_one_to_one_ok_if_not_a_source_in_data_stream")
def test_rename_not_one_to_one_ok_if_not_a_source_in_data_stream():
    names = {"X": "features", "y": "targets", "Z": "targets"}
    assert_equal(
        Rename(rename_stream(), names, on_non_existent="ignore").sources, ("features", "targets")
    )


@pytest.mark.ported(T + "TestRename::test_renames_axis_labels")
def test_renames_axis_labels():
    assert_equal(
        renamed().axis_labels,
        {"features": ("batch", "width", "height"), "targets": ("batch",)},
    )


def fs_stream():
    return DataStream(
        IndexableDataset(
            OrderedDict([("features", np.ones((4, 2, 2))), ("targets", np.array([0, 1, 0, 1]))]),
            axis_labels={"features": ("batch", "width", "height"), "targets": ("batch",)},
        ),
        iteration_scheme=SequentialScheme(4, 2),
    )


@pytest.mark.ported(T + "TestFilterSources::test_works_on_sourcessubset")
def test_filter_sources_works_on_sourcessubset():
    transformer = FilterSources(fs_stream(), sources=("features",))
    assert_equal(transformer.sources, ("features",))
    assert_equal(
        list(transformer.get_epoch_iterator()), [(np.ones((2, 2, 2)),), (np.ones((2, 2, 2)),)]
    )


@pytest.mark.ported(T + "TestFilterSources::test_works_on_all_sources")
def test_filter_sources_works_on_all_sources():
    transformer = FilterSources(fs_stream(), sources=("features", "targets"))
    assert_equal(transformer.sources, ("features", "targets"))
    assert_equal(
        list(transformer.get_epoch_iterator()),
        [(np.ones((2, 2, 2)), np.array([0, 1])), (np.ones((2, 2, 2)), np.array([0, 1]))],
    )


@pytest.mark.ported(T + "TestFilterSources::test_works_on_unsorted_sources")
def test_filter_sources_works_on_unsorted_sources():
    transformer = FilterSources(fs_stream(), sources=("targets", "features"))
    assert_equal(transformer.sources, ("features", "targets"))


@pytest.mark.ported(T + "TestFilterSources::test_raises_value_error_on_nonexistent_sources")
def test_filter_sources_raises_value_error_on_nonexistent_sources():
    with pytest.raises(ValueError, match="'error'"):
        FilterSources(fs_stream(), ["error", "targets"])


@pytest.mark.ported(T + "TestFilterSources::test_filters_axis_labels")
def test_filter_sources_filters_axis_labels():
    transformer = FilterSources(fs_stream(), sources=("features",))
    assert_equal(transformer.axis_labels, {"features": ("batch", "width", "height")})


@pytest.mark.ported(T + "TestExpectsAxisLabels::test_warning")
def test_expects_axis_labels_warning(caplog):
    obj = ExpectsAxisLabels()
    with caplog.at_level(logging.WARNING):
        obj.verify_axis_labels(("a", "b", "c"), None, "foo")
    assert len(caplog.records) == 1
    assert caplog.records[0].levelno == logging.WARNING


@pytest.mark.ported(T + "TestExpectsAxisLabels::test_exception")
def test_expects_axis_labels_exception():
    with pytest.raises(ValueError, match="expected \\('a', 'b', 'c'\\)"):
        ExpectsAxisLabels().verify_axis_labels(("a", "b", "c"), ("b", "c", "d"), "foo")


STRINGS = [b"Hello", b"World!"]


def bytes_dataset():
    return IndexableDataset(
        indexables={"words": [np.frombuffer(s, dtype="uint8") for s in STRINGS]},
        axis_labels={"words": ("batch", "bytes")},
    )


@pytest.mark.ported(T + "TestToBytes::test_examplewise")
def test_to_bytes_examplewise():
    stream = DataStream(bytes_dataset(), iteration_scheme=SequentialExampleScheme(2))
    assert_equal(STRINGS, [s for (s,) in ToBytes(stream).get_epoch_iterator()])


@pytest.mark.ported(T + "TestToBytes::test_batchwise")
def test_to_bytes_batchwise():
    stream = DataStream(bytes_dataset(), iteration_scheme=SequentialScheme(2, 2))
    assert_equal([STRINGS], [s for (s,) in ToBytes(stream).get_epoch_iterator()])
