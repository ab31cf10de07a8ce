"""Transformers: streams that wrap a stream and change what it gives.

Each transformer is one small class. Its epoch iterator keeps a small state
so that a run resumes mid-epoch exactly (see :mod:`bricks.data._streams`):

* one-in-one-out transformers keep the child's state and a count (random
  transformers draw from ``default_rng([seed, epoch, count])``);
* ``Batch`` and ``Filter`` keep the child's state (they hold no buffer
  between outputs);
* buffering transformers (``Unpack``, ``Cache``, ``Window``) keep the
  child's state *before* the batches still in their buffer and how much of
  the buffer was used; resuming re-reads those few batches and skips.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Sequence
from collections.abc import Mapping as MappingABC
from typing import Any

import numpy as np

from bricks.errors import BatchStrictnessError, DataShapeError, SchemeError, SourceError

from ._datasets import check_sources
from ._schemes import ConstantScheme, IterationScheme
from ._streams import AbstractDataStream, _Iter, _state_field, stack_examples

__all__ = [
    "Batch",
    "Cache",
    "Cast",
    "Filter",
    "FilterSources",
    "Flatten",
    "Mapping",
    "Merge",
    "NGrams",
    "Padding",
    "RandomCrop",
    "RandomFlip",
    "Rename",
    "ScaleAndShift",
    "SortMapping",
    "TimeMajor",
    "Transformer",
    "Unpack",
    "Window",
    "bucket_by_length",
]


class Transformer(AbstractDataStream):
    """Base class: a stream computed from ``data_stream``.

    Attributes:
        data_stream: the wrapped (child) stream.
    """

    def __init__(
        self, data_stream: AbstractDataStream, produces_examples: bool | None = None
    ) -> None:
        super().__init__()
        if not isinstance(data_stream, AbstractDataStream):
            raise SourceError(
                f"{type(self).__name__}: expected a data stream, found {type(data_stream).__name__}"
            )
        self.data_stream = data_stream
        self.sources = tuple(data_stream.sources)
        self.produces_examples = (
            data_stream.produces_examples if produces_examples is None else produces_examples
        )
        self.axis_labels = data_stream.axis_labels

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


# --- one in, one out -----------------------------------------------------------


class _MapIter(_Iter):
    def __init__(self, t: _Elementwise, epoch: int, state: Any) -> None:
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


class _Elementwise(Transformer):
    """A transformer that maps each item to one item."""

    def transform(self, data: tuple, epoch: int, count: int) -> tuple:
        raise NotImplementedError

    def _open(self, epoch: int, state: Any) -> _Iter:
        return _MapIter(self, epoch, state)


class _Sourcewise(_Elementwise):
    """Applies ``transform_source(array, name)`` to some sources."""

    def __init__(
        self, data_stream: AbstractDataStream, which_sources: Sequence[str] | None
    ) -> None:
        super().__init__(data_stream)
        self.which_sources = self._which(which_sources)

    def transform_source(self, array: Any, name: str) -> Any:
        raise NotImplementedError

    def transform(self, data: tuple, epoch: int, count: int) -> tuple:
        return tuple(
            self.transform_source(x, s) if s in self.which_sources else x
            for s, x in zip(self.sources, data, strict=True)
        )


class Mapping(_Elementwise):
    """Apply a function to each item (a tuple ordered as ``sources``).

    Args:
        data_stream: the child stream.
        mapping: ``f(data_tuple) -> tuple``. With ``add_sources`` the result
            holds only the new sources, appended after the old ones.
        add_sources: names of the sources ``mapping`` adds.

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
        mapping: Callable[[tuple], Sequence],
        add_sources: Sequence[str] | None = None,
    ) -> None:
        super().__init__(data_stream)
        self.mapping = mapping
        self.add_sources = tuple(add_sources) if add_sources else None
        if self.add_sources:
            self.sources = self.sources + self.add_sources

    def transform(self, data: tuple, epoch: int, count: int) -> tuple:
        out = tuple(self.mapping(data))
        expected = len(self.add_sources) if self.add_sources else len(self.sources)
        if len(out) != expected:
            raise DataShapeError(
                f"Mapping: {self.mapping!r} returned {len(out)} values, expected {expected} "
                f"(for sources {self.add_sources or self.sources})"
            )
        return data + out if self.add_sources else out


