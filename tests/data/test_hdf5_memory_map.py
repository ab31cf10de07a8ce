"""H5PYDataset reads contiguous sources through a memory map: same results as numpy, fast."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from bricks.data import H5PYDataset, create_split_array, write_hdf5

N = 50
RNG = np.random.default_rng(0)
X = RNG.normal(size=(N, 3, 4)).astype(np.float32)
Y = RNG.integers(-5, 5, size=N).astype(np.int16)

REQUESTS = [
    [7, 3, 3, 0, 12],  # unsorted, repeated
    np.array([9, 1, 29]),
    list(range(10, 20)),  # contiguous
    slice(5, 25, 3),
    slice(None),
    [],
    4,  # one example
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("mmap")
    plain, packed = str(d / "plain.hdf5"), str(d / "gzip.hdf5")
    split = {"train": (0, 30), "test": [31, 35, 36, 40, 49]}
    write_hdf5(plain, {"x": X, "y": Y}, splits=split)
    write_hdf5(packed, {"x": X, "y": Y}, splits=split, compression="gzip")
    block = str(d / "userblock.hdf5")
    with h5py.File(block, "w", userblock_size=512) as f:  # data sit 512 bytes further
        f.create_dataset("x", data=X)
        f.create_dataset("y", data=Y)
        f.attrs["split"] = create_split_array({"train": {"x": (0, N), "y": (0, N)}})
    return {"plain": plain, "gzip": packed, "userblock": block}


def _expected(split: str, request, subset=None) -> tuple:
    rows = np.arange(30) if split == "train" else np.array([31, 35, 36, 40, 49])
    if subset is not None:
        rows = rows[subset]
    picked = rows[request] if not isinstance(request, list) else rows[np.asarray(request, int)]
    return X[picked], Y[picked]


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("request_", REQUESTS, ids=range(len(REQUESTS)))
def test_mapped_reads_equal_numpy(files, split, request_):
    ds = H5PYDataset(files["plain"], (split,))
    if split == "test" and not isinstance(request_, slice):
        request_ = [r % 5 for r in np.atleast_1d(request_)] if np.ndim(request_) else 4
    x, y = ds.get_data(ds.open(), request_)
    want_x, want_y = _expected(split, request_)
    assert x.dtype == np.float32 and y.dtype == np.int16
    np.testing.assert_array_equal(x, want_x)
    np.testing.assert_array_equal(y, want_y)
    assert x.flags.writeable and not isinstance(x.base, np.ndarray | memoryview)


def test_the_map_is_used_only_where_it_is_exact(files):
    for name, mapped in (("plain", True), ("gzip", False), ("userblock", True)):
        ds = H5PYDataset(files[name], ("train",))
        f = ds.open()
        assert (ds._mapped(f, "x") is not None) == mapped, name
        x, y = ds.get_data(f, [5, 1, 29])
        np.testing.assert_array_equal(x, X[[5, 1, 29]])
        np.testing.assert_array_equal(y, Y[[5, 1, 29]])
    off = H5PYDataset(files["plain"], ("train",), memory_map=False)
    assert off._mapped(off.open(), "x") is None
    np.testing.assert_array_equal(off.get_data(off.open(), [3, 2])[0], X[[3, 2]])


def test_subset_and_in_memory_loading_read_through_the_map(files):
    ds = H5PYDataset(files["plain"], ("train",), subset=slice(10, 20))
    np.testing.assert_array_equal(ds.get_data(ds.open(), [9, 0])[0], X[[19, 10]])
    mem = H5PYDataset(files["plain"], ("test",), load_in_memory=True)
    np.testing.assert_array_equal(mem.data_sources[0], X[[31, 35, 36, 40, 49]])
    assert "_maps" not in mem.__dict__  # the file is not kept mapped after loading


def test_a_pickled_dataset_maps_again(files):
    import pickle

    ds = H5PYDataset(files["plain"], ("train",))
    ds.get_data(ds.open(), [0])
    copy = pickle.loads(pickle.dumps(ds))
    assert "_maps" not in copy.__dict__
    np.testing.assert_array_equal(copy.get_data(copy.open(), [4])[0], X[[4]])
