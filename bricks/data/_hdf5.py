"""HDF5 files in Fuel's layout: :class:`H5PYDataset` reads them, :func:`write_hdf5` writes them.

The layout (Fuel's ``H5PYDataset`` interface version 0.3), so files made by
Fuel open unchanged:

* every source is a dataset in the root group, examples along axis 0, axis
  labels as dimension labels (``dset.dims[i].label``);
* the root attribute ``split`` is a 1-D compound array with fields
  ``split`` (bytes), ``source`` (bytes), ``start``, ``stop`` (int64),
  ``indices`` (object reference to a dataset of indices, or a null
  reference to use ``start:stop``), ``available`` (bool), ``comment``
  (bytes);
* a variable-length source is a 1-D vlen dataset of flattened examples; a
  ``(n, ndim)`` dataset of their shapes is attached to ``dims[0]`` as the
  dimension scale named ``shapes`` and a dataset of the per-example axis
  labels as the scale named ``shape_labels``.

Each process opens its own handle (keyed by process id), so a dataset can
be sent to worker processes; no h5py object ever crosses a fork.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from bricks.errors import (
    DataError,
    DataFileError,
    DataIndexError,
    DataShapeError,
    DataTypeError,
    RequestError,
    SourceError,
    did_you_mean,
)

from ._datasets import Dataset, check_sources
from ._hdf5_write import create_split_array, write_hdf5

__all__ = ["H5PYDataset", "create_split_array", "write_hdf5"]


def _decode(b: Any) -> str:
    return b.decode("utf8") if isinstance(b, bytes) else str(b)


def _open_file(path: str, driver: str | None = None) -> h5py.File:
    try:
        return h5py.File(path, "r", driver=driver)
    except FileNotFoundError as e:
        raise DataFileError(f"HDF5 file {path!r} does not exist") from e
    except (OSError, RuntimeError, ValueError) as e:
        raise DataFileError(
            f"cannot open HDF5 file {path!r} (truncated, corrupt or not HDF5): {e}"
        ) from e


class H5PYDataset(Dataset):
    """A dataset stored in an HDF5 file in Fuel's layout (see the module docstring).

    Args:
        file_or_path: path of the HDF5 file, or an open ``h5py.File`` (read
            through that handle; a pickled copy reopens the file by name).
        which_sets: the split names to read, e.g. ``("train",)`` (a tuple, as
            in Fuel: a bare string is refused). Several splits are joined.
        subset: a slice or list of indices *within* the split(s); a list is
            read in increasing order, as Fuel did.
        load_in_memory: read the whole subset into memory once.
        sources: the sources to give (default: all the splits provide, sorted).
        sort_indices: read unsorted requests as one sorted HDF5 read then
            reorder (HDF5 only reads increasing indices).
        driver: h5py low-level driver.
        memory_map: read a source that is stored contiguously and uncompressed
            (``write_hdf5``'s default) through a read-only memory map of the
            file instead of h5py: a shuffled batch is then one numpy fancy
            index, as fast as from memory once the file is in the page cache.
            The results are the same; other sources are read by h5py.

    >>> import tempfile, os, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "d.hdf5")
    >>> write_hdf5(path, {"x": np.arange(10.0).reshape(5, 2), "y": np.arange(5)},
    ...            splits={"train": (0, 3), "test": (3, 5)})
    >>> ds = H5PYDataset(path, which_sets=("test",))
    >>> ds.sources, ds.num_examples
    (('x', 'y'), 2)
    >>> ds.get_data(ds.open(), [1, 0])[1]
    array([4, 3])
    """

    def __init__(
        self,
        file_or_path: str | os.PathLike | h5py.File,
        which_sets: Sequence[str] = ("train",),
        subset: slice | Sequence[int] | None = None,
        load_in_memory: bool = False,
        sources: Sequence[str] | None = None,
        sort_indices: bool = True,
        driver: str | None = None,
        memory_map: bool = True,
    ) -> None:
        if isinstance(which_sets, (str, bytes)):
            raise SourceError(
                f"H5PYDataset: which_sets must be a tuple of split names, found the string "
                f"{which_sets!r}; write which_sets=({which_sets!r},)"
            )
        self._external_file_handle: h5py.File | None = None
        if isinstance(file_or_path, h5py.File):
            self._external_file_handle = file_or_path
            self.path = file_or_path.filename
        else:
            self.path = os.fspath(file_or_path)
        self.which_sets = tuple(which_sets)
        self.load_in_memory = load_in_memory
        self.sort_indices = sort_indices
        self.driver = driver
        self.memory_map = memory_map
        self._handle: h5py.File | None = None
        self._pid: int | None = None
        external = self._external_file_handle
        f = external if external is not None else _open_file(self.path, driver)
        try:
            self._parse(f, sources, subset)
            if load_in_memory:
                self._memory = {s: self._read_file(f, s, slice(None)) for s in self.sources}
                self.__dict__.pop("_maps", None)
        finally:
            if external is None:
                f.close()

    # -- Fuel's class-level helpers -------------------------------------------------
    @staticmethod
    def create_split_array(split_dict: Mapping[str, Mapping[str, tuple]]) -> np.ndarray:
        """Fuel's ``split`` attribute: ``{split: {source: (start, stop[, ref[, comment]])}}``."""
        return create_split_array(split_dict)

    @staticmethod
    def _split_rows(file_or_path: str | os.PathLike | h5py.File) -> np.ndarray:
        if isinstance(file_or_path, h5py.File):
            return np.asarray(file_or_path.attrs["split"])
        with _open_file(os.fspath(file_or_path)) as f:
            return np.asarray(f.attrs["split"])

    @classmethod
    def get_all_splits(cls, file_or_path: str | os.PathLike | h5py.File) -> tuple[str, ...]:
        """Every split named in the file, sorted."""
        return tuple(sorted({_decode(r["split"]) for r in cls._split_rows(file_or_path)}))

    @classmethod
    def get_all_sources(cls, file_or_path: str | os.PathLike | h5py.File) -> tuple[str, ...]:
        """Every source that some split of the file provides, sorted."""
        rows = cls._split_rows(file_or_path)
        return tuple(sorted({_decode(r["source"]) for r in rows if r["available"]}))

    # -- layout ------------------------------------------------------------------
    def _parse(self, f: h5py.File, sources: Sequence[str] | None, subset: Any) -> None:
        if "split" not in f.attrs:
            raise DataFileError(
                f"HDF5 file {self.path!r} is not in Fuel's layout: the root group has no 'split' "
                "attribute (write it with bricks.data.write_hdf5)"
            )
        try:
            rows = np.asarray(f.attrs["split"])
            names = rows.dtype.names or ()
            missing = {"split", "source", "start", "stop", "available"} - set(names)
            if missing:
                raise DataFileError(
                    f"HDF5 file {self.path!r}: the 'split' attribute lacks fields {sorted(missing)}"
                )
            all_splits = sorted({_decode(r["split"]) for r in rows})
            provided: set[str] | None = None
            for split in self.which_sets:
                if split not in all_splits:
                    raise SourceError(
                        f"HDF5 file {self.path!r}: no split {split!r}"
                        f"{did_you_mean(split, all_splits)};"
                        f" available splits: {all_splits}"
                    )
                here = {
                    _decode(r["source"])
                    for r in rows
                    if _decode(r["split"]) == split and r["available"]
                }
                provided = here if provided is None else provided & here
            self.provides_sources = tuple(sorted(provided or ()))
            self.sources = (
                self.provides_sources
                if sources is None
                else check_sources(sources, self.provides_sources, f"H5PYDataset({self.path!r})")
            )
            self.vlen_sources = tuple(
                s
                for s in self.provides_sources
                if len(f[s].dims) > 0 and "shapes" in f[s].dims[0].keys()
            )
            for s in self.vlen_sources:
                if f[s].ndim != 1:
                    raise DataShapeError(
                        f"HDF5 file {self.path!r}: variable-length source {s!r} has shape "
                        f"{f[s].shape}; Fuel's layout stores it as one axis of flattened "
                        "examples (with their shapes as the 'shapes' dimension scale)"
                    )
            self.axis_labels = {}
            for s in self.provides_sources:
                dims = f[s].dims
                if s in self.vlen_sources:
                    extra = (
                        tuple(_decode(x) for x in dims[0]["shape_labels"][()])
                        if "shape_labels" in dims[0].keys()
                        else ()
                    )
                    self.axis_labels[s] = (dims[0].label,) + extra
                else:
                    self.axis_labels[s] = tuple(d.label for d in dims)
            # per-source example indices in the file, in order
            self._indices: dict[str, np.ndarray | slice] = {}
            for s in self.sources:
                parts = []
                for split in self.which_sets:
                    (row,) = [
                        r
                        for r in rows
                        if _decode(r["split"]) == split and _decode(r["source"]) == s
                    ]
                    ref = row["indices"] if "indices" in names else None
                    if ref:
                        parts.append(np.sort(np.asarray(f[ref][()], dtype=np.int64)))
                    else:
                        parts.append(np.arange(int(row["start"]), int(row["stop"]), dtype=np.int64))
                idx = np.unique(np.concatenate(parts)) if len(parts) > 1 else parts[0]
                if len(idx) and idx[-1] >= len(f[s]):
                    raise DataFileError(
                        f"HDF5 file {self.path!r}: split {self.which_sets} of source {s!r} "
                        f"refers to example {idx[-1]}, the source has {len(f[s])}"
                    )
                if subset is not None:
                    try:
                        idx = idx[
                            subset
                            if isinstance(subset, slice)
                            else np.sort(np.asarray(subset, dtype=np.int64))
                        ]
                    except IndexError as e:
                        raise DataIndexError(
                            f"H5PYDataset({self.path!r}): subset {subset!r} is outside the "
                            f"{len(idx)} examples of split {self.which_sets}"
                        ) from e
                contiguous = (
                    len(idx) > 0 and idx[-1] - idx[0] == len(idx) - 1 and np.all(np.diff(idx) == 1)
                )
                self._indices[s] = slice(int(idx[0]), int(idx[-1]) + 1) if contiguous else idx
        except DataError:
            raise
        except (KeyError, TypeError, OSError, RuntimeError) as e:
            raise DataFileError(f"HDF5 file {self.path!r} is malformed: {e}") from e
        lengths = {s: self._len(s) for s in self.sources}
        if len(set(lengths.values())) > 1:
            raise DataShapeError(
                f"HDF5 file {self.path!r}: sources of split {self.which_sets} have different "
                f"lengths {lengths}"
            )
        self.num_examples = next(iter(lengths.values())) if lengths else 0

    def _len(self, s: str) -> int:
        idx = self._indices[s]
        return idx.stop - idx.start if isinstance(idx, slice) else len(idx)

    # -- handles -------------------------------------------------------------------
    def _file(self) -> h5py.File:
        external = self.__dict__.get("_external_file_handle")
        if external is not None and external.id.valid:
            return external
        if self._handle is None or self._pid != os.getpid():
            self._handle = _open_file(self.path, self.driver)  # never reuse one across a fork
            self._pid = os.getpid()
        return self._handle

    def open(self) -> Any:
        return None if self.load_in_memory else self._file()

    def _dset(self, f: h5py.File, s: str) -> h5py.Dataset:
        """The h5py dataset of source ``s`` (looked up once per handle: lookups are slow)."""
        cache = self.__dict__.setdefault("_dsets", {})
        key = (id(f), s)
        if key not in cache or not cache[key][0].id.valid:
            cache[key] = (f[s], f)
        return cache[key][0]

    def _mapped(self, f: h5py.File, s: str) -> np.ndarray | None:
        """Source ``s`` as a read-only array mapped from the file, or ``None`` where it cannot
        be (chunked, compressed, variable-length, not a plain file): h5py reads those."""
        maps = self.__dict__.setdefault("_maps", {})
        key = (os.getpid(), s)
        if key not in maps:
            maps[key] = self._map(f, s) if self.__dict__.get("memory_map", True) else None
        return maps[key]

    def _map(self, f: h5py.File, s: str) -> np.ndarray | None:
        dset = self._dset(f, s)
        if (
            s in self.vlen_sources
            or f.driver != "sec2"
            or dset.chunks is not None
            or dset.external
            or dset.dtype.kind not in "biufc"
            or dset.size == 0
        ):
            return None
        offset = dset.id.get_offset()
        if offset is None or os.path.getsize(f.filename) < offset + dset.nbytes:
            return None
        with open(f.filename, "rb") as fh:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        array = np.ndarray(dset.shape, dset.dtype, buffer=mm, offset=offset)
        if array[0].tobytes() != dset[0].tobytes() or array[-1].tobytes() != dset[-1].tobytes():
            return None  # not where HDF5 keeps it (a user block?): read through h5py
        return array

    def close_file(self) -> None:
        """Close this process's handle of the file (it reopens when read again)."""
        self.__dict__.pop("_maps", None)
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None

    @property
    def _file_handle(self) -> h5py.File:
        """The open handle (Fuel's attribute): the file given, or this process's own."""
        if self._external_file_handle is not None:
            return self._external_file_handle
        if self._handle is not None and self._pid == os.getpid() and self._handle.id.valid:
            return self._handle
        raise DataFileError(
            f"H5PYDataset({self.path!r}): no open file handle; call open() first"
        )

    def _out_of_memory_open(self) -> h5py.File:
        """Open this process's handle (Fuel's method)."""
        return self._file()

    def _out_of_memory_close(self) -> None:
        """Close this process's handle (Fuel's method)."""
        self.close_file()

    @property
    def data_sources(self) -> tuple | None:
        """The sources read in memory (``load_in_memory``), else ``None`` (Fuel's attribute)."""
        if not self.load_in_memory:
            return None
        return tuple(self._memory[s] for s in self.sources)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_pid"] = None
        state["_external_file_handle"] = None
        state.pop("_dsets", None)
        state.pop("_maps", None)
        return state

    # -- reading -------------------------------------------------------------------
    def _file_indices(self, s: str, request: Any) -> Any:
        base = self._indices[s]
        n = self.num_examples
        if isinstance(request, slice):
            request = np.arange(n)[request]
        req = np.asarray(request, dtype=np.int64)
        if req.size and (req.min() < 0 or req.max() >= n):
            bad = req[(req < 0) | (req >= n)].ravel()[0]
            raise DataIndexError(
                f"H5PYDataset({self.path!r}): source {s!r} of split {self.which_sets} has {n} "
                f"examples, request asks for index {int(bad)}"
            )
        return base.start + req if isinstance(base, slice) else base[req]

    def _read_file(self, f: h5py.File, s: str, request: Any) -> Any:
        idx = self._file_indices(s, request)
        mapped = self._mapped(f, s)
        if mapped is not None:  # a copy, in the requested order (repeats included)
            return mapped[int(idx)].copy() if idx.ndim == 0 else mapped[idx]
        try:
            dset = self._dset(f, s)
            if idx.ndim == 0:
                data = dset[int(idx)]
                if s in self.vlen_sources:
                    data = data.reshape(dset.dims[0]["shapes"][int(idx)])
                return data
            if len(idx) == 0:
                return dset[0:0]
            if idx[-1] - idx[0] == len(idx) - 1 and np.all(np.diff(idx) == 1):
                sl = slice(int(idx[0]), int(idx[-1]) + 1)
                data, shapes = (
                    dset[sl],
                    (dset.dims[0]["shapes"][sl] if s in self.vlen_sources else None),
                )
            else:
                if not self.sort_indices and np.any(np.diff(idx) <= 0):
                    raise DataTypeError(
                        f"H5PYDataset({self.path!r}): source {s!r}: sort_indices=False needs "
                        f"increasing requests, found {idx[:8].tolist()}..."
                    )
                order = np.argsort(idx, kind="stable")
                ordered = idx[order]
                step = np.diff(ordered)
                if np.all(step > 0):  # distinct indices: read sorted, scatter back
                    sorted_data = dset[ordered]
                    data = np.empty_like(sorted_data)
                    data[order] = sorted_data
                    shapes = None
                    if s in self.vlen_sources:
                        shapes = np.empty((len(idx), dset.dims[0]["shapes"].shape[1]), np.int64)
                        shapes[order] = dset.dims[0]["shapes"][ordered]
                else:  # repeated indices: HDF5 reads each once
                    uniq, inverse = np.unique(idx, return_inverse=True)
                    data = dset[uniq][inverse]
                    shapes = (dset.dims[0]["shapes"][uniq][inverse]
                              if s in self.vlen_sources else None)
        except (OSError, RuntimeError, KeyError) as e:
            raise DataFileError(
                f"HDF5 file {self.path!r}: cannot read source {s!r} at file indices "
                f"{np.asarray(idx).ravel()[:8].tolist()}: {e}"
            ) from e
        if shapes is not None:
            out = np.empty(len(data), dtype=object)
            for i, (x, shape) in enumerate(zip(data, shapes, strict=True)):
                out[i] = np.asarray(x).reshape(shape)
            data = out
        return data

    def _in_memory_get_data(self, state: Any = None, request: Any = None) -> tuple:
        """Read ``request`` from memory (Fuel's method; ``state`` must be ``None``)."""
        if state is not None or request is None:
            raise RequestError(
                f"H5PYDataset({self.path!r}): an in-memory read takes state None and a request, "
                f"found state {state!r:.60} and request {request!r:.60}"
            )
        return self._memory_read(request)

    def _out_of_memory_get_data(self, state: Any = None, request: Any = None) -> tuple:
        """Read ``request`` from the file (Fuel's method)."""
        if not isinstance(request, (int, np.integer, slice, list, np.ndarray)):
            raise RequestError(
                f"H5PYDataset({self.path!r}): expected a request that is an index, a list of "
                f"indices or a slice, found {type(request).__name__}"
            )
        f = state if state is not None else self._file()
        return tuple(self._read_file(f, s, request) for s in self.sources)

    def get_data(self, state: Any = None, request: Any = None) -> tuple:
        if request is None:
            raise RequestError(
                f"H5PYDataset({self.path!r}).get_data: expected a request (an index, a list of "
                "indices or a slice), found None"
            )
        if self.load_in_memory:
            return self._memory_read(request)
        return self._out_of_memory_get_data(state, request)

    def _memory_read(self, request: Any) -> tuple:
        out = []
        for s in self.sources:
            req = request
            if isinstance(req, list):
                req = np.asarray(req, dtype=np.int64)
            if not isinstance(req, slice):
                r = np.asarray(req)
                if r.size and (r.min() < 0 or r.max() >= self.num_examples):
                    raise DataIndexError(
                        f"H5PYDataset({self.path!r}): source {s!r} has {self.num_examples} "
                        f"examples, request asks for index {int(r.max())}"
                    )
            out.append(self._memory[s][req])
        return tuple(out)

    def __repr__(self) -> str:
        return f"H5PYDataset({self.path!r}, which_sets={self.which_sets})"
