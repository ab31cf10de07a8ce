"""Fuel's tests/transformers/test_image.py, in bricks.data's spelling (needs Pillow)."""

from collections import OrderedDict
from io import BytesIO

import numpy as np
import pytest
from numpy.testing import assert_equal

from bricks.data import (
    DataStream,
    ImagesFromBytes,
    IndexableDataset,
    MinimumImageDimensions,
    Random2DRotation,
    RandomFixedSizeCrop,
    SequentialExampleScheme,
    ShuffledScheme,
)

Image = pytest.importorskip("PIL.Image")

T = "tests/transformers/test_image.py::"
DEFAULT_SEED = 1  # Fuel's config.default_seed


def reorder_axes(shp):
    if len(shp) == 3:
        shp = (shp[-1],) + shp[:-1]
    elif len(shp) == 2:
        shp = (1,) + shp
    return shp


def streams(dataset, batch_size=2):
    example = DataStream(
        dataset, iteration_scheme=SequentialExampleScheme(dataset.num_examples)
    )
    batch = DataStream(
        dataset, iteration_scheme=ShuffledScheme(dataset.num_examples, batch_size=batch_size)
    )
    return example, batch


BYTES_SHAPES = [(10, 12, 3), (9, 8, 4), (12, 14, 3), (4, 7), (9, 8, 4), (7, 9, 3)]


@pytest.fixture
def bytes_streams():
    rng = np.random.RandomState(DEFAULT_SEED)
    modes = ["RGB", "CMYK", "RGB", "L", "RGBA", "YCbCr"]
    pils = [
        Image.fromarray(rng.randint(0, 256, size=shape).astype("uint8"), mode=mode)
        for shape, mode in zip(BYTES_SHAPES, modes, strict=False)
    ]
    formats = ["PNG", "JPEG", "BMP", "GIF", "PNG", "JPEG"]
    encoded = []
    for pil, fmt in zip(pils, formats, strict=False):
        b = BytesIO()
        pil.save(b, format=fmt)
        encoded.append(b.getvalue())
    dataset = IndexableDataset(
        OrderedDict([("source1", encoded[:3]), ("source2", encoded[3:])]),
        axis_labels={"source1": ("batch", "bytes"), "source2": ("batch", "bytes")},
    )
    return streams(dataset)


@pytest.mark.ported(T + "TestImagesFromBytes::test_images_from_bytes_example_stream")
def test_images_from_bytes_example_stream(bytes_streams):
    stream = ImagesFromBytes(
        bytes_streams[0], which_sources=("source1", "source2"), color_mode=None
    )
    s1, s2 = list(zip(*list(stream.get_epoch_iterator()), strict=False))
    assert {s.shape for s in s1} == {reorder_axes(s) for s in BYTES_SHAPES[:3]}
    assert {s.shape for s in s2} == {reorder_axes(s) for s in BYTES_SHAPES[3:]}


@pytest.mark.ported(T + "TestImagesFromBytes::test_images_from_bytes_batch_stream")
def test_images_from_bytes_batch_stream(bytes_streams):
    stream = ImagesFromBytes(
        bytes_streams[1], which_sources=("source1", "source2"), color_mode=None
    )
    s1, s2 = list(zip(*list(stream.get_epoch_iterator()), strict=False))
    s1, s2 = sum(s1, []), sum(s2, [])
    assert {s.shape for s in s1} == {reorder_axes(s) for s in BYTES_SHAPES[:3]}
    assert {s.shape for s in s2} == {reorder_axes(s) for s in BYTES_SHAPES[3:]}


@pytest.mark.ported(T + "TestImagesFromBytes::test_images_from_bytes_example_stream_convert_rgb")
def test_images_from_bytes_example_stream_convert_rgb(bytes_streams):
    stream = ImagesFromBytes(bytes_streams[0], which_sources=("source1"), color_mode="RGB")
    s1, s2 = list(zip(*list(stream.get_epoch_iterator()), strict=False))
    expected = {(3,) + reorder_axes(s)[1:] for s in BYTES_SHAPES[:3]}
    assert {s.shape for s in s1} == expected


