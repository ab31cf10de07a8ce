"""Padding up to length buckets, and PadBatch's full-size batches with an example mask."""

import doctest
import json
import math

import numpy as np
import pytest

import bricks.data._buckets as buckets_module
from bricks.data import (
    EXAMPLE_MASK,
    Batch,
    ConcatenatedScheme,
    ConstantScheme,
    DataStream,
    IndexableDataset,
    IterableDataset,
    PadBatch,
    Padding,
    SequentialScheme,
    TimeMajor,
)
from bricks.errors import BucketError, DataShapeError, SchemeError, SourceError


def sequences(lengths, batch_size):
    data = [np.arange(1, n + 1) for n in lengths]
    return Batch(DataStream(IterableDataset({"w": data})), ConstantScheme(batch_size))


def random_lengths(n=200, low=3, high=40, seed=0):
    return np.random.RandomState(seed).randint(low, high + 1, size=n).tolist()


def check_padded(w, mask, originals, length):
    assert w.shape == mask.shape == (len(originals), length)
    for row, m, x in zip(w, mask, originals, strict=True):
        assert m.tolist() == [1.0] * len(x) + [0.0] * (length - len(x))
        assert row.tolist() == x.tolist() + [0] * (length - len(x))


def test_pow2_buckets_pad_to_the_next_power_of_two_and_bound_the_lengths():
    lengths = random_lengths()
    seen = set()
    batches = Padding(sequences(lengths, 4), buckets="pow2").get_epoch_iterator()
    for i, (w, mask) in enumerate(batches):
        originals = [np.arange(1, n + 1) for n in lengths[4 * i : 4 * i + 4]]
        longest = max(len(x) for x in originals)
        expected = 2 ** math.ceil(math.log2(longest))
        check_padded(w, mask, originals, expected)
        seen.add(w.shape[1])
    assert len(seen) <= math.ceil(math.log2(40 / 3)) + 1
    assert seen <= {4, 8, 16, 32, 64}


def test_without_buckets_padding_stays_at_the_longest_sequence():
    w, mask = next(Padding(sequences([3, 5], 2)).get_epoch_iterator())
    check_padded(w, mask, [np.arange(1, 4), np.arange(1, 6)], 5)


def test_a_list_of_buckets_pads_to_the_smallest_that_holds_the_batch():
    stream = Padding(sequences([3, 5, 9, 10, 11, 2], 2), buckets=[4, 10, 16])
    shapes = [w.shape[1] for w, _ in stream.get_epoch_iterator()]
    assert shapes == [10, 10, 16]


def test_a_function_gives_the_padded_length():
    stream = Padding(sequences([3, 9], 1), buckets=lambda n: 8 * math.ceil(n / 8))
    assert [w.shape[1] for w, _ in stream.get_epoch_iterator()] == [8, 16]


def test_a_sequence_longer_than_the_largest_bucket_is_an_error_never_a_cut():
    stream = Padding(sequences([3, 70], 2), buckets=[16, 32, 64])
    with pytest.raises(BucketError) as info:
        next(stream.get_epoch_iterator())
    message = str(info.value)
    assert "'w'" in message and "70" in message and "[16, 32, 64]" in message
    assert isinstance(info.value, DataShapeError) and isinstance(info.value, ValueError)


def test_a_buckets_function_that_shortens_is_an_error():
    stream = Padding(sequences([5], 1), buckets=lambda n: n - 1)
    with pytest.raises(BucketError, match="gave 4 for length 5"):
        next(stream.get_epoch_iterator())


@pytest.mark.parametrize("bad", ["pow3", [], [8, 4], [0, 4], [4, 4], [2.5]])
def test_unknown_bucket_settings_are_refused(bad):
    with pytest.raises(SchemeError):
        Padding(sequences([3], 1), buckets=bad)