class SortMapping:
    """A mapping for :class:`Mapping` that sorts the examples of a batch by ``key``.

    Args:
        key: ``f(example_tuple) -> sortable``, e.g. ``lambda ex: len(ex[0])``.
        reverse: sort in decreasing order.

    >>> import numpy as np
    >>> SortMapping(lambda ex: ex[0])((np.array([3, 1, 2]),))
    (array([1, 2, 3]),)
    """

    def __init__(self, key: Callable[[tuple], Any], reverse: bool = False) -> None:
        self.key = key
        self.reverse = reverse

    def __call__(self, batch: tuple) -> tuple:
        examples = sorted(zip(*batch, strict=True), key=self.key, reverse=self.reverse)
        return tuple(stack_examples(list(col)) for col in zip(*examples, strict=True))


class Flatten(_Sourcewise):
    """Flatten each example of some sources to one axis (batches become 2-D)."""

    def __init__(
        self, data_stream: AbstractDataStream, which_sources: Sequence[str] | None = None
    ) -> None:
        super().__init__(data_stream, which_sources)

    def transform_source(self, array: Any, name: str) -> Any:
        a = np.asarray(array)
        return a.reshape(-1) if self.produces_examples else a.reshape(len(a), -1)


class ScaleAndShift(_Sourcewise):
    """``x * scale + shift`` on some sources; floats keep their dtype, ints become float32."""

    def __init__(
        self,
        data_stream: AbstractDataStream,
        scale: float,
        shift: float,
        which_sources: Sequence[str] | None = None,
    ) -> None:
        super().__init__(data_stream, which_sources)
        self.scale, self.shift = scale, shift

    def transform_source(self, array: Any, name: str) -> Any:
        a = np.asarray(array)
        dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.dtype(np.float32)
        return (a * self.scale + self.shift).astype(dtype, copy=False)


class Cast(_Sourcewise):
    """Cast some sources to ``dtype``."""

    def __init__(
        self,
        data_stream: AbstractDataStream,
        dtype: Any,
        which_sources: Sequence[str] | None = None,
    ) -> None:
        super().__init__(data_stream, which_sources)
        self.dtype = np.dtype(dtype)

    def transform_source(self, array: Any, name: str) -> Any:
        return np.asarray(array).astype(self.dtype, copy=False)


class Rename(_Elementwise):
    """Rename sources: ``Rename(stream, {"features": "x"})``."""

    def __init__(self, data_stream: AbstractDataStream, names: MappingABC[str, str]) -> None:
        super().__init__(data_stream)
        check_sources(names, self.sources, "Rename")
        self.sources = tuple(names.get(s, s) for s in self.sources)
        if len(set(self.sources)) != len(self.sources):
            raise SourceError(f"Rename: renaming gives duplicate sources {self.sources}")
        if self.axis_labels:
            self.axis_labels = {names.get(k, k): v for k, v in self.axis_labels.items()}

    def transform(self, data: tuple, epoch: int, count: int) -> tuple:
        return data


class FilterSources(_Elementwise):
    """Keep only some sources, in the given order."""

    def __init__(self, data_stream: AbstractDataStream, sources: Sequence[str]) -> None:
        super().__init__(data_stream)
        self._index = [
            data_stream.sources.index(s)
            for s in check_sources(sources, data_stream.sources, "FilterSources")
        ]
        self.sources = tuple(sources)

    def transform(self, data: tuple, epoch: int, count: int) -> tuple:
        return tuple(data[i] for i in self._index)


class TimeMajor(_Sourcewise):
    """Swap the batch and time axes: ``(batch, time, ...)`` → ``(time, batch, ...)``.

    Recurrent bricks scan over time-major sequences with ``(time, batch)``
    masks. By default every source of two or more axes is transposed.
    """

    def __init__(
        self, data_stream: AbstractDataStream, which_sources: Sequence[str] | None = None
    ) -> None:
        super().__init__(data_stream, which_sources)
        if self.produces_examples:
            raise SchemeError("TimeMajor: expected a stream of batches, found one of examples")

    def transform_source(self, array: Any, name: str) -> Any:
        a = np.asarray(array)
        return np.ascontiguousarray(np.swapaxes(a, 0, 1)) if a.ndim >= 2 else a