@pytest.mark.ported(T + "TestImagesFromBytes::test_images_from_bytes_example_stream_convert_l")
def test_images_from_bytes_example_stream_convert_l(bytes_streams):
    stream = ImagesFromBytes(bytes_streams[0], which_sources=("source2"), color_mode="L")
    s1, s2 = list(zip(*list(stream.get_epoch_iterator()), strict=False))
    expected = {(1,) + reorder_axes(s)[1:] for s in BYTES_SHAPES[3:]}
    assert {s.shape for s in s2} == expected


@pytest.mark.ported(T + "TestImagesFromBytes::test_axis_labels")
def test_images_from_bytes_axis_labels(bytes_streams):
    stream = ImagesFromBytes(bytes_streams[0], which_sources=("source2",))
    assert stream.axis_labels["source1"] == ("bytes",)
    assert stream.axis_labels["source2"] == ("channel", "height", "width")
    bstream = ImagesFromBytes(bytes_streams[1], which_sources=("source1",))
    assert bstream.axis_labels["source1"] == ("batch", "channel", "height", "width")
    assert bstream.axis_labels["source2"] == ("batch", "bytes")


@pytest.mark.ported(T + "TestImagesFromBytes::test_bytes_type_exception")
def test_images_from_bytes_type_exception(bytes_streams):
    stream = ImagesFromBytes(bytes_streams[0], which_sources=("source2",))
    with pytest.raises(TypeError, match="expected a bytes object, found int"):
        stream.transform_source_example(54321, "source2")


MIN_SHAPES = [(5, 9), (4, 6), (4, 3), (6, 4), (2, 5), (4, 8), (8, 3)]


@pytest.fixture
def min_streams():
    rng = np.random.RandomState(DEFAULT_SEED)
    source1, source2, source3 = [], [], []
    for shape in MIN_SHAPES:
        source1.append(rng.normal(size=shape))
        source2.append(rng.normal(size=shape[::-1]))
        source3.append(rng.randint(0, 256, size=(3,) + shape).astype("uint8"))
    labels = ("batch", "channel", "height", "width")
    dataset = IndexableDataset(
        OrderedDict([("source1", source1), ("source2", source2), ("source3", source3)]),
        axis_labels={"source1": labels, "source3": labels},
    )
    return streams(dataset)


@pytest.mark.ported(T + "TestMinimumDimensions::test_minimum_dimensions_example_stream")
def test_minimum_dimensions_example_stream(min_streams):
    stream = MinimumImageDimensions(
        min_streams[0], (4, 5), which_sources=("source1", "source3")
    )
    for example, shp in zip(stream.get_epoch_iterator(), MIN_SHAPES, strict=False):
        assert example[0].shape[0] >= 4 and example[0].shape[1] >= 5
        assert example[1].shape[1] == shp[0] and example[1].shape[0] == shp[1]
        assert example[2].shape[0] == 3
        assert example[2].shape[1] >= 4 and example[2].shape[2] >= 5


@pytest.mark.ported(T + "TestMinimumDimensions::test_minimum_dimensions_batch_stream")
def test_minimum_dimensions_batch_stream(min_streams):
    stream = MinimumImageDimensions(min_streams[1], (4, 5), which_sources=("source1",))
    seen = 0
    for batch in stream.get_epoch_iterator():
        assert all(x.shape[0] >= 4 and x.shape[1] >= 5 for x in batch[0])
        assert isinstance(batch[1], list)  # untouched list source
        seen += len(batch[0])
    assert seen == len(MIN_SHAPES)


