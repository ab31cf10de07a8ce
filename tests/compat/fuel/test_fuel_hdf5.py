"""Fuel's tests/test_hdf5.py, in bricks.data's spelling."""

import pickle

import h5py
import numpy as np
import pytest
from numpy.testing import assert_equal

from bricks.data import DataStream, H5PYDataset, SequentialScheme

H = "tests/test_hdf5.py::TestH5PYDataset::"

FEATURES = np.arange(3600, dtype="uint16").reshape((100, 36))
TARGETS = np.arange(30, dtype="uint8").reshape((30, 1))
VLEN_FEATURES = [
    np.arange(12, dtype="uint8").reshape((3, 2, 2)),
    np.arange(48, dtype="uint8").reshape((3, 4, 4)),
    np.arange(60, dtype="uint8").reshape((3, 5, 4)),
    np.arange(18, dtype="uint8").reshape((3, 2, 3)),
]
VLEN_TARGETS = np.arange(4, dtype="uint8").reshape((4, 1))


@pytest.mark.xfail(
    strict=True,
    reason="PyTables is not a dependency of bricks.data; write the arrays in Fuel's HDF5 layout "
    "with bricks.data.write_hdf5 and read them with H5PYDataset",
)
@pytest.mark.ported(
    "tests/test_hdf5.py::TestPytablesDataset::test_dataset_default",
    "tests/test_hdf5.py::TestPytablesDataset::test_get_data_slice_request",
    "tests/test_hdf5.py::TestPytablesDataset::test_get_data_list_request",
    "tests/test_hdf5.py::TestPytablesDataset::test_get_data_value_error",
    "tests/test_hdf5.py::TestPytablesDataset::test_pickling",
)
def test_pytables_dataset():
    from bricks.data import PytablesDataset  # noqa: F401


@pytest.fixture
def h5file():
    f = h5py.File("file.hdf5", mode="w", driver="core", backing_store=False)
    f["features"] = FEATURES
    f["features"].dims[0].label = "batch"
    f["features"].dims[1].label = "feature"
    f["targets"] = TARGETS
    f["targets"].dims[0].label = "batch"
    f["targets"].dims[1].label = "index"
    split_dict = {
        "train": {"features": (0, 20, None), "targets": (0, 20)},
        "test": {"features": (20, 30), "targets": (20, 30)},
        "unlabeled": {"features": (30, 100, None, ".")},
    }
    f.attrs["split"] = H5PYDataset.create_split_array(split_dict)
    yield f
    f.close()


@pytest.fixture
def vlen_h5file():
    f = h5py.File("test_vl.hdf5", mode="w", driver="core", backing_store=False)
    features = f.create_dataset("features", (4,), dtype=h5py.special_dtype(vlen=np.dtype("uint8")))
    features[...] = [d.flatten() for d in VLEN_FEATURES]
    features.dims[0].label = "batch"
    shapes = f.create_dataset("features_shapes", (4, 3), dtype="uint8")
    shapes[...] = np.array([d.shape for d in VLEN_FEATURES])
    shapes.make_scale("shapes")
    features.dims[0].attach_scale(shapes)
    shape_labels = f.create_dataset("features_shape_labels", (3,), dtype="S7")
    shape_labels[...] = [b"channel", b"height", b"width"]
    shape_labels.make_scale("shape_labels")
    features.dims[0].attach_scale(shape_labels)
    targets = f.create_dataset("targets", (4, 1), dtype="uint8")
    targets[...] = VLEN_TARGETS
    targets.dims[0].label = "batch"
    targets.dims[1].label = "index"
    f.attrs["split"] = H5PYDataset.create_split_array(
        {"train": {"features": (0, 4), "targets": (0, 4)}}
    )
    yield f
    f.close()


@pytest.mark.ported(H + "test_raises_value_error_when_which_sets_is_string")
def test_raises_value_error_when_which_sets_is_string(h5file):
    with pytest.raises(ValueError, match=r"write which_sets=\('train',\)"):
        H5PYDataset(h5file, "train")


@pytest.mark.ported(H + "test_split_parsing")
def test_split_parsing(h5file):
    assert H5PYDataset(h5file, which_sets=("train",)).provides_sources == ("features", "targets")
    assert H5PYDataset(h5file, which_sets=("test",)).provides_sources == ("features", "targets")
    assert H5PYDataset(h5file, which_sets=("unlabeled",)).provides_sources == ("features",)


