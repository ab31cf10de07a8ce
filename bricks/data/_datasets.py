"""Datasets: named sources of examples, read by request.

A dataset knows its sources (``provides_sources``), the subset it serves
(``sources``), their axis labels and how to answer a request. Reading goes
through a *handle* from :meth:`Dataset.open`, so that several epoch
iterators (a training and a monitoring loop) read one dataset at once
without sharing a position.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from bricks.errors import DataIndexError, DataShapeError, SourceError, did_you_mean

__all__ = ["Dataset", "IndexableDataset", "IterableDataset"]


def check_sources(requested: Iterable[str], provided: Sequence[str], where: str) -> tuple[str, ...]:
    """Return ``requested`` as a tuple, or raise :class:`SourceError` naming the unknown one."""
    requested = tuple(requested)
    for name in requested:
        if name not in provided:
            raise SourceError(
                f"{where}: unknown source {name!r}{did_you_mean(name, provided)}; "
                f"available sources: {tuple(provided)}"
            )
    return requested


class Dataset:
    """Base class of datasets.

    Attributes:
        provides_sources: every source the dataset can give.
        sources: the sources it gives, in this order (a subset of the above).
        axis_labels: ``{source: (label, ...)}`` or ``None``.
        num_examples: number of examples, or ``None`` for iterables.
    """

    provides_sources: tuple[str, ...] = ()
    axis_labels: dict[str, tuple[str, ...]] | None = None
    num_examples: int | None = None

    def __init__(self, sources: Sequence[str] | None = None) -> None:
        if sources is None:
            self.sources = tuple(self.provides_sources)
        else:
            self.sources = check_sources(sources, self.provides_sources, type(self).__name__)

    def open(self) -> Any:
        """Return a handle for one reader (an epoch iterator)."""
        return None

    def close(self, handle: Any) -> None:
        """Release a handle returned by :meth:`open`."""

    def get_data(self, handle: Any = None, request: Any = None) -> tuple:
        """Return one tuple of arrays (one per source in ``sources``) for ``request``."""
        raise NotImplementedError

    def _check_index(self, request: Any, source: str) -> None:
        n = self.num_examples
        if n is None:
            return
        if isinstance(request, (int, np.integer)):
            bad = [int(request)] if not 0 <= request < n else []
        elif isinstance(request, slice):
            return
        else:
            idx = np.asarray(request)
            bad = idx[(idx < 0) | (idx >= n)].tolist() if idx.size else []
        if bad:
            raise DataIndexError(
                f"{type(self).__name__}: source {source!r} has {n} examples, "
                f"request asks for index {bad[0]}"
            )


class IndexableDataset(Dataset):
    """A dataset of in-memory arrays (anything numpy can index), one per source.

    Args:
        indexables: ``{source: array}``; every array has the same first axis.
            An array alone is the single source ``"data"``.
        sources: the sources to give (default: all, in the mapping's order).
        axis_labels: ``{source: (label, ...)}``, checked against the ranks.

    >>> ds = IndexableDataset({"x": np.arange(6).reshape(3, 2), "y": np.array([0, 1, 0])})
    >>> ds.sources, ds.num_examples
    (('x', 'y'), 3)
    >>> ds.get_data(None, [2, 0])
    (array([[4, 5],
           [0, 1]]), array([0, 0]))
    """

    def __init__(
        self,
        indexables: Mapping[str, Any] | np.ndarray,
        sources: Sequence[str] | None = None,
        axis_labels: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        if not isinstance(indexables, Mapping):
            indexables = {"data": indexables}
        self.indexables = {
            k: v if hasattr(v, "__getitem__") else np.asarray(v) for k, v in indexables.items()
        }
        self.provides_sources = tuple(self.indexables)
        lengths = {k: len(v) for k, v in self.indexables.items()}
        if len(set(lengths.values())) > 1:
            raise DataShapeError(
                f"IndexableDataset: expected sources of equal length, found {lengths}"
            )
        self.num_examples = next(iter(lengths.values())) if lengths else 0
        self.axis_labels = None
        if axis_labels is not None:
            self.axis_labels = {}
            for k, labels in axis_labels.items():
                check_sources([k], self.provides_sources, "IndexableDataset axis_labels")
                ndim = (
                    np.ndim(self.indexables[k])
                    if isinstance(self.indexables[k], np.ndarray)
                    else None
                )
                if ndim is not None and len(labels) != ndim:
                    raise DataShapeError(
                        f"IndexableDataset: source {k!r} has {ndim} axes (shape "
                        f"{self.indexables[k].shape}), axis_labels gives {len(labels)}: "
                        f"{tuple(labels)}"
                    )
                self.axis_labels[k] = tuple(labels)
        super().__init__(sources)

    def get_data(self, handle: Any = None, request: Any = None) -> tuple:
        out = []
        for s in self.sources:
            arr = self.indexables[s]
            self._check_index(request, s)
            if isinstance(request, list) and isinstance(arr, np.ndarray):
                out.append(arr[np.asarray(request, dtype=np.int64)])
            elif isinstance(request, list):
                out.append(np.asarray([arr[i] for i in request]))
            else:
                out.append(arr[request])
        return tuple(out)


class IterableDataset(Dataset):
    """A dataset of re-iterable sequences (lists, ranges, or callables giving iterators).

    There is no request: each read gives the next example. An epoch restarts
    every iterable; a resumed epoch skips the examples already given.

    Args:
        iterables: ``{source: iterable}``; an iterable alone is source ``"data"``.
            A callable is called once per epoch to give a fresh iterator.
        sources: the sources to give.
        axis_labels: ``{source: (label, ...)}``.

    >>> ds = IterableDataset({"words": [[1, 2], [3]]})
    >>> h = ds.open(); ds.get_data(h), ds.get_data(h)
    ((array([1, 2]),), (array([3]),))
    """

    def __init__(
        self,
        iterables: Mapping[str, Any] | Iterable,
        sources: Sequence[str] | None = None,
        axis_labels: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        if not isinstance(iterables, Mapping):
            iterables = {"data": iterables}
        for k, v in iterables.items():
            if not callable(v) and iter(v) is v:
                raise DataShapeError(
                    f"IterableDataset: source {k!r} is a one-shot iterator; give a list, a "
                    "re-iterable object or a callable that returns a fresh iterator"
                )
        self.iterables = dict(iterables)
        self.provides_sources = tuple(self.iterables)
        self.axis_labels = {k: tuple(v) for k, v in axis_labels.items()} if axis_labels else None
        super().__init__(sources)

    def open(self) -> Any:
        its = [
            self.iterables[s]() if callable(self.iterables[s]) else iter(self.iterables[s])
            for s in self.sources
        ]
        return zip(*its, strict=False)

    def get_data(self, handle: Any = None, request: Any = None) -> tuple:
        return tuple(np.asarray(x) for x in next(handle))