def test_bucket_padding_keeps_other_sources_and_each_source_gets_its_bucket():
    data = {"a": [np.arange(3), np.arange(5)], "b": [np.arange(9), np.arange(2)], "y": [0, 1]}
    stream = Padding(
        Batch(DataStream(IterableDataset(data)), ConstantScheme(2)),
        mask_sources=["a", "b"],
        buckets="pow2",
    )
    a, a_mask, b, b_mask, y = next(stream.get_epoch_iterator())
    assert stream.sources == ("a", "a_mask", "b", "b_mask", "y")
    assert a.shape == (2, 8) and b.shape == (2, 16) and y.tolist() == [0, 1]
    assert a_mask.sum() == 8 and b_mask.sum() == 11


def batches_of(n, batch_size, **extra):
    data = {"x": np.arange(n, dtype=np.float32), **extra}
    return DataStream(IndexableDataset(data), iteration_scheme=SequentialScheme(n, batch_size))


def test_pad_batch_repeats_examples_of_a_short_batch_and_masks_them():
    stream = PadBatch(batches_of(10, 4, y=np.arange(10) * 10))
    assert stream.sources == ("x", "y", EXAMPLE_MASK) and EXAMPLE_MASK == "example_mask"
    out = list(stream.get_epoch_iterator(as_dict=True))
    assert [b["x"].tolist() for b in out] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 8, 9]]
    assert out[-1]["y"].tolist() == [80, 90, 80, 90]
    assert [b[EXAMPLE_MASK].tolist() for b in out] == [[1.0] * 4, [1.0] * 4, [1, 1, 0, 0]]
    assert out[-1][EXAMPLE_MASK].dtype == np.float32


def test_pad_batch_then_bucketed_padding_gives_one_shape_for_a_ragged_epoch():
    lengths = random_lengths(n=10, low=3, high=7)
    data = [np.arange(1, n + 1) for n in lengths]
    stream = Batch(DataStream(IterableDataset({"w": data})), ConstantScheme(4))
    stream = TimeMajor(Padding(PadBatch(stream), mask_sources=["w"], buckets=[8]))
    shapes = {tuple(np.shape(a) for a in b) for b in stream.get_epoch_iterator()}
    assert shapes == {((8, 4), (8, 4), (4,))}  # w, w_mask, example_mask


def test_pad_batch_errors_name_what_came():
    with pytest.raises(DataShapeError, match="has 5 examples; expected 1 to batch_size=4"):
        next(PadBatch(batches_of(10, 5), batch_size=4).get_epoch_iterator())
    examples = DataStream(IterableDataset({"x": [1, 2]}))
    with pytest.raises(SchemeError, match="found one of examples"):
        PadBatch(examples)
    two_schemes = ConcatenatedScheme([SequentialScheme(2, 1), SequentialScheme(2, 2)])
    with pytest.raises(SchemeError, match="pass PadBatch"):
        PadBatch(DataStream(IndexableDataset({"x": np.arange(2)}), iteration_scheme=two_schemes))
    with pytest.raises(SourceError, match="padded twice"):
        PadBatch(PadBatch(batches_of(4, 2)))
    with pytest.raises(SchemeError, match="positive int"):
        PadBatch(batches_of(4, 2), batch_size=0)


def test_pad_batch_wants_the_batch_axis_first():
    stream = DataStream(
        IndexableDataset({"x": np.zeros((4, 3))}, axis_labels={"x": ("time", "batch")}),
        iteration_scheme=SequentialScheme(4, 2),
    )
    with pytest.raises(DataShapeError, match="batch axis first"):
        PadBatch(stream)


def test_pad_batch_resumes_mid_epoch():
    stream = PadBatch(batches_of(10, 4))
    it = stream.get_epoch_iterator()
    next(it)
    state = json.loads(json.dumps(stream.get_state()))
    rest = [(b[0].tolist(), b[1].tolist()) for b in it]
    again = PadBatch(batches_of(10, 4))
    again.set_state(state)
    assert [(b[0].tolist(), b[1].tolist()) for b in again.get_epoch_iterator()] == rest


def test_module_docstrings_run():
    assert doctest.testmod(buckets_module).failed == 0


def test_pad_batch_finds_the_batch_size_down_a_chain_of_transformers():
    stream = PadBatch(Padding(sequences([3, 5, 2], 2)))
    assert stream.batch_size == 2
    assert [m.tolist() for *_, m in stream.get_epoch_iterator()] == [[1, 1], [1, 0]]