@pytest.mark.ported(H + "test_get_all_splits")
def test_get_all_splits(h5file):
    assert set(H5PYDataset.get_all_splits(h5file)) == {"train", "test", "unlabeled"}


@pytest.mark.ported(H + "test_get_all_sources")
def test_get_all_sources(h5file):
    assert set(H5PYDataset.get_all_sources(h5file)) == {"features", "targets"}


@pytest.mark.ported(H + "test_axis_labels")
def test_axis_labels(h5file):
    dataset = H5PYDataset(h5file, which_sets=("train",))
    assert dataset.axis_labels == {
        "features": ("batch", "feature"),
        "targets": ("batch", "index"),
    }


@pytest.mark.ported(H + "test_pickling")
def test_pickling(tmp_path):
    path = str(tmp_path / "file.hdf5")
    with h5py.File(path, mode="w") as h5:
        h5["features"] = np.arange(360, dtype="uint16").reshape((10, 36))
        h5.attrs["split"] = H5PYDataset.create_split_array(
            {"train": {"features": (0, 10, None, ".")}}
        )
        dataset = pickle.loads(pickle.dumps(H5PYDataset(h5, which_sets=("train",))))
    dataset._out_of_memory_open()
    assert dataset.get_data(None, [3])[0][0, 0] == 108  # reopened by name
    dataset._out_of_memory_close()
    assert dataset.data_sources is None


@pytest.mark.ported(H + "test_data_stream_pickling")
def test_data_stream_pickling(h5file):
    stream = DataStream(
        H5PYDataset(h5file, which_sets=("train",)), iteration_scheme=SequentialScheme(100, 10)
    )
    pickle.loads(pickle.dumps(stream))
    stream.close()


@pytest.mark.ported(H + "test_multiple_instances")
def test_multiple_instances(h5file):
    dataset_1 = H5PYDataset(h5file, which_sets=("train",))
    dataset_2 = H5PYDataset(h5file, which_sets=("train",))
    handle_1, handle_2 = dataset_1.open(), dataset_2.open()
    dataset_1.get_data(state=handle_1, request=slice(0, 10))
    dataset_2.get_data(state=handle_2, request=slice(0, 10))
    dataset_1.close(handle_1)
    dataset_2.close(handle_2)


@pytest.mark.ported(H + "test_single_split")
def test_single_split(h5file):
    train_set = H5PYDataset(h5file, which_sets=("train",))
    test_set = H5PYDataset(h5file, which_sets=("test",))
    assert_equal(
        train_set.get_data(train_set.open(), slice(0, 8)), (FEATURES[:8], TARGETS[:8])
    )
    assert_equal(
        test_set.get_data(test_set.open(), slice(0, 2)), (FEATURES[20:22], TARGETS[20:22])
    )


@pytest.mark.ported(H + "test_multiple_split_in_memory")
def test_multiple_split_in_memory(h5file):
    dataset = H5PYDataset(h5file, which_sets=("train", "test"), load_in_memory=True)
    handle = dataset.open()
    assert_equal(dataset.get_data(handle, slice(0, 30)), (FEATURES[:30], TARGETS[:30]))
    dataset.close(handle)


@pytest.mark.ported(H + "test_multiple_split_out_of_memory_list_request")
def test_multiple_split_out_of_memory_list_request(h5file):
    dataset = H5PYDataset(h5file, which_sets=("train", "test"), load_in_memory=False)
    handle = dataset.open()
    assert_equal(dataset.get_data(handle, list(range(30))), (FEATURES[:30], TARGETS[:30]))
    dataset.close(handle)


@pytest.mark.ported(H + "test_out_of_memory")
def test_out_of_memory(h5file):
    dataset = H5PYDataset(h5file, which_sets=("test",), load_in_memory=False)
    assert_equal(
        dataset.get_data(dataset.open(), slice(3, 5)), (FEATURES[23:25], TARGETS[23:25])
    )


@pytest.mark.ported(H + "test_in_memory")
def test_in_memory(h5file):
    dataset = H5PYDataset(h5file, which_sets=("train",), load_in_memory=True)
    request = slice(0, 10)
    assert_equal(dataset.get_data(dataset.open(), request), (FEATURES[request], TARGETS[request]))


