"""Transformers: streams that wrap a stream and change what it gives.

This module holds the base classes (Fuel's ``Transformer``,
``SourcewiseTransformer``, ``AgnosticSourcewiseTransformer``,
``ExpectsAxisLabels``) and the one-in-one-out transformers. Batching,
buffering and merging transformers are in :mod:`bricks.data._batching`,
sequence transformers (``Padding``, ``TimeMajor``, ``Window``, ``NGrams``,
``bucket_by_length``) in :mod:`bricks.data._sequences`, image transformers
in :mod:`bricks.data._image`.

Each epoch iterator keeps a small state so that a run resumes mid-epoch
exactly (see :mod:`bricks.data._streams`):

* one-in-one-out transformers keep the child's state and a count (random
  transformers draw from ``(seed, epoch, count)``);
* ``Batch`` and ``Filter`` keep the child's state (they hold no buffer
  between outputs);
* buffering transformers (``Unpack``, ``Cache``, ``Window``) keep the
  child's state *before* the batches still in their buffer and how much of
  the buffer was used; resuming re-reads those few batches and skips.

A Fuel transformer ports unchanged: subclass :class:`Transformer` and
define ``transform_example`` / ``transform_batch``, or
:class:`SourcewiseTransformer` and define ``transform_source_example`` /
``transform_source_batch``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from collections.abc import Mapping as MappingABC
from typing import Any

import numpy as np

from bricks.errors import (
    AxisLabelsError,
    ConfigurationError,
    DataShapeError,
    DataTypeError,
    SourceError,
    UnsupportedLayoutError,
    did_you_mean,
)

from ._datasets import check_sources
from ._streams import AbstractDataStream, _Iter, _state_field, stack_examples

__all__ = [
    "AgnosticSourcewiseTransformer",
    "Cast",
    "ExpectsAxisLabels",
    "FilterSources",
    "Flatten",
    "ForceFloatX",
    "Mapping",
    "Rename",
    "ScaleAndShift",
    "SortMapping",
    "SourcewiseTransformer",
    "ToBytes",
    "Transformer",
]

logger = logging.getLogger(__name__)


class _MapIter(_Iter):
    def __init__(self, t: Transformer, epoch: int, state: Any) -> None:
        self.t = t
        self.epoch = epoch
        self.child = t._child(epoch, state)
        self.count = int(_state_field(state, "count", 0, type(t).__name__))

    def __next__(self) -> tuple:
        data = next(self.child)
        out = self.t.transform(data, self.epoch, self.count)
        self.count += 1
        return out

    def state(self) -> dict:
        return {"count": self.count, "child": self.child.state()}

    def close(self) -> None:
        self.child.close()


class Transformer(AbstractDataStream):
    """Base class: a stream computed item by item from ``data_stream``.

    Args:
        data_stream: the wrapped (child) stream.
        produces_examples: whether this stream gives examples (default: as
            the child).
        axis_labels: the labels of the output (default: the child's).
        iteration_scheme: for transformers that draw requests (``Batch``).

    Subclasses define :meth:`transform_example` and/or
    :meth:`transform_batch` (Fuel's interface); a transformer that turns
    batches into examples or back defines its own epoch iterator.

    Attributes:
        data_stream: the wrapped (child) stream.
    """

    def __init__(
        self,
        data_stream: AbstractDataStream,
        produces_examples: bool | None = None,
        axis_labels: MappingABC[str, Sequence[str] | None] | None = None,
        iteration_scheme: Any = None,
    ) -> None:
        if not isinstance(data_stream, AbstractDataStream):
            raise SourceError(
                f"{type(self).__name__}: expected a data stream, found {type(data_stream).__name__}"
            )
        if axis_labels is None:
            axis_labels = data_stream.axis_labels
        super().__init__(iteration_scheme=iteration_scheme, axis_labels=axis_labels)
        self.data_stream = data_stream
        self.sources = tuple(data_stream.sources)
        if iteration_scheme is None:
            self.produces_examples = (
                data_stream.produces_examples if produces_examples is None else produces_examples
            )

    # -- Fuel's interface ---------------------------------------------------------
    def transform_example(self, example: tuple) -> tuple:
        """Transform one example (a tuple ordered as the child's ``sources``)."""
        raise UnsupportedLayoutError(
            f"{type(self).__name__} does not implement transform_example"
        )

    def transform_batch(self, batch: tuple) -> tuple:
        """Transform one batch (a tuple ordered as the child's ``sources``)."""
        raise UnsupportedLayoutError(f"{type(self).__name__} does not implement transform_batch")

    def transform(self, data: tuple, epoch: int, count: int) -> tuple:
        """Item ``count`` of epoch ``epoch``; the default calls Fuel's methods."""
        if self.produces_examples != self.data_stream.produces_examples:
            kind = "examples" if self.produces_examples else "batches"
            child = "examples" if self.data_stream.produces_examples else "batches"
            raise UnsupportedLayoutError(
                f"{type(self).__name__} gives {kind} from a stream of {child}; a transformer "
                "that changes one into the other must define its own iteration (see Batch, "
                "Unpack)"
            )
        if self.produces_examples:
            return self.transform_example(data)
        return self.transform_batch(data)

    # -- plumbing ---------------------------------------------------------------------
    def _open(self, epoch: int, state: Any) -> _Iter:
        return _MapIter(self, epoch, state)

    def _child(self, epoch: int, state: Any) -> _Iter:
        return self.data_stream._open(
            epoch, _state_field(state, "child", None, type(self).__name__)
        )

    def _which(self, which_sources: Sequence[str] | None) -> tuple[str, ...]:
        if which_sources is None:
            return self.sources
        if isinstance(which_sources, str):
            which_sources = (which_sources,)
        return check_sources(which_sources, self.sources, type(self).__name__)

    def close(self) -> None:
        super().close()
        self.data_stream.close()

    def reset(self) -> None:
        super().reset()
        self.data_stream.reset()

    def next_epoch(self) -> None:
        super().next_epoch()
        self.data_stream.next_epoch()


class SourcewiseTransformer(Transformer):
    """Applies the same transformation to some sources, one by one (Fuel's class).

    Subclasses define ``transform_source_example(example, source_name)`` and
    ``transform_source_batch(batch, source_name)``.

    Args:
        data_stream: the child stream.
        produces_examples: whether this stream gives examples (default: as the child).
        which_sources: the sources to transform (default: all).
        axis_labels: the labels of the output (default: the child's).
    """

    def __init__(
        self,
        data_stream: AbstractDataStream,
        produces_examples: bool | None = None,
        which_sources: Sequence[str] | None = None,
        axis_labels: MappingABC[str, Sequence[str] | None] | None = None,
    ) -> None:
        super().__init__(data_stream, produces_examples, axis_labels=axis_labels)
        self.which_sources = self._which(which_sources)

    def transform_source_example(self, source_example: Any, source_name: str) -> Any:
        """Transform one example of source ``source_name``."""
        raise UnsupportedLayoutError(
            f"{type(self).__name__} does not implement transform_source_example"
        )

    def transform_source_batch(self, source_batch: Any, source_name: str) -> Any:
        """Transform one batch of source ``source_name``."""
        raise UnsupportedLayoutError(
            f"{type(self).__name__} does not implement transform_source_batch"
        )

    def _apply(self, data: tuple, fn: Callable[[Any, str], Any]) -> tuple:
        return tuple(
            fn(x, s) if s in self.which_sources else x
            for s, x in zip(self.data_stream.sources, data, strict=True)
        )

    def transform_example(self, example: tuple) -> tuple:
        return self._apply(example, self.transform_source_example)

    def transform_batch(self, batch: tuple) -> tuple:
        return self._apply(batch, self.transform_source_batch)


class AgnosticSourcewiseTransformer(SourcewiseTransformer):
    """A sourcewise transformer that treats examples and batches alike.

    Subclasses define ``transform_any_source(source_data, source_name)``.
    """

    def transform_any_source(self, source_data: Any, source_name: str) -> Any:
        """Transform an example or a batch of source ``source_name``."""
        raise UnsupportedLayoutError(
            f"{type(self).__name__} does not implement transform_any_source"
        )

    def transform_source_example(self, source_example: Any, source_name: str) -> Any:
        return self.transform_any_source(source_example, source_name)

    def transform_source_batch(self, source_batch: Any, source_name: str) -> Any:
        return self.transform_any_source(source_batch, source_name)


class ExpectsAxisLabels:
    """Mixin of transformers that check the axis labels of what they read (Fuel's class)."""

    def verify_axis_labels(
        self, expected: Sequence[str], actual: Sequence[str] | None, source_name: str
    ) -> None:
        """Raise :class:`~bricks.errors.AxisLabelsError` if ``actual`` differs from
        ``expected``; log a warning (once) when the labels are unknown."""
        if actual is None:
            if not getattr(self, "_warned_axis_labels", False):
                logger.warning(
                    "%s: source %r has no axis labels; assuming %s",
                    type(self).__name__,
                    source_name,
                    tuple(expected),
                )
                self._warned_axis_labels = True
            return
        if tuple(actual) != tuple(expected):
            raise AxisLabelsError(
                f"{type(self).__name__}: source {source_name!r} has axis labels "
                f"{tuple(actual)}, expected {tuple(expected)}"
            )


class Mapping(Transformer):
    """Apply a function to each item.

    Args:
        data_stream: the child stream.
        mapping: ``f(data) -> data``; ``data`` is a tuple ordered as
            ``sources`` (``mapping_accepts=list``) or a ``{source: value}``
            dict (``mapping_accepts=dict``), and so is the result. With
            ``add_sources`` the result holds only the new sources, appended
            after the old ones.
        add_sources: names of the sources ``mapping`` adds.
        mapping_accepts: ``list`` (the default; tuples) or ``dict``.

    >>> import numpy as np
    >>> from bricks.data import DataStream, IndexableDataset, SequentialScheme
    >>> s = DataStream(IndexableDataset({"x": np.arange(4)}),
    ...                iteration_scheme=SequentialScheme(4, 2))
    >>> m = Mapping(s, lambda d: (d[0] ** 2,), add_sources=("x2",))
    >>> m.sources, [b[1].tolist() for b in m.get_epoch_iterator()]
    (('x', 'x2'), [[0, 1], [4, 9]])
    """

    def __init__(
        self,
        data_stream: AbstractDataStream,
        mapping: Callable[[Any], Any],
        add_sources: Sequence[str] | None = None,
        mapping_accepts: type = list,
    ) -> None:
        super().__init__(data_stream)
        if mapping_accepts not in (list, tuple, dict):
            raise ConfigurationError(
                f"Mapping: mapping_accepts must be list or dict, found {mapping_accepts!r}"
            )
        self.mapping = mapping
        self.mapping_accepts = mapping_accepts
        if isinstance(add_sources, str):
            add_sources = (add_sources,)
        self.add_sources = tuple(add_sources) if add_sources else None
        if self.add_sources:
            clash = set(self.add_sources) & set(self.sources)
            if clash:
                raise SourceError(f"Mapping: add_sources {sorted(clash)} are already sources")
            self.sources = self.sources + self.add_sources

    def transform(self, data: tuple, epoch: int, count: int) -> tuple:
        child = self.data_stream.sources
        new = self.add_sources or child
        if self.mapping_accepts is dict:
            result = self.mapping(dict(zip(child, data, strict=True)))
            if not isinstance(result, MappingABC) or set(result) != set(new):
                found = sorted(result) if isinstance(result, MappingABC) else type(result).__name__
                raise DataShapeError(
                    f"Mapping: {self.mapping!r} returned {found}, expected a dict with the "
                    f"sources {new}"
                )
            out = tuple(result[s] for s in new)
        else:
            out = tuple(self.mapping(data))
        if len(out) != len(new):
            raise DataShapeError(
                f"Mapping: {self.mapping!r} returned {len(out)} values, expected {len(new)} "
                f"(for sources {new})"
            )
        return data + out if self.add_sources else out


class SortMapping:
    """A mapping for :class:`Mapping` that sorts the examples of a batch by ``key``.

    Args:
        key: ``f(example_tuple) -> sortable``, e.g. ``lambda ex: len(ex[0])``.
        reverse: sort in decreasing order.

    A source given as a list stays a list; an array stays an array.

    >>> import numpy as np
    >>> SortMapping(lambda ex: ex[0])((np.array([3, 1, 2]),))
    (array([1, 2, 3]),)
    """

    def __init__(self, key: Callable[[tuple], Any], reverse: bool = False) -> None:
        self.key = key
        self.reverse = reverse

    def __call__(self, batch: tuple) -> tuple:
        examples = sorted(zip(*batch, strict=True), key=self.key, reverse=self.reverse)
        columns = list(zip(*examples, strict=True)) if examples else [[] for _ in batch]
        return tuple(
            list(col) if isinstance(orig, list) else stack_examples(list(col))
            for col, orig in zip(columns, batch, strict=True)
        )


def _relabel(
    labels: dict | None, which: Sequence[str], fn: Callable[[tuple], tuple]
) -> dict | None:
    if not labels:
        return labels
    return {k: (fn(v) if k in which and v is not None else v) for k, v in labels.items()}


class Flatten(SourcewiseTransformer):
    """Flatten each example of some sources to one axis (batches become 2-D).

    Axis labels become ``('batch', 'feature')`` (``('feature',)`` for examples).
    """

    def __init__(
        self, data_stream: AbstractDataStream, which_sources: Sequence[str] | None = None
    ) -> None:
        super().__init__(data_stream, which_sources=which_sources)
        batch = () if self.produces_examples else ("batch",)
        self.axis_labels = _relabel(
            self.axis_labels, self.which_sources, lambda v: (*batch, "feature")
        )

    def transform_source_example(self, source_example: Any, source_name: str) -> Any:
        return np.asarray(source_example).reshape(-1)

    def transform_source_batch(self, source_batch: Any, source_name: str) -> Any:
        a = np.asarray(source_batch)
        return a.reshape(len(a), -1)


class ScaleAndShift(AgnosticSourcewiseTransformer):
    """``x * scale + shift`` on some sources; floats keep their dtype, ints become float32."""

    def __init__(
        self,
        data_stream: AbstractDataStream,
        scale: float,
        shift: float,
        which_sources: Sequence[str] | None = None,
    ) -> None:
        super().__init__(data_stream, which_sources=which_sources)
        self.scale, self.shift = scale, shift

    def transform_any_source(self, source_data: Any, source_name: str) -> Any:
        a = np.asarray(source_data)
        dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.dtype(np.float32)
        return (a * self.scale + self.shift).astype(dtype, copy=False)


class Cast(AgnosticSourcewiseTransformer):
    """Cast some sources to ``dtype``."""

    def __init__(
        self,
        data_stream: AbstractDataStream,
        dtype: Any,
        which_sources: Sequence[str] | None = None,
    ) -> None:
        super().__init__(data_stream, which_sources=which_sources)
        self.dtype = np.dtype(dtype)

    def transform_any_source(self, source_data: Any, source_name: str) -> Any:
        return np.asarray(source_data).astype(self.dtype, copy=False)


class ForceFloatX(AgnosticSourcewiseTransformer):
    """Cast floating-point sources to float32 (bricks' floatX); others pass unchanged."""

    def __init__(
        self, data_stream: AbstractDataStream, which_sources: Sequence[str] | None = None
    ) -> None:
        super().__init__(data_stream, which_sources=which_sources)

    def transform_any_source(self, source_data: Any, source_name: str) -> Any:
        a = np.asarray(source_data)
        return a.astype(np.float32) if np.issubdtype(a.dtype, np.floating) else source_data


class Rename(Transformer):
    """Rename sources: ``Rename(stream, {"features": "x"})``.

    Args:
        data_stream: the child stream.
        names: ``{old: new}``.
        on_non_existent: what to do with an ``old`` name the stream does not
            have: ``'raise'`` (the default), ``'warn'`` or ``'ignore'``.
    """

    def __init__(
        self,
        data_stream: AbstractDataStream,
        names: MappingABC[str, str],
        on_non_existent: str = "raise",
    ) -> None:
        super().__init__(data_stream)
        if on_non_existent not in ("raise", "warn", "ignore"):
            raise ConfigurationError(
                f"Rename: on_non_existent must be 'raise', 'warn' or 'ignore', found "
                f"{on_non_existent!r}"
            )
        missing = [k for k in names if k not in self.sources]
        for k in missing:
            msg = (
                f"Rename: the stream has no source {k!r}{did_you_mean(k, self.sources)}; "
                f"its sources are {self.sources}"
            )
            if on_non_existent == "raise":
                raise SourceError(msg)
            if on_non_existent == "warn":
                logger.warning(msg)
        names = {k: v for k, v in names.items() if k in self.sources}
        renamed = tuple(names.get(s, s) for s in self.sources)
        if len(set(renamed)) != len(renamed):
            raise SourceError(
                f"Rename: renaming {self.sources} with {names} gives duplicate sources {renamed}"
            )
        self.sources = renamed
        self.names = names
        if self.axis_labels:
            self.axis_labels = {names.get(k, k): v for k, v in self.axis_labels.items()}

    def transform(self, data: tuple, epoch: int, count: int) -> tuple:
        return data


class FilterSources(Transformer):
    """Keep only some sources; they stay in the stream's order (as in Fuel)."""

    def __init__(self, data_stream: AbstractDataStream, sources: Sequence[str]) -> None:
        super().__init__(data_stream)
        if isinstance(sources, str):
            sources = (sources,)
        keep = set(check_sources(sources, data_stream.sources, "FilterSources"))
        self._index = [i for i, s in enumerate(data_stream.sources) if s in keep]
        self.sources = tuple(data_stream.sources[i] for i in self._index)
        if self.axis_labels:
            self.axis_labels = {k: v for k, v in self.axis_labels.items() if k in keep}

    def transform(self, data: tuple, epoch: int, count: int) -> tuple:
        return tuple(data[i] for i in self._index)


class ToBytes(SourcewiseTransformer):
    """Turn uint8 arrays into ``bytes`` (a list of them for a batch), as Fuel's ``ToBytes``.

    The axis labels become ``('bytes',)`` (``('batch', 'bytes')`` for batches).
    """

    def __init__(
        self, data_stream: AbstractDataStream, which_sources: Sequence[str] | None = None
    ) -> None:
        super().__init__(data_stream, which_sources=which_sources)
        labels = dict(self.axis_labels or {})
        for s in self.which_sources:
            labels[s] = ("bytes",) if self.produces_examples else ("batch", "bytes")
        self.axis_labels = labels

    def transform_source_example(self, source_example: Any, source_name: str) -> bytes:
        return np.ascontiguousarray(source_example).tobytes()

    def transform_source_batch(self, source_batch: Any, source_name: str) -> list[bytes]:
        return [self.transform_source_example(x, source_name) for x in source_batch]


def _check_bytes(example: Any, where: str) -> bytes:
    if not isinstance(example, bytes):
        raise DataTypeError(f"{where}: expected a bytes object, found {type(example).__name__}")
    return example