class Padding(_Elementwise):
    """Pad variable-length sequences of a batch and add ``<source>_mask`` sources.

    Each listed source (default: all) becomes a ``(batch, max_len, ...)``
    array padded with zeros, followed by a ``(batch, max_len)`` mask that is
    1 where data is. Use :class:`TimeMajor` afterwards for recurrent models.

    >>> import numpy as np
    >>> from bricks.data import DataStream, IterableDataset, Batch, ConstantScheme
    >>> s = Batch(DataStream(IterableDataset({"w": [[1, 2, 3], [4]]})), ConstantScheme(2))
    >>> w, mask = next(Padding(s).get_epoch_iterator())
    >>> w.tolist(), mask.tolist()
    ([[1, 2, 3], [4, 0, 0]], [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    """

    def __init__(
        self,
        data_stream: AbstractDataStream,
        mask_sources: Sequence[str] | None = None,
        mask_dtype: Any = "float32",
    ) -> None:
        super().__init__(data_stream)
        if data_stream.produces_examples:
            raise SchemeError(
                "Padding: expected a stream of batches, found one of examples; "
                "wrap it in Batch first"
            )
        self.mask_sources = self._which(mask_sources)
        self.mask_dtype = np.dtype(mask_dtype)
        sources = []
        for s in data_stream.sources:
            sources.append(s)
            if s in self.mask_sources:
                sources.append(s + "_mask")
        self.sources = tuple(sources)

    def transform(self, data: tuple, epoch: int, count: int) -> tuple:
        out = []
        for s, batch in zip(self.data_stream.sources, data, strict=True):
            if s not in self.mask_sources:
                out.append(batch)
                continue
            seqs = [np.asarray(x) for x in batch]
            if not seqs:
                raise DataShapeError(f"Padding: source {s!r} gave an empty batch")
            rest = seqs[0].shape[1:]
            for i, x in enumerate(seqs):
                if x.ndim == 0 or x.shape[1:] != rest:
                    raise DataShapeError(
                        f"Padding: source {s!r}, example {i} of the batch: expected shape "
                        f"(length, {', '.join(map(str, rest))}) like example 0, found {x.shape}"
                    )
            lengths = [len(x) for x in seqs]
            dtype = np.result_type(*seqs)
            padded = np.zeros((len(seqs), max(lengths), *rest), dtype=dtype)
            mask = np.zeros((len(seqs), max(lengths)), dtype=self.mask_dtype)
            for i, x in enumerate(seqs):
                padded[i, : len(x)] = x
                mask[i, : len(x)] = 1
            out.extend([padded, mask])
        return tuple(out)


def _rng(seed: int, epoch: int, count: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(epoch), int(count)])


class RandomFlip(_Sourcewise):
    """Flip each example along ``axis`` (of the example) with ``probability``.

    The draws of batch ``k`` of epoch ``e`` come from
    ``default_rng([seed, e, k])``: reproducible and resumable.

    Args:
        data_stream: stream of images, e.g. ``(batch, channel, height, width)``.
        which_sources: sources to flip (default ``("features",)``).
        axis: axis of one example to flip (``-1``: horizontal for CHW).
        probability: chance of flipping each example.
        seed: seed of the draws.
    """

    def __init__(
        self,
        data_stream: AbstractDataStream,
        which_sources: Sequence[str] = ("features",),
        axis: int = -1,
        probability: float = 0.5,
        seed: int = 1,
    ) -> None:
        super().__init__(data_stream, which_sources)
        self.axis, self.probability, self.seed = axis, probability, seed

    def transform(self, data: tuple, epoch: int, count: int) -> tuple:
        rng = _rng(self.seed, epoch, count)
        n = 1 if self.produces_examples else len(data[0])
        flips = rng.random(n) < self.probability
        out = []
        for s, x in zip(self.sources, data, strict=True):
            if s not in self.which_sources:
                out.append(x)
                continue
            x = np.array(x, copy=True)
            if self.produces_examples:
                out.append(np.flip(x, self.axis) if flips[0] else x)
                continue
            ax = self.axis if self.axis < 0 else self.axis + 1
            x[flips] = np.flip(x[flips], ax)
            out.append(x)
        return tuple(out)


