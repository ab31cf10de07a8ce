"""Outputs of streams and transformers, checked against hand-computed values."""

import numpy as np
import pytest

from bricks.data import (
    Batch,
    Cache,
    Cast,
    ConstantScheme,
    DataStream,
    Filter,
    FilterSources,
    Flatten,
    IndexableDataset,
    IterableDataset,
    Mapping,
    Merge,
    NGrams,
    Padding,
    RandomCrop,
    RandomFlip,
    Rename,
    ScaleAndShift,
    SequentialExampleScheme,
    SequentialScheme,
    SortMapping,
    TimeMajor,
    Unpack,
    Window,
    bucket_by_length,
)
from bricks.errors import BatchStrictnessError, DataShapeError, SchemeError, SourceError


def examples(n=5, **extra):
    data = {"x": np.arange(n), **extra}
    return DataStream(IndexableDataset(data), iteration_scheme=SequentialExampleScheme(n))


def batches(n=10, size=5):
    return DataStream(
        IndexableDataset({"x": np.arange(n), "y": np.arange(n) * 10}),
        iteration_scheme=SequentialScheme(n, size),
    )


def values(stream, k=0):
    return [np.asarray(b[k]).tolist() for b in stream.get_epoch_iterator()]


def test_datastream_tuples_and_dicts():
    s = batches(5, 2)
    assert s.sources == ("x", "y") and not s.produces_examples
    assert values(s) == [[0, 1], [2, 3], [4]]
    d = next(s.get_epoch_iterator(as_dict=True))
    assert set(d) == {"x", "y"} and d["y"].tolist() == [0, 10]
    assert examples().produces_examples


def test_two_loops_read_one_stream_at_once():
    s = batches(6, 2)
    a, b = s.get_epoch_iterator(), s.get_epoch_iterator()
    assert next(a)[0].tolist() == [0, 1]
    assert next(b)[0].tolist() == [0, 1]
    assert next(a)[0].tolist() == [2, 3]
    assert [x[0].tolist() for x in b] == [[2, 3], [4, 5]]


def test_batch_strictness():
    assert values(Batch(examples(5), ConstantScheme(2))) == [[0, 1], [2, 3], [4]]
    assert values(Batch(examples(5), ConstantScheme(2), strictness=1)) == [[0, 1], [2, 3]]
    it = Batch(examples(5), ConstantScheme(2), strictness=2).get_epoch_iterator()
    assert next(it)[0].tolist() == [0, 1] and next(it)[0].tolist() == [2, 3]
    with pytest.raises(BatchStrictnessError, match="1 examples, expected 2"):
        next(it)
    assert values(Batch(examples(6), ConstantScheme(2), strictness=2)) == [[0, 1], [2, 3], [4, 5]]
    assert values(Batch(examples(5), ConstantScheme(2, num_examples=3))) == [[0, 1], [2]]
    with pytest.raises(SchemeError):
        Batch(batches(), ConstantScheme(2))


def test_unpack_and_mapping_add_sources():
    assert values(Unpack(batches(5, 2))) == [0, 1, 2, 3, 4]
    m = Mapping(batches(4, 2), lambda d: (d[0] + d[1],), add_sources=("z",))
    assert m.sources == ("x", "y", "z") and values(m, 2) == [[0, 11], [22, 33]]
    with pytest.raises(DataShapeError, match="returned 1 values, expected 2"):
        next(Mapping(batches(4, 2), lambda d: (d[0],)).get_epoch_iterator())


def test_padding_values_and_masks():
    seqs = [[1, 2, 3], [4], [5, 6]]
    s = Batch(DataStream(IterableDataset({"w": seqs, "y": [0, 1, 2]})), ConstantScheme(3))
    p = Padding(s, mask_sources=("w",))
    assert p.sources == ("w", "w_mask", "y")
    w, mask, y = next(p.get_epoch_iterator())
    np.testing.assert_array_equal(w, [[1, 2, 3], [4, 0, 0], [5, 6, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 0], [1, 1, 0]])
    assert mask.dtype == np.float32 and mask.shape == (3, 3) and y.tolist() == [0, 1, 2]
    tw, tmask, _ = next(TimeMajor(p, which_sources=("w", "w_mask")).get_epoch_iterator())
    np.testing.assert_array_equal(tw, w.T)
    assert tmask.shape == (3, 3) and tmask[:, 1].tolist() == [1, 0, 0]
    # multi-dimensional steps keep their trailing shape
    feats = [np.ones((2, 4)), np.ones((3, 4))]
    s2 = Batch(DataStream(IterableDataset({"f": feats})), ConstantScheme(2))
    f, fm = next(Padding(s2).get_epoch_iterator())
    assert f.shape == (2, 3, 4) and fm.tolist() == [[1, 1, 0], [1, 1, 1]]
    bad = Batch(
        DataStream(IterableDataset({"f": [np.ones((2, 4)), np.ones((3, 5))]})), ConstantScheme(2)
    )
    with pytest.raises(DataShapeError, match="'f', example 1"):
        next(Padding(bad).get_epoch_iterator())


