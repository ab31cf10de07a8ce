"""Transformers that filter, batch, unbatch, re-batch, window and merge streams.

See :mod:`bricks.data._transformers` for the state contract of each family.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bricks.errors import BatchStrictnessError, RequestError, SchemeError, SourceError

from ._prefetch import Prefetch
from ._schemes import BatchScheme, IterationScheme
from ._streams import AbstractDataStream, _Iter, _state_field, request_iterator, stack_examples
from ._transformers import Transformer

__all__ = [
    "Batch",
    "Cache",
    "Filter",
    "Merge",
    "MultiProcessing",
    "Unpack",
]


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
            request_iterator(t.iteration_scheme, epoch), self.count, None
        )
        self.exhausted = False

    def __next__(self) -> tuple:
        if self.exhausted:
            raise StopIteration
        size = next(self.requests)
        if not isinstance(size, (int, np.integer)):
            raise RequestError(
                f"Batch: expected batch sizes (int) from {self.t.iteration_scheme!r}, found "
                f"{size!r:.80}"
            )
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
    >>> from bricks.data import (ConstantScheme, DataStream, IndexableDataset,
    ...                          SequentialExampleScheme)
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
        if not data_stream.produces_examples:
            raise SchemeError(
                "Batch: expected a stream of examples, found one of batches "
                "(use Unpack first, or Cache to re-batch)"
            )
        _check_batch_size_scheme(iteration_scheme, "Batch")
        if strictness not in (0, 1, 2):
            raise SchemeError(f"Batch: strictness must be 0, 1 or 2, found {strictness!r}")
        labels = data_stream.axis_labels
        if labels:
            labels = {k: (None if v is None else ("batch", *v)) for k, v in labels.items()}
        super().__init__(data_stream, axis_labels=labels, iteration_scheme=iteration_scheme)
        self.strictness = strictness

    def get_data(self, request: Any = None) -> tuple:
        raise RequestError(
            f"Batch.get_data: batches are drawn by its scheme {self.iteration_scheme!r}; read "
            f"them with get_epoch_iterator() (found request {request!r:.80})"
        )

    def _open(self, epoch: int, state: Any) -> _Iter:
        return _BatchIter(self, epoch, state)


class _MergeIter(_Iter):
    def __init__(self, t: Merge, epoch: int, state: Any) -> None:
        states = _state_field(state, "children", [None] * len(t.data_streams), "Merge")
        self.children = [
            s._open(epoch, st) for s, st in zip(t.data_streams, states, strict=True)
        ]

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
        self.data_streams = list(data_streams)
        all_sources = tuple(itertools.chain.from_iterable(s.sources for s in self.data_streams))
        if isinstance(sources, str):
            sources = (sources,)
        self.sources = tuple(sources) if sources is not None else all_sources
        if len(self.sources) != len(all_sources) or len(set(self.sources)) != len(self.sources):
            raise SourceError(
                f"Merge: expected {len(all_sources)} distinct source names for {all_sources}, "
                f"found {self.sources}"
            )
        kinds = {s.produces_examples for s in self.data_streams}
        if len(kinds) != 1:
            raise SchemeError(
                "Merge: expected streams all of examples or all of batches, found "
                + ", ".join(
                    f"{type(s).__name__}({'examples' if s.produces_examples else 'batches'})"
                    for s in self.data_streams
                )
            )
        self.produces_examples = kinds.pop()
        labels: dict = {}
        for stream in self.data_streams:
            for old in stream.sources:
                if stream.axis_labels and old in stream.axis_labels:
                    labels[self.sources[len(labels)]] = stream.axis_labels[old]
                else:
                    labels[self.sources[len(labels)]] = None
        self.axis_labels = labels if any(v is not None for v in labels.values()) else None

    @property
    def streams(self) -> list[AbstractDataStream]:
        """The merged streams (also ``data_streams``, Fuel's name)."""
        return self.data_streams

    def close(self) -> None:
        super().close()
        for s in self.data_streams:
            s.close()

    def reset(self) -> None:
        super().reset()
        for s in self.data_streams:
            s.reset()

    def next_epoch(self) -> None:
        super().next_epoch()
        for s in self.data_streams:
            s.next_epoch()

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
        if data_stream.produces_examples:
            raise SchemeError("Unpack: expected a stream of batches, found one of examples")
        labels = data_stream.axis_labels
        if labels:
            labels = {
                k: (None if v is None else tuple(v[1:]) if v[:1] == ("batch",) else tuple(v))
                for k, v in labels.items()
            }
        super().__init__(data_stream, produces_examples=True, axis_labels=labels)

    def expand(self, data: tuple) -> list[tuple]:
        return list(zip(*data, strict=True))


class _CacheIter(_Iter):
    def __init__(self, t: Cache, epoch: int, state: Any) -> None:
        self.t = t
        self.child = t._child(epoch, state)
        t._live_cache = self
        self.count = int(_state_field(state, "count", 0, "Cache"))
        self.requests = itertools.islice(
            request_iterator(t.iteration_scheme, epoch), self.count, None
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
    >>> from bricks.data import ConstantScheme, DataStream, IndexableDataset, SequentialScheme
    >>> s = DataStream(IndexableDataset({"x": np.arange(10)}),
    ...                iteration_scheme=SequentialScheme(10, 5))
    >>> [len(b[0]) for b in Cache(s, ConstantScheme(3)).get_epoch_iterator()]
    [3, 3, 3, 1]
    """

    def __init__(self, data_stream: AbstractDataStream, iteration_scheme: IterationScheme) -> None:
        if data_stream.produces_examples:
            raise SchemeError("Cache: expected a stream of batches, found one of examples")
        _check_batch_size_scheme(iteration_scheme, "Cache")
        super().__init__(data_stream, iteration_scheme=iteration_scheme)

    @property
    def cache(self) -> list[list]:
        """What the live epoch iterator holds, a list of examples per source (Fuel's name)."""
        live = self.__dict__.get("_live_cache")
        return live.cache if live is not None else [[] for _ in self.sources]

    def get_data(self, request: Any = None) -> tuple:
        raise RequestError(
            f"Cache.get_data: batches are drawn by its scheme {self.iteration_scheme!r}; read "
            f"them with get_epoch_iterator() (found request {request!r:.80})"
        )

    def _open(self, epoch: int, state: Any) -> _Iter:
        return _CacheIter(self, epoch, state)


def _check_batch_size_scheme(scheme: Any, where: str) -> None:
    if not isinstance(scheme, IterationScheme) or scheme.requests_examples or isinstance(
        scheme, BatchScheme
    ):
        raise SchemeError(
            f"{where}: expected a scheme of batch sizes (a BatchSizeScheme such as "
            f"ConstantScheme(32)), found {scheme!r}"
        )


class MultiProcessing(Prefetch):
    """Fuel's ``MultiProcessing``: read a stream ahead in the background, in order.

    Fuel forked a process; this reads ahead in one background thread (which
    takes any stream, lambdas included). For worker processes use
    :class:`~bricks.data.Prefetch` with ``processes=True``.

    Args:
        data_stream: the stream to read ahead.
        max_store: how many items may wait in the queue.
    """

    def __init__(self, data_stream: AbstractDataStream, max_store: int = 100) -> None:
        super().__init__(data_stream, workers=1, processes=False, buffer_size=max_store)

    def get_data(self, request: Any = None) -> tuple:
        return AbstractDataStream.get_data(self, request)