class RandomCrop(_Sourcewise):
    """Crop a random ``window_shape`` window from the last axes of each example.

    Args:
        data_stream: stream of images ``(batch, channel, height, width)``.
        window_shape: ``(height, width)`` of the crops.
        which_sources: sources to crop (default ``("features",)``).
        padding: zeros added on each side of the last two axes first (CIFAR's 4).
        seed: seed of the draws (``default_rng([seed, epoch, count])``).
    """

    def __init__(
        self,
        data_stream: AbstractDataStream,
        window_shape: tuple[int, int],
        which_sources: Sequence[str] = ("features",),
        padding: int = 0,
        seed: int = 1,
    ) -> None:
        super().__init__(data_stream, which_sources)
        self.window_shape = tuple(int(w) for w in window_shape)
        self.padding, self.seed = int(padding), seed

    def _crop(self, x: np.ndarray, rng: np.random.Generator, name: str) -> np.ndarray:
        p = self.padding
        if p:
            x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(p, p), (p, p)])
        h, w = x.shape[-2:]
        wh, ww = self.window_shape
        if wh > h or ww > w:
            raise DataShapeError(
                f"RandomCrop: source {name!r} has images of {h}x{w} (after padding {p}), "
                f"smaller than the window {wh}x{ww}"
            )
        i = int(rng.integers(0, h - wh + 1))
        j = int(rng.integers(0, w - ww + 1))
        return x[..., i : i + wh, j : j + ww]

    def transform(self, data: tuple, epoch: int, count: int) -> tuple:
        rng = _rng(self.seed, epoch, count)
        out = []
        for s, x in zip(self.sources, data, strict=True):
            if s not in self.which_sources:
                out.append(x)
            elif self.produces_examples:
                out.append(self._crop(np.asarray(x), rng, s))
            else:
                out.append(np.stack([self._crop(np.asarray(e), rng, s) for e in x]))
        return tuple(out)


# --- filters, batches, merges -------------------------------------------------


class _FilterIter(_Iter):
    def __init__(self, t: Filter, epoch: int, state: Any) -> None:
        self.t, self.child = t, t._child(epoch, state)

    def __next__(self) -> tuple:
        while True:
            data = next(self.child)
            if self.t.predicate(data):
                return data

    def state(self) -> dict:
        return {"child": self.child.state()}

    def close(self) -> None:
        self.child.close()


class Filter(Transformer):
    """Keep only the items for which ``predicate(data_tuple)`` is true."""

    def __init__(self, data_stream: AbstractDataStream, predicate: Callable[[tuple], bool]) -> None:
        super().__init__(data_stream)
        self.predicate = predicate

    def _open(self, epoch: int, state: Any) -> _Iter:
        return _FilterIter(self, epoch, state)


class _BatchIter(_Iter):
    def __init__(self, t: Batch, epoch: int, state: Any) -> None:
        self.t = t
        self.child = t._child(epoch, state)
        self.count = int(_state_field(state, "count", 0, "Batch"))
        self.requests = itertools.islice(
            t.iteration_scheme.get_request_iterator(epoch), self.count, None
        )
        self.exhausted = False

    def __next__(self) -> tuple:
        if self.exhausted:
            raise StopIteration
        size = next(self.requests)
        examples = []
        for _ in range(size):
            try:
                examples.append(next(self.child))
            except StopIteration:
                self.exhausted = True
                break
        if not examples:
            raise StopIteration
        if len(examples) < size:
            if self.t.strictness == 1:
                raise StopIteration
            if self.t.strictness == 2:
                raise BatchStrictnessError(
                    f"Batch(strictness=2): the last batch of the epoch has {len(examples)} "
                    f"examples, expected {size}; use strictness=0 to keep it or 1 to drop it"
                )
        self.count += 1
        return tuple(
            stack_examples([e[i] for e in examples], s) for i, s in enumerate(self.t.sources)
        )

    def state(self) -> dict:
        return {"count": self.count, "child": self.child.state()}

    def close(self) -> None:
        self.child.close()