def test_minimum_dimensions_nearest_upsampling_is_exact():
    """bricks: the nearest filter keeps dtype and repeats pixels (numpy reference)."""
    image = np.arange(6, dtype="float64").reshape(2, 3)
    stream = DataStream(
        IndexableDataset({"x": [image]}, axis_labels={"x": ("batch", "channel", "h", "w")}),
        iteration_scheme=SequentialExampleScheme(1),
    )
    out = MinimumImageDimensions(stream, (4, 6))._resize(image, "x")
    assert out.dtype == np.float64
    assert_equal(out, np.repeat(np.repeat(image, 2, axis=0), 2, axis=1))


@pytest.mark.ported(T + "TestMinimumDimensions::test_axes_exception")
def test_minimum_dimensions_axes_exception(min_streams):
    stream = MinimumImageDimensions(min_streams[0], (4, 5), which_sources=("source1",))
    with pytest.raises(NotImplementedError, match="2 or 3 axes"):
        stream.transform_source_example(np.empty((2, 3, 4, 2)), "source1")


@pytest.mark.ported(T + "TestMinimumDimensions::test_resample_exception")
def test_minimum_dimensions_resample_exception(min_streams):
    with pytest.raises(ValueError, match="unknown resampling filter"):
        MinimumImageDimensions(min_streams[0], (4, 5), resample="notarealresamplingmode")


CROP_SHAPES = [(5, 9), (6, 8), (5, 6), (5, 5), (6, 4), (7, 4), (9, 4), (5, 6), (6, 5)]


@pytest.fixture
def crop_setup():
    source1 = np.zeros((9, 3, 7, 5), dtype="uint8")
    source1[:] = np.arange(3 * 7 * 5, dtype="uint8").reshape(3, 7, 5)
    source2, biggest = [], 0
    for shp in CROP_SHAPES:
        biggest = max(biggest, shp[0] * shp[1] * 2)
        source2.append(np.arange(shp[0] * shp[1] * 2).reshape((2,) + shp).astype("uint8"))
    labels = ("batch", "channel", "height", "width")
    dataset = IndexableDataset(
        OrderedDict([("source1", source1), ("source2", source2)]),
        axis_labels={"source1": labels, "source2": labels},
    )
    return streams(dataset), biggest


@pytest.mark.ported(T + "TestFixedSizeRandomCrop::test_ndarray_batch_source")
def test_crop_ndarray_batch_source(crop_setup):
    (_, batch_stream), _ = crop_setup
    stream = RandomFixedSizeCrop(batch_stream, (5, 4), which_sources=("source1",))
    seen = np.array([], dtype="uint8")
    for _ in range(30):
        for batch in stream.get_epoch_iterator():
            assert batch[0].shape[1:] == (3, 5, 4)
            assert batch[0].shape[0] in (1, 2)
            seen = np.union1d(seen, batch[0].flatten())
        if 3 * 7 * 5 == len(seen):
            break
    else:
        raise AssertionError("not every pixel was sampled")


@pytest.mark.ported(T + "TestFixedSizeRandomCrop::test_list_batch_source")
def test_crop_list_batch_source(crop_setup):
    (_, batch_stream), biggest = crop_setup
    stream = RandomFixedSizeCrop(batch_stream, (5, 4), which_sources=("source2",))
    seen = np.array([], dtype="uint8")
    for _ in range(30):
        for batch in stream.get_epoch_iterator():
            for example in batch[1]:
                assert example.shape == (2, 5, 4)
                seen = np.union1d(seen, example.flatten())
            assert len(batch[1]) in (1, 2)
        if biggest == len(seen):
            break
    else:
        raise AssertionError("not every pixel was sampled")