def test_filter_and_cache_refill_sizes():
    assert values(Filter(examples(6), lambda d: d[0] % 2 == 0)) == [0, 2, 4]
    assert values(Cache(batches(10, 5), ConstantScheme(3))) == [
        [0, 1, 2],
        [3, 4, 5],
        [6, 7, 8],
        [9],
    ]
    # a request bigger than cache + one child batch takes what one refill gives
    assert [len(b) for b in values(Cache(batches(10, 2), ConstantScheme(5)))] == [2, 2, 2, 2, 2]
    assert [len(b) for b in values(Cache(batches(10, 4), ConstantScheme(3)))] == [3, 3, 3, 1]
    assert [len(b) for b in values(Cache(batches(10, 5), ConstantScheme(3, times=2)))] == [3, 3]


def test_sort_mapping_and_bucketing():
    lengths = [5, 1, 4, 2, 3, 6, 2, 1]
    seqs = [list(range(n)) for n in lengths]
    s = DataStream(IterableDataset({"w": seqs, "id": list(range(8))}))
    m = Mapping(Batch(s, ConstantScheme(4)), SortMapping(lambda ex: len(ex[0])))
    ids = values(m, 1)
    assert ids == [[1, 3, 2, 0], [7, 6, 4, 5]]
    b = bucket_by_length(s, 2, sort_batches=2)
    got = [[len(w) for w in batch] for (batch, _) in b.get_epoch_iterator()]
    assert got == [[1, 2], [4, 5], [1, 2], [3, 6]]


def test_sourcewise_transformers():
    data = {"f": np.arange(12, dtype=np.uint8).reshape(2, 2, 3), "t": np.array([1, 2])}
    s = DataStream(IndexableDataset(data), iteration_scheme=SequentialScheme(2, 2))
    assert next(Flatten(s, ("f",)).get_epoch_iterator())[0].shape == (2, 6)
    sc = next(ScaleAndShift(s, 1 / 255.0, -0.5, which_sources="f").get_epoch_iterator())[0]
    assert sc.dtype == np.float32
    np.testing.assert_allclose(sc, data["f"] / 255.0 - 0.5, rtol=1e-6)
    assert next(Cast(s, "int32", ("t",)).get_epoch_iterator())[1].dtype == np.int32
    r = Rename(s, {"f": "features"})
    assert r.sources == ("features", "t")
    fs = FilterSources(s, ("t",))
    assert fs.sources == ("t",) and values(fs) == [[1, 2]]
    with pytest.raises(SourceError, match="did you mean 'f'"):
        FilterSources(s, ("ff",))
    with pytest.raises(SourceError, match="unknown source 'x'"):
        Flatten(s, ("x",))


def test_merge():
    a = batches(4, 2)
    b = DataStream(IndexableDataset({"z": -np.arange(6)}), iteration_scheme=SequentialScheme(6, 2))
    m = Merge([a, b], ("x", "y", "z"))
    assert values(m, 2) == [[0, -1], [-2, -3]]
    with pytest.raises(SourceError):
        Merge([a, b], ("x", "y"))


def test_window_and_ngrams():
    s = DataStream(IterableDataset({"text": [np.arange(7), np.arange(2)]}))
    w = Window(s, source_window=3, target_window=3, offset=1, overlapping=True)
    assert w.sources == ("text", "targets")
    pairs = [(a.tolist(), b.tolist()) for a, b in w.get_epoch_iterator()]
    assert pairs == [
        ([0, 1, 2], [1, 2, 3]),
        ([1, 2, 3], [2, 3, 4]),
        ([2, 3, 4], [3, 4, 5]),
        ([3, 4, 5], [4, 5, 6]),
    ]
    ng = [(a.tolist(), int(b)) for a, b in NGrams(s, 3).get_epoch_iterator()]
    assert ng == [([0, 1, 2], 3), ([1, 2, 3], 4), ([2, 3, 4], 5), ([3, 4, 5], 6)]


def test_image_transforms_are_seeded_and_correct():
    imgs = np.arange(2 * 1 * 4 * 4, dtype=np.float32).reshape(2, 1, 4, 4)
    s = DataStream(IndexableDataset({"features": imgs}), iteration_scheme=SequentialScheme(2, 2))
    (flipped,) = next(RandomFlip(s, probability=1.0).get_epoch_iterator())
    np.testing.assert_array_equal(flipped, imgs[..., ::-1])
    (same,) = next(RandomFlip(s, probability=0.0).get_epoch_iterator())
    np.testing.assert_array_equal(same, imgs)
    crop = RandomCrop(s, (2, 2), seed=3)
    (c1,) = next(crop.get_epoch_iterator())
    (c2,) = next(RandomCrop(s, (2, 2), seed=3).get_epoch_iterator())
    assert c1.shape == (2, 1, 2, 2)
    np.testing.assert_array_equal(c1, c2)
    for k in range(2):  # every crop is a window of its image
        windows = [imgs[k, 0, i : i + 2, j : j + 2] for i in range(3) for j in range(3)]
        assert any(np.array_equal(c1[k, 0], w) for w in windows)
    (p,) = next(RandomCrop(s, (4, 4), padding=1, seed=0).get_epoch_iterator())
    assert p.shape == (2, 1, 4, 4)
    with pytest.raises(DataShapeError, match="smaller than the window"):
        next(RandomCrop(s, (5, 5)).get_epoch_iterator())
