"""H5PYDataset on files written the way Fuel writes them, the writer, and file errors."""

import h5py
import numpy as np
import pytest

from bricks.data import DataStream, H5PYDataset, ShuffledScheme, write_hdf5
from bricks.errors import DataFileError, DataIndexError, SourceError


def fuel_file(path):
    """A file built with raw h5py exactly like Fuel's docs/converters do."""
    f = h5py.File(path, "w")
    feats = f.create_dataset("features", (10, 3), dtype="float32")
    feats[...] = np.arange(30, dtype=np.float32).reshape(10, 3)
    feats.dims[0].label = "batch"
    feats.dims[1].label = "feature"
    targets = f.create_dataset("targets", (10, 1), dtype="uint8")
    targets[...] = np.arange(10).reshape(10, 1)
    targets.dims[0].label = "batch"
    targets.dims[1].label = "index"
    seqs = f.create_dataset("seqs", (10,), dtype=h5py.vlen_dtype(np.dtype("int16")))
    data = [np.arange(2 * (i + 1), dtype=np.int16).reshape(2, i + 1) for i in range(10)]
    seqs[...] = np.array([d.ravel() for d in data], dtype=object)
    shapes = f.create_dataset("seqs_shapes", (10, 2), dtype="int32")
    shapes[...] = np.array([d.shape for d in data])
    shapes.make_scale("shapes")
    seqs.dims[0].attach_scale(shapes)
    labels = f.create_dataset("seqs_shape_labels", (2,), dtype="S7")
    labels[...] = [b"channel", b"time"]
    labels.make_scale("shape_labels")
    seqs.dims[0].attach_scale(labels)
    seqs.dims[0].label = "batch"
    odd = f.create_dataset("odd_indices", data=np.array([1, 3, 5, 7, 9]))
    dtype = np.dtype(
        [
            ("split", "S5"),
            ("source", "S8"),
            ("start", np.int64),
            ("stop", np.int64),
            ("indices", h5py.special_dtype(ref=h5py.Reference)),
            ("available", bool),
            ("comment", "S1"),
        ]
    )
    rows = []
    for split, start, stop, ref in [
        ("train", 0, 8, None),
        ("test", 8, 10, None),
        ("odd", 0, 0, odd.ref),
    ]:
        for src in ("features", "targets", "seqs"):
            avail = not (split == "test" and src == "seqs")
            rows.append(
                (split, src, start, stop, ref if ref is not None else h5py.Reference(), avail, b".")
            )
    f.attrs["split"] = np.array(rows, dtype=dtype)
    f.close()
    return data


def test_reads_fuel_layout(tmp_path):
    path = str(tmp_path / "fuel.hdf5")
    seqs = fuel_file(path)
    ds = H5PYDataset(path, which_sets=("train",))
    assert ds.sources == ("features", "seqs", "targets") and ds.num_examples == 8
    assert ds.axis_labels["features"] == ("batch", "feature")
    assert ds.axis_labels["seqs"] == ("batch", "channel", "time")
    f, s, t = ds.get_data(ds.open(), [5, 1, 5])
    np.testing.assert_array_equal(f, np.arange(30).reshape(10, 3)[[5, 1, 5]])
    assert t[:, 0].tolist() == [5, 1, 5]
    assert [x.shape for x in s] == [(2, 6), (2, 2), (2, 6)]
    np.testing.assert_array_equal(s[0], seqs[5])
    assert ds.get_data(None, 2)[1].shape == (2, 3)
    # the test split does not provide seqs; index-ref splits work
    assert H5PYDataset(path, ("test",)).sources == ("features", "targets")
    odd = H5PYDataset(path, ("odd",), sources=("targets",))
    assert odd.get_data(None, slice(None))[0][:, 0].tolist() == [1, 3, 5, 7, 9]
    sub = H5PYDataset(path, ("train",), subset=slice(2, 5), sources=("targets",))
    assert sub.num_examples == 3 and sub.get_data(None, [0, 2])[0][:, 0].tolist() == [2, 4]
    both = H5PYDataset(path, ("train", "test"), sources=("targets",))
    assert both.num_examples == 10
    mem = H5PYDataset(path, ("train",), load_in_memory=True)
    for a, b in zip(mem.get_data(None, [7, 0]), ds.get_data(None, [7, 0]), strict=True):
        if a.dtype == object:
            assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        else:
            np.testing.assert_array_equal(a, b)


def test_writer_round_trip_and_shuffled_stream(tmp_path):
    path = str(tmp_path / "w.hdf5")
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    y = np.arange(50)
    write_hdf5(
        path,
        {"x": x, "y": y},
        splits={"train": (0, 40), "valid": list(range(40, 50))},
        axis_labels={"x": ("batch", "feature"), "y": ("batch",)},
    )
    with h5py.File(path, "r") as f:  # the layout Fuel reads
        assert set(f.attrs["split"].dtype.names) == {
            "split",
            "source",
            "start",
            "stop",
            "indices",
            "available",
            "comment",
        }
    ds = H5PYDataset(path, ("train",))
    assert ds.axis_labels == {"x": ("batch", "feature"), "y": ("batch",)}
    stream = DataStream(ds, iteration_scheme=ShuffledScheme(40, 7, seed=1))
    for bx, by in stream.get_epoch_iterator():
        np.testing.assert_array_equal(bx, x[by])
    assert H5PYDataset(path, ("valid",)).get_data(None, [0])[1].tolist() == [40]


def test_unknown_split_and_source(tmp_path):
    path = str(tmp_path / "w.hdf5")
    write_hdf5(path, {"features": np.zeros((4, 2))}, splits={"train": (0, 4)})
    with pytest.raises(SourceError, match="did you mean 'train'"):
        H5PYDataset(path, ("trian",))
    with pytest.raises(SourceError, match="did you mean 'features'"):
        H5PYDataset(path, ("train",), sources=("feature",))
    ds = H5PYDataset(path, ("train",))
    with pytest.raises(DataIndexError, match=r"'features'.*4 examples.*index 9"):
        ds.get_data(None, [1, 9])


def test_truncated_and_foreign_files_name_the_file(tmp_path):
    path = tmp_path / "t.hdf5"
    write_hdf5(str(path), {"x": np.zeros((1000, 50))})
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DataFileError, match="t.hdf5"):
        H5PYDataset(str(path), ("train",))
    garbage = tmp_path / "g.hdf5"
    garbage.write_bytes(b"not an hdf5 file" * 100)
    with pytest.raises(DataFileError, match="g.hdf5"):
        H5PYDataset(str(garbage))
    plain = tmp_path / "plain.hdf5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(DataFileError, match="no 'split' attribute"):
        H5PYDataset(str(plain))
    with pytest.raises(DataFileError, match="does not exist"):
        H5PYDataset(str(tmp_path / "missing.hdf5"))


def test_corrupt_data_chunk_raises_python_error(tmp_path):
    path = tmp_path / "c.hdf5"
    write_hdf5(str(path), {"x": np.arange(20000.0).reshape(1000, 20)}, compression="gzip")
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 2000] = b"\xff" * 2000  # inside the compressed chunks
    path.write_bytes(bytes(raw))
    with pytest.raises(DataFileError, match="c.hdf5"):
        ds = H5PYDataset(str(path), ("train",))
        for i in range(0, 1000, 50):
            ds.get_data(None, list(range(i, i + 50)))