def test_crop_matches_numpy_reference_and_resumes(crop_setup):
    """bricks: crops are the window at the drawn offsets, and a resumed run gives the same."""
    (_, batch_stream), _ = crop_setup
    stream = RandomFixedSizeCrop(batch_stream, (5, 4), which_sources=("source1",), seed=7)
    rng = np.random.RandomState([7, 0, 0])
    first = next(stream.get_epoch_iterator())[0]
    n = len(first)
    w, h = rng.randint(0, 2, size=n), rng.randint(0, 3, size=n)
    full = np.arange(3 * 7 * 5, dtype="uint8").reshape(3, 7, 5)
    for k in range(n):
        assert_equal(first[k], full[:, h[k] : h[k] + 5, w[k] : w[k] + 4])
    it = stream.get_epoch_iterator()
    next(it)
    state = stream.get_state()
    rest = [b[0] for b in it]
    again = RandomFixedSizeCrop(batch_stream, (5, 4), which_sources=("source1",), seed=7)
    again.set_state(state)
    for a, b in zip(rest, [b[0] for b in again.get_epoch_iterator()], strict=True):
        assert_equal(a, b)


@pytest.mark.ported(T + "TestFixedSizeRandomCrop::test_format_exceptions")
def test_crop_format_exceptions(crop_setup):
    (example_stream, batch_stream), _ = crop_setup
    estream = RandomFixedSizeCrop(example_stream, (5, 4), which_sources=("source2",))
    bstream = RandomFixedSizeCrop(batch_stream, (5, 4), which_sources=("source2",))
    with pytest.raises(ValueError, match="expected an image"):
        estream.transform_source_example(np.empty((5, 6)), "source2")
    with pytest.raises(ValueError, match="expected a batch"):
        bstream.transform_source_batch([np.empty((7, 6))], "source2")
    with pytest.raises(ValueError, match="expected a batch"):
        bstream.transform_source_batch([np.empty((8, 6))], "source2")


@pytest.mark.ported(T + "TestFixedSizeRandomCrop::test_window_too_big_exceptions")
def test_crop_window_too_big_exceptions(crop_setup):
    (example_stream, batch_stream), _ = crop_setup
    stream = RandomFixedSizeCrop(example_stream, (5, 4), which_sources=("source2",))
    with pytest.raises(ValueError, match="cannot take a 5x4 window"):
        stream.transform_source_example(np.empty((3, 4, 2)), "source2")
    bstream = RandomFixedSizeCrop(batch_stream, (5, 4), which_sources=("source1",))
    with pytest.raises(ValueError, match="smaller than the window"):
        bstream.transform_source_batch(np.empty((5, 3, 4, 2)), "source1")


@pytest.fixture
def rot_setup():
    source1 = np.zeros((2, 3, 4, 6), dtype="uint8")
    source1[:] = np.arange(3 * 4 * 6, dtype="uint8").reshape((3, 4, 6))
    source2 = np.empty(2, dtype=object)
    source2[0] = np.arange(3 * 4 * 6, dtype="uint8").reshape((3, 4, 6))
    source2[1] = np.arange(3 * 4 * 7, dtype="uint8").reshape((3, 4, 7))
    source3 = [source2[0], source2[1]]
    labels = ("batch", "channel", "height", "width")
    dataset = IndexableDataset(
        OrderedDict([("source1", source1), ("source2", source2), ("source3", source3)]),
        axis_labels={"source1": labels, "source2": labels, "source3": labels},
    )
    return streams(dataset), (source1, source2, source3)


@pytest.mark.ported(T + "TestRandom2DRotation::test_format_exceptions")
def test_rotation_format_exceptions(rot_setup):
    (example_stream, batch_stream), _ = rot_setup
    estream = Random2DRotation(example_stream, which_sources=("source2",))
    bstream = Random2DRotation(batch_stream, which_sources=("source2",))
    with pytest.raises(ValueError, match="expected an image"):
        estream.transform_source_example(np.empty((5, 6)), "source2")
    with pytest.raises(ValueError, match="expected a batch"):
        bstream.transform_source_batch([np.empty((7, 6))], "source2")
    with pytest.raises(ValueError, match="expected a batch"):
        bstream.transform_source_batch([np.empty((8, 6))], "source2")