class Batch(Transformer):
    """Group examples into batches of the sizes an iteration scheme requests.

    Args:
        data_stream: a stream of examples.
        iteration_scheme: gives batch sizes, e.g. ``ConstantScheme(32)``.
        strictness: what to do with an incomplete last batch: 0 keep it,
            1 drop it, 2 raise :class:`~bricks.errors.BatchStrictnessError`.

    Same-shape examples are stacked; ragged ones give an object array (see
    :class:`Padding`).

    >>> import numpy as np
    >>> from bricks.data import DataStream, IndexableDataset, SequentialExampleScheme
    >>> s = DataStream(IndexableDataset({"x": np.arange(5)}),
    ...                iteration_scheme=SequentialExampleScheme(5))
    >>> [b[0].tolist() for b in Batch(s, ConstantScheme(2)).get_epoch_iterator()]
    [[0, 1], [2, 3], [4]]
    >>> [b[0].tolist() for b in Batch(s, ConstantScheme(2), strictness=1).get_epoch_iterator()]
    [[0, 1], [2, 3]]
    """

    def __init__(
        self,
        data_stream: AbstractDataStream,
        iteration_scheme: IterationScheme,
        strictness: int = 0,
    ) -> None:
        super().__init__(data_stream, produces_examples=False)
        if not data_stream.produces_examples:
            raise SchemeError(
                "Batch: expected a stream of examples, found one of batches "
                "(use Unpack first, or Cache to re-batch)"
            )
        if strictness not in (0, 1, 2):
            raise SchemeError(f"Batch: strictness must be 0, 1 or 2, found {strictness!r}")
        self.iteration_scheme = iteration_scheme
        self.strictness = strictness

    def _open(self, epoch: int, state: Any) -> _Iter:
        return _BatchIter(self, epoch, state)


class _MergeIter(_Iter):
    def __init__(self, t: Merge, epoch: int, state: Any) -> None:
        states = _state_field(state, "children", [None] * len(t.streams), "Merge")
        self.children = [s._open(epoch, st) for s, st in zip(t.streams, states, strict=True)]

    def __next__(self) -> tuple:
        parts = [next(c) for c in self.children]
        return tuple(itertools.chain.from_iterable(parts))

    def state(self) -> dict:
        return {"children": [c.state() for c in self.children]}

    def close(self) -> None:
        for c in self.children:
            c.close()


class Merge(AbstractDataStream):
    """Zip several streams into one; the epoch ends with the shortest.

    Args:
        data_streams: the streams, read in step.
        sources: names of all the sources, in order (default: the children's).
    """

    def __init__(
        self, data_streams: Sequence[AbstractDataStream], sources: Sequence[str] | None = None
    ) -> None:
        super().__init__()
        self.streams = list(data_streams)
        all_sources = tuple(itertools.chain.from_iterable(s.sources for s in self.streams))
        self.sources = tuple(sources) if sources is not None else all_sources
        if len(self.sources) != len(all_sources) or len(set(self.sources)) != len(self.sources):
            raise SourceError(
                f"Merge: expected {len(all_sources)} distinct source names for {all_sources}, "
                f"found {self.sources}"
            )
        kinds = {s.produces_examples for s in self.streams}
        if len(kinds) != 1:
            raise SchemeError("Merge: expected streams all of examples or all of batches")
        self.produces_examples = kinds.pop()

    def _open(self, epoch: int, state: Any) -> _Iter:
        return _MergeIter(self, epoch, state)


# --- buffering transformers ----------------------------------------------------