@pytest.mark.ported(H + "test_out_of_memory_sorted_indices")
def test_out_of_memory_sorted_indices(h5file):
    dataset = H5PYDataset(h5file, which_sets=("train",), load_in_memory=False, sort_indices=True)
    request = [7, 4, 6, 2, 5]
    assert_equal(dataset.get_data(dataset.open(), request), (FEATURES[request], TARGETS[request]))


@pytest.mark.ported(H + "test_out_of_memory_unsorted_indices")
def test_out_of_memory_unsorted_indices(h5file):
    dataset = H5PYDataset(h5file, which_sets=("train",), load_in_memory=False, sort_indices=False)
    with pytest.raises(TypeError, match="sort_indices=False needs increasing requests"):
        dataset.get_data(dataset.open(), [7, 4, 6, 2, 5])


@pytest.mark.ported(H + "test_in_memory_example_scheme")
def test_in_memory_example_scheme(h5file):
    dataset = H5PYDataset(h5file, which_sets=("train",), load_in_memory=True)
    it = dataset.get_example_stream().get_epoch_iterator()
    assert_equal(next(it), (FEATURES[0], TARGETS[0]))
    assert_equal(next(it), (FEATURES[1], TARGETS[1]))


@pytest.mark.ported(H + "test_out_of_memory_example_scheme")
def test_out_of_memory_example_scheme(h5file):
    dataset = H5PYDataset(h5file, which_sets=("train",), load_in_memory=False)
    it = dataset.get_example_stream().get_epoch_iterator()
    assert_equal(next(it), (FEATURES[0], TARGETS[0]))
    assert_equal(next(it), (FEATURES[1], TARGETS[1]))


@pytest.mark.ported(H + "test_value_error_on_unequal_sources")
def test_value_error_on_unequal_sources(h5file):
    h5file.attrs["split"] = H5PYDataset.create_split_array(
        {
            "train": {"features": (0, 20), "targets": (0, 15)},
            "test": {"features": (20, 30), "targets": (20, 30)},
            "unlabeled": {"features": (30, 100, None, ".")},
        }
    )
    with pytest.raises(ValueError, match="different lengths"):
        H5PYDataset(h5file, which_sets=("train",))


@pytest.mark.ported(H + "test_io_error_on_unopened_file_handle")
def test_io_error_on_unopened_file_handle(h5file):
    dataset = H5PYDataset(h5file, which_sets=("train",))
    dataset._external_file_handle = None
    with pytest.raises(OSError, match="no open file handle"):
        dataset._file_handle  # noqa: B018


@pytest.mark.ported(H + "test_value_error_in_memory_get_data")
def test_value_error_in_memory_get_data(h5file):
    dataset = H5PYDataset(h5file, which_sets=("train",))
    with pytest.raises(ValueError, match="takes state None and a request"):
        dataset._in_memory_get_data(None, None)
    with pytest.raises(ValueError, match="takes state None and a request"):
        dataset._in_memory_get_data(True, None)


@pytest.mark.ported(H + "test_value_error_out_of_memory_get_data")
def test_value_error_out_of_memory_get_data(h5file):
    dataset = H5PYDataset(h5file, which_sets=("train",))
    with pytest.raises(ValueError, match="found dict"):
        dataset._out_of_memory_get_data(None, dict())


def _index_split_file():
    features = np.arange(50, dtype="uint8").reshape((10, 5))
    f = h5py.File("index_split.hdf5", mode="w", driver="core", backing_store=False)
    f["features"] = features
    f["features"].dims[0].label = "batch"
    f["features"].dims[1].label = "feature"
    f["train_features_subset"] = np.arange(0, 10, 2)
    f["test_features_subset"] = np.arange(1, 10, 2)
    f.attrs["split"] = H5PYDataset.create_split_array(
        {
            "train": {"features": (-1, -1, f["train_features_subset"].ref, ".")},
            "test": {"features": (-1, -1, f["test_features_subset"].ref, "")},
        }
    )
    return f, features


@pytest.mark.ported(H + "test_index_split_out_of_memory", H + "test_index_split_in_memory")
@pytest.mark.parametrize("load_in_memory", [False, True])
def test_index_split(load_in_memory):
    f, features = _index_split_file()
    dataset = H5PYDataset(f, which_sets=("train",), load_in_memory=load_in_memory)
    handle = dataset.open()
    assert_equal(dataset.get_data(handle, slice(0, 5))[0], features[0:10:2])
    assert_equal(dataset.num_examples, 5)
    dataset.close(handle)
    f.close()