@pytest.mark.ported(T + "TestRandom2DRotation::test_maximum_rotation_invalid_exception")
def test_rotation_maximum_rotation_invalid_exception(rot_setup):
    (example_stream, _), _ = rot_setup
    for bad in (0.0, 3.1416):
        with pytest.raises(ValueError, match="maximum_rotation must be in"):
            Random2DRotation(example_stream, maximum_rotation=bad, which_sources=("source2",))


@pytest.mark.ported(T + "TestRandom2DRotation::test_invalid_resample_exception")
def test_rotation_invalid_resample_exception(rot_setup):
    (example_stream, _), _ = rot_setup
    with pytest.raises(ValueError, match="unknown resampling filter"):
        Random2DRotation(example_stream, resample="nonexisting")


ROT0 = np.array(
    [
        [[0, 1, 2, 3, 4, 11], [6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16, 17],
         [12, 19, 20, 21, 22, 23]],
        [[24, 25, 26, 27, 28, 35], [30, 31, 32, 33, 34, 35], [36, 37, 38, 39, 40, 41],
         [36, 43, 44, 45, 46, 47]],
        [[48, 49, 50, 51, 52, 59], [54, 55, 56, 57, 58, 59], [60, 61, 62, 63, 64, 65],
         [60, 67, 68, 69, 70, 71]],
    ],
    dtype="uint8",
)
ROT1 = np.array(
    [
        [[6, 1, 2, 3, 4, 5], [12, 7, 8, 9, 10, 5], [18, 13, 14, 15, 16, 11],
         [18, 19, 20, 21, 22, 17]],
        [[30, 25, 26, 27, 28, 29], [36, 31, 32, 33, 34, 29], [42, 37, 38, 39, 40, 35],
         [42, 43, 44, 45, 46, 41]],
        [[54, 49, 50, 51, 52, 53], [60, 55, 56, 57, 58, 53], [66, 61, 62, 63, 64, 59],
         [66, 67, 68, 69, 70, 65]],
    ],
    dtype="uint8",
)
ROT1_WIDE = np.array(
    [
        [[7, 1, 2, 3, 4, 5, 0], [14, 8, 9, 10, 11, 12, 6], [21, 15, 16, 17, 18, 19, 13],
         [0, 22, 23, 24, 25, 26, 20]],
        [[35, 29, 30, 31, 32, 33, 0], [42, 36, 37, 38, 39, 40, 34],
         [49, 43, 44, 45, 46, 47, 41], [0, 50, 51, 52, 53, 54, 48]],
        [[63, 57, 58, 59, 60, 61, 0], [70, 64, 65, 66, 67, 68, 62],
         [77, 71, 72, 73, 74, 75, 69], [0, 78, 79, 80, 81, 82, 76]],
    ],
    dtype="uint8",
)


@pytest.mark.ported(T + "TestRandom2DRotation::test_random_2D_rotation_example_stream")
def test_random_2d_rotation_example_stream(rot_setup):
    (example_stream, _), (source1, _, _) = rot_setup
    estream = Random2DRotation(
        example_stream, 0.5, rng=np.random.RandomState(123), which_sources=("source1",)
    )
    assert_equal(estream.transform_source_example(source1[0], "source1"), ROT0)


@pytest.mark.ported(T + "TestRandom2DRotation::test_random_2D_rotation_batch_stream")
def test_random_2d_rotation_batch_stream(rot_setup):
    (_, batch_stream), (source1, source2, source3) = rot_setup
    bstream = Random2DRotation(
        batch_stream, maximum_rotation=0.5, rng=np.random.RandomState(123),
        which_sources=("source1",),
    )
    assert_equal(bstream.transform_source_batch(source1, "source1"), np.stack([ROT0, ROT1]))
    for name, source in (("source2", source2), ("source3", source3)):
        bstream = Random2DRotation(
            batch_stream, maximum_rotation=0.5, rng=np.random.RandomState(123),
            which_sources=(name,),
        )
        out = bstream.transform_source_batch(source, name)
        assert_equal(out[0], ROT0)
        assert_equal(out[1], ROT1_WIDE)