class _ExpandIter(_Iter):
    """Reads one child item at a time and expands it into a list of outputs."""

    def __init__(self, t: _Expanding, epoch: int, state: Any) -> None:
        self.t = t
        self.child = t._child(epoch, state)
        self.snap: Any = None
        self.buffer: list = []
        self.offset = 0
        skip = int(_state_field(state, "offset", 0, type(t).__name__))
        if skip:
            self._refill()
            self.offset = skip

    def _refill(self) -> None:
        self.snap = self.child.state()
        self.buffer = self.t.expand(next(self.child))
        self.offset = 0

    def __next__(self) -> tuple:
        while self.offset >= len(self.buffer):
            self._refill()
        out = self.buffer[self.offset]
        self.offset += 1
        return out

    def state(self) -> dict:
        if self.offset >= len(self.buffer):
            return {"offset": 0, "child": self.child.state()}
        return {"offset": self.offset, "child": self.snap}

    def close(self) -> None:
        self.child.close()


class _Expanding(Transformer):
    def expand(self, data: tuple) -> list[tuple]:
        raise NotImplementedError

    def _open(self, epoch: int, state: Any) -> _Iter:
        return _ExpandIter(self, epoch, state)


class Unpack(_Expanding):
    """Turn a stream of batches into a stream of their examples."""

    def __init__(self, data_stream: AbstractDataStream) -> None:
        super().__init__(data_stream, produces_examples=True)
        if data_stream.produces_examples:
            raise SchemeError("Unpack: expected a stream of batches, found one of examples")

    def expand(self, data: tuple) -> list[tuple]:
        return list(zip(*data, strict=True))


class Window(_Expanding):
    """Source and target windows slid over each sequence (for language models).

    From each sequence ``x`` of ``which_source`` it gives pairs
    ``(x[i : i + source_window], x[i + offset : i + offset + target_window])``
    for ``i = 0, step, 2 * step, ...`` while both fit, with ``step = 1`` when
    ``overlapping`` and ``source_window`` otherwise. An RNN language model
    uses ``source_window == target_window`` and ``offset=1``.

    >>> import numpy as np
    >>> from bricks.data import DataStream, IterableDataset
    >>> s = DataStream(IterableDataset({"text": [np.arange(7)]}))
    >>> [(a.tolist(), b.tolist()) for a, b in
    ...  Window(s, source_window=3, target_window=3, offset=1).get_epoch_iterator()]
    [([0, 1, 2], [1, 2, 3]), ([3, 4, 5], [4, 5, 6])]
    """

    def __init__(
        self,
        data_stream: AbstractDataStream,
        source_window: int,
        target_window: int,
        offset: int,
        overlapping: bool = False,
        which_source: str | None = None,
        target_source: str = "targets",
    ) -> None:
        super().__init__(data_stream, produces_examples=True)
        if not data_stream.produces_examples:
            raise SchemeError("Window: expected a stream of sequences (examples), found batches")
        self.which_source = which_source or data_stream.sources[0]
        check_sources([self.which_source], data_stream.sources, "Window")
        self._index = data_stream.sources.index(self.which_source)
        self.source_window, self.target_window = int(source_window), int(target_window)
        self.offset, self.overlapping = int(offset), overlapping
        self.sources = (self.which_source, target_source)

    def expand(self, data: tuple) -> list[tuple]:
        x = np.asarray(data[self._index])
        step = 1 if self.overlapping else self.source_window
        end = max(self.source_window, self.offset + self.target_window)
        return [
            (
                x[i : i + self.source_window],
                x[i + self.offset : i + self.offset + self.target_window],
            )
            for i in range(0, len(x) - end + 1, step)
        ]


class NGrams(Window):
    """``(n previous tokens, next token)`` pairs for n-gram language models.

    >>> import numpy as np
    >>> from bricks.data import DataStream, IterableDataset
    >>> s = DataStream(IterableDataset({"text": [np.array([5, 6, 7, 8])]}))
    >>> [(a.tolist(), int(b)) for a, b in NGrams(s, 2).get_epoch_iterator()]
    [([5, 6], 7), ([6, 7], 8)]
    """

    def __init__(
        self,
        data_stream: AbstractDataStream,
        ngram_order: int,
        which_source: str | None = None,
        target_source: str = "targets",
    ) -> None:
        super().__init__(
            data_stream, ngram_order, 1, ngram_order, True, which_source, target_source
        )

    def expand(self, data: tuple) -> list[tuple]:
        return [(a, b[0]) for a, b in super().expand(data)]


