"""Writing HDF5 files in Fuel's layout (read them with :class:`~bricks.data.H5PYDataset`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from bricks.errors import DataIndexError, DataShapeError

__all__ = ["create_split_array", "write_hdf5"]


def create_split_array(split_dict: Mapping[str, Mapping[str, tuple]]) -> np.ndarray:
    """Fuel's ``split`` attribute from a mapping of splits.

    The mapping is ``{split: {source: (start, stop[, indices_ref[, comment]])}}``.

    A split/source pair absent from ``split_dict`` is written as unavailable.
    """
    sources = sorted({src for d in split_dict.values() for src in d})
    comments = [v[3] for d in split_dict.values() for v in d.values() if len(v) > 3]
    dtype = np.dtype(
        [
            ("split", "S", max(1, max(len(s.encode()) for s in split_dict))),
            ("source", "S", max(1, max(len(s.encode()) for s in sources))),
            ("start", np.int64),
            ("stop", np.int64),
            ("indices", h5py.special_dtype(ref=h5py.Reference)),
            ("available", np.bool_),
            ("comment", "S", max([1] + [len(c.encode()) for c in comments])),
        ]
    )
    rows = np.empty(len(split_dict) * len(sources), dtype=dtype)
    i = 0
    for split, per_source in split_dict.items():
        for src in sources:
            v = per_source.get(src)
            if v is None:
                rows[i] = (split.encode(), src.encode(), 0, 0, h5py.Reference(), False, b".")
            else:
                ref = v[2] if len(v) > 2 and v[2] is not None else h5py.Reference()
                comment = (v[3] if len(v) > 3 and v[3] else ".").encode()
                rows[i] = (split.encode(), src.encode(), int(v[0]), int(v[1]), ref, True, comment)
            i += 1
    return rows


def write_hdf5(
    path: str | os.PathLike,
    sources: Mapping[str, Any],
    splits: Mapping[str, tuple[int, int] | Sequence[int]] | None = None,
    axis_labels: Mapping[str, Sequence[str]] | None = None,
    compression: str | None = None,
) -> None:
    """Write numpy arrays as an HDF5 file in Fuel's layout.

    Args:
        path: file to create (written to ``path + ".tmp"``, then renamed).
        sources: ``{source: array}``; a list of arrays of different shapes
            (same rank) is written as a variable-length source with its shapes.
        splits: ``{split: (start, stop)}`` or ``{split: [indices]}``; default
            ``{"train": (0, n)}``.
        axis_labels: ``{source: labels}``; for a variable-length source,
            the batch label then one per axis of an example.
        compression: h5py compression (``"gzip"``...) or ``None``.
    """
    path = os.fspath(path)
    lengths = {k: len(v) for k, v in sources.items()}
    if len(set(lengths.values())) != 1:
        raise DataShapeError(
            f"write_hdf5({path!r}): expected sources of equal length, found {lengths}"
        )
    n = next(iter(lengths.values()))
    splits = dict(splits) if splits is not None else {"train": (0, n)}
    axis_labels = dict(axis_labels or {})
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        for name, data in sources.items():
            labels = axis_labels.get(name)
            if isinstance(data, np.ndarray) and data.dtype != object:
                dset = f.create_dataset(name, data=data, compression=compression)
                if labels is not None:
                    if len(labels) != data.ndim:
                        raise DataShapeError(
                            f"write_hdf5({path!r}): source {name!r} has shape {data.shape}, "
                            f"axis_labels gives {len(labels)} labels {tuple(labels)}"
                        )
                    for i, lab in enumerate(labels):
                        dset.dims[i].label = lab
                continue
            examples = [np.asarray(x) for x in data]
            ndims = {x.ndim for x in examples}
            dtypes = {x.dtype for x in examples}
            if len(ndims) > 1 or len(dtypes) > 1:
                raise DataShapeError(
                    f"write_hdf5({path!r}): variable-length source {name!r} needs examples of one "
                    f"rank and dtype, found ranks {sorted(ndims)} and dtypes "
                    f"{sorted(map(str, dtypes))}"
                )
            dtype = examples[0].dtype if examples else np.dtype("float32")
            dset = f.create_dataset(name, (len(examples),), dtype=h5py.vlen_dtype(dtype))
            for i, x in enumerate(examples):
                dset[i] = x.ravel()
            shapes = f.create_dataset(
                f"{name}_shapes",
                data=np.array([x.shape for x in examples], dtype=np.int64).reshape(
                    len(examples), -1
                ),
            )
            shapes.make_scale("shapes")
            dset.dims[0].attach_scale(shapes)
            ndim = examples[0].ndim if examples else 1
            labels = (
                tuple(labels)
                if labels is not None
                else ("batch",) + tuple(f"axis_{i}" for i in range(ndim))
            )
            if len(labels) != ndim + 1:
                raise DataShapeError(
                    f"write_hdf5({path!r}): variable-length source {name!r}: expected "
                    f"{ndim + 1} axis labels (batch + {ndim}), found {labels}"
                )
            shape_labels = f.create_dataset(
                f"{name}_shape_labels", data=np.array([s.encode() for s in labels[1:]], dtype="S")
            )
            shape_labels.make_scale("shape_labels")
            dset.dims[0].attach_scale(shape_labels)
            dset.dims[0].label = labels[0]
        split_dict: dict[str, dict[str, tuple]] = {}
        for split, spec in splits.items():
            if isinstance(spec, tuple) and len(spec) == 2:
                start, stop = int(spec[0]), int(spec[1])
                if not 0 <= start <= stop <= n:
                    raise DataIndexError(
                        f"write_hdf5({path!r}): split {split!r} = {spec} is outside 0..{n}"
                    )
                split_dict[split] = {s: (start, stop) for s in sources}
            else:
                idx = np.sort(np.asarray(spec, dtype=np.int64))
                if idx.size and (idx[0] < 0 or idx[-1] >= n):
                    raise DataIndexError(
                        f"write_hdf5({path!r}): split {split!r} has indices outside 0..{n - 1}"
                    )
                ds = f.create_dataset(f"{split}_split_indices", data=idx)
                split_dict[split] = {s: (0, 0, ds.ref) for s in sources}
        f.attrs["split"] = create_split_array(split_dict)
        f.flush()
    os.replace(tmp, path)
