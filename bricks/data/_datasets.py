"""Datasets: named sources of examples, read by request.

A dataset knows its sources (``provides_sources``), the subset it serves
(``sources``), their axis labels and how to answer a request. Reading goes
through a *handle* from :meth:`Dataset.open`, so that several epoch
iterators (a training and a monitoring loop) read one dataset at once
without sharing a position.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from bricks.data._aligned import gather, gather_chunk, row_bytes
from bricks.errors import (
    ConfigurationError,
    DataIndexError,
    DataShapeError,
    IterationStateError,
    RequestError,
    SourceError,
    did_you_mean,
)

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
        num_examples: number of examples (``nan`` for an iterable of unknown length).
        default_transformers: Fuel's ``((TransformerClass, args, kwargs), ...)``
            that :meth:`apply_default_transformers` (and
            ``DataStream.default_stream``) wrap a stream in, e.g. the scaling
            of uint8 pixels to [0, 1] float32 of :class:`~bricks.data.MNIST`.

    The ``state`` of :meth:`get_data` is what :meth:`open` returned (Fuel's
    name; a handle of one reader). :meth:`next_epoch` and :meth:`reset` give
    the state of the next epoch; a dataset whose epochs are driven by its data
    (one file per epoch, ...) overrides :meth:`next_epoch`.
    """

    provides_sources: tuple[str, ...] = ()
    axis_labels: dict[str, tuple[str, ...]] | None = None
    num_examples: int | float | None = None
    default_transformers: tuple = ()
    _example_iteration_scheme: Any = None

    def __init__(
        self,
        sources: Sequence[str] | None = None,
        axis_labels: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        if not self.provides_sources:
            raise SourceError(
                f"{type(self).__name__}: a dataset must name the sources it provides "
                "(set the class attribute provides_sources, e.g. ('features', 'targets'))"
            )
        if sources is None:
            self.sources = tuple(self.provides_sources)
        else:
            if isinstance(sources, str):
                sources = (sources,)
            self.sources = check_sources(sources, self.provides_sources, type(self).__name__)
        if axis_labels is not None:
            self.axis_labels = {k: tuple(v) for k, v in axis_labels.items()}

    # -- reading ------------------------------------------------------------------
    def open(self) -> Any:
        """Return the state of one reader (an epoch iterator): a handle, or ``None``."""
        return None

    def close(self, state: Any) -> None:
        """Release a state returned by :meth:`open`."""

    def reset(self, state: Any) -> Any:
        """Close ``state`` and return a fresh one (the start of the data)."""
        self.close(state)
        return self.open()

    def next_epoch(self, state: Any) -> Any:
        """Return the state for the next epoch (default: :meth:`reset`)."""
        return self.reset(state)

    def get_data(self, state: Any = None, request: Any = None) -> tuple:
        """Return one tuple of arrays (one per source in ``sources``) for ``request``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_data")

    def filter_sources(self, data: Sequence) -> tuple:
        """Keep the parts of ``data`` (one per ``provides_sources``) that are in ``sources``."""
        if len(data) != len(self.provides_sources):
            raise DataShapeError(
                f"{type(self).__name__}.filter_sources: expected {len(self.provides_sources)} "
                f"values (one per source of {self.provides_sources}), found {len(data)}"
            )
        return tuple(
            d for d, s in zip(data, self.provides_sources, strict=True) if s in self.sources
        )

    # -- streams --------------------------------------------------------------------
    @property
    def _reads_by_request(self) -> bool:
        """Whether a stream must give requests (an iteration scheme) to read it."""
        n = self.num_examples
        return n is not None and not (isinstance(n, float) and math.isnan(n))

    @property
    def example_iteration_scheme(self) -> Any:
        """The scheme reading one example at a time, in order (Fuel's attribute)."""
        if self._example_iteration_scheme is not None:
            return self._example_iteration_scheme
        if self._reads_by_request:
            from ._schemes import SequentialExampleScheme

            return SequentialExampleScheme(int(self.num_examples))
        raise ConfigurationError(
            f"{type(self).__name__} has no example_iteration_scheme: it does not know its "
            "number of examples; set _example_iteration_scheme or give a scheme to DataStream"
        )

    def get_example_stream(self) -> Any:
        """A ``DataStream`` of one example at a time, in order."""
        from ._datastream import DataStream

        if not self._reads_by_request and self._example_iteration_scheme is None:
            return DataStream(self)
        return DataStream(self, iteration_scheme=self.example_iteration_scheme)

    def apply_default_transformers(self, stream: Any) -> Any:
        """Wrap ``stream`` in :attr:`default_transformers`, in order."""
        for entry in self.default_transformers:
            cls, args, kwargs = (tuple(entry) + ((), {}))[:3]
            stream = cls(stream, *args, **dict(kwargs))
        return stream

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
    """A dataset of in-memory arrays or lists (anything that can be indexed), one per source.

    Args:
        indexables: ``{source: array}``; every array has the same first axis.
            An array alone is the single source ``"data"``.
        sources: the sources to give (default: all, in the mapping's order).
        axis_labels: ``{source: (label, ...)}``, checked against the ranks.

    A source that is a numpy array is indexed by numpy (a batch is an
    array); any other source (a list, e.g. of differently shaped images)
    gives a *list* of its examples for a batch request, as Fuel did. Sources
    are also attributes (``dataset.x``).

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
        for k, v in indexables.items():
            if v is None or isinstance(v, (str, bytes)) or not hasattr(v, "__len__"):
                raise DataShapeError(
                    f"IndexableDataset: source {k!r} is a {type(v).__name__}, expected an "
                    "array or a list of examples"
                )
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
                if isinstance(labels, str):
                    labels = (labels,)
                ndim = (
                    np.ndim(self.indexables[k])
                    if isinstance(self.indexables[k], np.ndarray)
                    and self.indexables[k].dtype != object
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

    def __getattr__(self, name: str) -> Any:
        indexables = self.__dict__.get("indexables")
        if indexables is not None and name in indexables:
            return indexables[name]
        raise AttributeError(f"{type(self).__name__} has no attribute or source {name!r}")

    def batch_reader(self, order: np.ndarray) -> Callable[[np.ndarray], tuple] | None:
        """``read(indices)`` giving :meth:`get_data`'s batch for int64 ``indices`` drawn
        from ``order``: one fancy index per source, no per-example Python work.

        ``order`` (every index an epoch will request) is checked against the
        number of examples once, here. ``None`` when a source is not a numpy
        array or a subclass reads differently (then :meth:`get_data` serves).
        """
        if type(self).get_data is not IndexableDataset.get_data:
            return None
        arrays = [self.indexables[s] for s in self.sources]
        if not all(type(a) is np.ndarray for a in arrays):
            return None
        if order.size and (order.min() < 0 or order.max() >= self.num_examples):
            bad = order[(order < 0) | (order >= self.num_examples)][0]
            raise DataIndexError(
                f"{type(self).__name__}: source {self.sources[0]!r} has {self.num_examples} "
                f"examples, the iteration scheme asks for index {int(bad)}"
            )

        pairs = [(a, row_bytes(a)) for a in arrays]  # row sizes once, not per batch

        def read(indices: np.ndarray) -> tuple:
            return tuple([gather(a, indices, row) for a, row in pairs])  # large ones aligned

        def chunk(indices: np.ndarray, count: int) -> tuple:
            """``count`` equal batches at once: per source, a list of consecutive views
            of one buffer (see :func:`~bricks.data._aligned.gather_chunk`)."""
            return tuple([gather_chunk(a, indices, count, row) for a, row in pairs])

        read.chunk = chunk  # type: ignore[attr-defined]
        return read

    def get_data(self, state: Any = None, request: Any = None) -> tuple:
        if state is not None:
            raise RequestError(
                f"IndexableDataset.get_data: expected state None (it keeps no reader state), "
                f"found {state!r:.80}"
            )
        if request is None:
            raise RequestError(
                "IndexableDataset.get_data: expected a request (an index, a list of indices or "
                "a slice), found None; read it through DataStream with an iteration scheme"
            )
        out = []
        for s in self.sources:
            arr = self.indexables[s]
            self._check_index(request, s)
            if isinstance(arr, np.ndarray):
                req = np.asarray(request, dtype=np.int64) if isinstance(request, list) else request
                out.append(arr[req])
            elif isinstance(request, (list, np.ndarray)):
                out.append([arr[int(i)] for i in request])
            else:
                out.append(arr[request])
        return tuple(out)


class _OneShot:
    """A one-shot iterator given as a source: usable for one epoch only."""

    def __init__(self, iterator: Any, source: str) -> None:
        self.iterator, self.source, self.used = iterator, source, False


class IterableDataset(Dataset):
    """A dataset of re-iterable sequences (lists, ranges, or callables giving iterators).

    There is no request: each read gives the next example. An epoch restarts
    every iterable; a resumed epoch skips the examples already given.

    Args:
        iterables: ``{source: iterable}``; an iterable alone is source ``"data"``.
            A callable is called once per epoch to give a fresh iterator. A
            one-shot iterator (a generator) serves one epoch; opening a
            second one raises instead of giving an empty epoch.
        sources: the sources to give.
        axis_labels: ``{source: (label, ...)}``.

    ``num_examples`` is the common length of the iterables, or ``nan`` when
    one has no length (Fuel's value); sources of different lengths are refused.

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
        checked = {}
        for k, v in iterables.items():
            if callable(v):
                checked[k] = v
                continue
            try:
                it = iter(v)
            except TypeError:
                raise DataShapeError(
                    f"IterableDataset: source {k!r} is a {type(v).__name__}, expected an "
                    "iterable (a list, a range, an array) or a callable returning an iterator"
                ) from None
            checked[k] = _OneShot(v, k) if it is v else v
        self.iterables = checked
        self.provides_sources = tuple(self.iterables)
        lengths = {
            k: len(v)
            for k, v in self.iterables.items()
            if not isinstance(v, _OneShot) and not callable(v) and hasattr(v, "__len__")
        }
        if len(set(lengths.values())) > 1:
            raise DataShapeError(
                f"IterableDataset: expected sources of equal length, found {lengths}"
            )
        if lengths and len(lengths) == len(self.iterables):
            self.num_examples = next(iter(lengths.values()))
        else:
            self.num_examples = float("nan")
        self.axis_labels = None
        super().__init__(sources, axis_labels)

    @property
    def _reads_by_request(self) -> bool:
        return False

    def open(self) -> Any:
        its = []
        for s in self.sources:
            v = self.iterables[s]
            if isinstance(v, _OneShot):
                if v.used:
                    raise IterationStateError(
                        f"IterableDataset: source {s!r} is a one-shot iterator "
                        f"({type(v.iterator).__name__}) that an earlier epoch consumed; give a "
                        "list, a re-iterable object or a callable returning a fresh iterator"
                    )
                v.used = True
                its.append(v.iterator)
            else:
                its.append(v() if callable(v) else iter(v))
        return zip(*its, strict=False)

    def get_data(self, state: Any = None, request: Any = None) -> tuple:
        if request is not None:
            raise RequestError(
                f"IterableDataset.get_data: expected request None (it reads in order), found "
                f"{request!r:.80}; read it through DataStream without an iteration scheme"
            )
        if state is None:
            raise RequestError(
                "IterableDataset.get_data: expected the state returned by open(), found None"
            )
        return tuple(np.asarray(x) for x in next(state))