class _CacheIter(_Iter):
    def __init__(self, t: Cache, epoch: int, state: Any) -> None:
        self.t = t
        self.child = t._child(epoch, state)
        self.count = int(_state_field(state, "count", 0, "Cache"))
        self.requests = itertools.islice(
            t.iteration_scheme.get_request_iterator(epoch), self.count, None
        )
        self.cache: list[list] = [[] for _ in t.sources]
        self.batches: deque = deque()  # (child state before the batch, batch length)
        self.offset = 0  # examples of batches[0] already given
        self.exhausted = False
        for _ in range(int(_state_field(state, "batches", 0, "Cache"))):
            self._fill()
        drop = int(_state_field(state, "offset", 0, "Cache"))
        self.cache = [c[drop:] for c in self.cache]
        self.offset = drop

    def _fill(self) -> None:
        snap = self.child.state()
        try:
            data = next(self.child)
        except StopIteration:
            self.exhausted = True
            return
        self.batches.append((snap, len(data[0])))
        for c, d in zip(self.cache, data, strict=True):
            c.extend(list(d))

    def __next__(self) -> tuple:
        request = next(self.requests)
        if request > len(self.cache[0]) and not self.exhausted:
            self._fill()
        if not self.cache[0]:
            raise StopIteration
        out = tuple(
            stack_examples(c[:request], s) for c, s in zip(self.cache, self.t.sources, strict=True)
        )
        self.cache = [c[request:] for c in self.cache]
        self.offset += min(request, len(out[0]))
        while self.batches and self.offset >= self.batches[0][1]:
            self.offset -= self.batches.popleft()[1]
        self.count += 1
        return out

    def state(self) -> dict:
        if not self.batches:
            return {"count": self.count, "batches": 0, "offset": 0, "child": self.child.state()}
        return {
            "count": self.count,
            "batches": len(self.batches),
            "offset": self.offset,
            "child": self.batches[0][0],
        }

    def close(self) -> None:
        self.child.close()


class Cache(Transformer):
    """Re-batch a stream of batches to the sizes a scheme requests (Fuel's ``Cache``).

    When a request asks for more examples than the cache holds, one batch of
    the child is appended to the cache; the request then takes what it can.

    >>> import numpy as np
    >>> from bricks.data import DataStream, IndexableDataset, SequentialScheme
    >>> s = DataStream(IndexableDataset({"x": np.arange(10)}),
    ...                iteration_scheme=SequentialScheme(10, 5))
    >>> [len(b[0]) for b in Cache(s, ConstantScheme(3)).get_epoch_iterator()]
    [3, 3, 3, 1]
    """

    def __init__(self, data_stream: AbstractDataStream, iteration_scheme: IterationScheme) -> None:
        super().__init__(data_stream, produces_examples=False)
        if data_stream.produces_examples:
            raise SchemeError("Cache: expected a stream of batches, found one of examples")
        self.iteration_scheme = iteration_scheme

    def _open(self, epoch: int, state: Any) -> _Iter:
        return _CacheIter(self, epoch, state)


def bucket_by_length(
    data_stream: AbstractDataStream,
    batch_size: int,
    key_source: str | None = None,
    sort_batches: int = 10,
    strictness: int = 0,
) -> AbstractDataStream:
    """Batches of sequences of similar length (less padding).

    Reads ``batch_size * sort_batches`` examples, sorts them by the length of
    ``key_source`` (``SortMapping``), and batches them again. Resumable like
    any composition.

    Args:
        data_stream: a stream of examples (e.g. sentences).
        batch_size: size of the output batches.
        key_source: the source whose length sorts (default: the first).
        sort_batches: how many batches are sorted together.
        strictness: as in :class:`Batch`.
    """
    key_source = key_source or data_stream.sources[0]
    k = data_stream.sources.index(
        check_sources([key_source], data_stream.sources, "bucket_by_length")[0]
    )
    large = Batch(data_stream, ConstantScheme(batch_size * sort_batches))
    ordered = Mapping(large, SortMapping(lambda ex: len(ex[k])))
    return Batch(Unpack(ordered), ConstantScheme(batch_size), strictness=strictness)