@pytest.mark.ported(H + "test_index_subset_sorted", H + "test_index_subset_unsorted")
@pytest.mark.parametrize("subset", [[0, 2, 4], [0, 4, 2]])
def test_index_subset(h5file, subset):
    dataset = H5PYDataset(h5file, which_sets=("train",), subset=subset)
    assert_equal(
        dataset.get_data(dataset.open(), slice(0, 3)),
        (FEATURES[[0, 2, 4]], TARGETS[[0, 2, 4]]),
    )


@pytest.mark.ported(H + "test_vlen_axis_labels")
def test_vlen_axis_labels(vlen_h5file):
    dataset = H5PYDataset(vlen_h5file, which_sets=("train",))
    assert_equal(dataset.axis_labels["features"], ("batch", "channel", "height", "width"))
    assert_equal(dataset.axis_labels["targets"], ("batch", "index"))


@pytest.mark.ported(H + "test_vlen_sources_raises_error_on_dim_gt_1")
def test_vlen_sources_raises_error_on_dim_gt_1(vlen_h5file):
    targets = vlen_h5file["targets"]
    shapes = vlen_h5file.create_dataset("targets_shapes", (4, 1), dtype="uint8")
    shapes.make_scale("shapes")
    targets.dims[0].attach_scale(shapes)
    with pytest.raises(ValueError, match="write which_sets"):
        H5PYDataset(vlen_h5file, "train")
    with pytest.raises(ValueError, match="'targets' has shape \\(4, 1\\)"):
        H5PYDataset(vlen_h5file, ("train",))


def _check_vlen(rval, order):
    for val, truth in zip(rval[0], [VLEN_FEATURES[j] for j in order], strict=True):
        assert_equal(val, truth)
    assert_equal(rval[1], VLEN_TARGETS[order])


@pytest.mark.ported(H + "test_vlen_reshape_in_memory", H + "test_vlen_reshape_out_of_memory")
@pytest.mark.parametrize("load_in_memory", [True, False])
def test_vlen_reshape(vlen_h5file, load_in_memory):
    dataset = H5PYDataset(
        vlen_h5file, which_sets=("train",), subset=slice(1, 3), load_in_memory=load_in_memory
    )
    _check_vlen(dataset.get_data(dataset.open(), slice(0, 2)), [1, 2])


@pytest.mark.ported(H + "test_vlen_reshape_out_of_memory_unordered")
def test_vlen_reshape_out_of_memory_unordered(vlen_h5file):
    dataset = H5PYDataset(vlen_h5file, which_sets=("train",), load_in_memory=False)
    _check_vlen(dataset.get_data(dataset.open(), [0, 3, 1, 2]), [0, 3, 1, 2])


@pytest.mark.ported(H + "test_vlen_reshape_out_of_memory_unordered_no_check")
def test_vlen_reshape_out_of_memory_unordered_no_check(vlen_h5file):
    dataset = H5PYDataset(
        vlen_h5file, which_sets=("train",), load_in_memory=False, sort_indices=False
    )
    _check_vlen(dataset.get_data(dataset.open(), [0, 1, 2, 3]), [0, 1, 2, 3])


@pytest.mark.ported(
    H + "test_vlen_in_memory_example_scheme", H + "test_vlen_out_of_memory_example_scheme"
)
@pytest.mark.parametrize("load_in_memory", [True, False])
def test_vlen_example_scheme(vlen_h5file, load_in_memory):
    dataset = H5PYDataset(
        vlen_h5file, which_sets=("train",), load_in_memory=load_in_memory, sort_indices=False
    )
    it = dataset.get_example_stream().get_epoch_iterator()
    assert_equal(next(it), (VLEN_FEATURES[0], VLEN_TARGETS[0]))
    assert_equal(next(it), (VLEN_FEATURES[1], VLEN_TARGETS[1]))


@pytest.mark.ported(H + "test_dataset_get_data_without_open")
def test_dataset_get_data_without_open(h5file):
    dataset = H5PYDataset(h5file, which_sets=("train",), load_in_memory=False)
    assert_equal(dataset.get_data(request=slice(0, 2))[0], FEATURES[:2])
    dataset.close(None)
