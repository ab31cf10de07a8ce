"""DataStream: a dataset read by the requests of an iteration scheme (the leaf of
every pipeline), and its epoch iterator.

An in-memory dataset with a plain batch scheme is read with one fancy index per
source a batch, or per chunk of batches when the main loop hints one
(:meth:`EpochIterator.read_ahead`).
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from bricks.errors import IterationStateError, SchemeError, SourceError

from ._datasets import Dataset
from ._schemes import BatchScheme, IterationScheme, ShuffledScheme
from ._streams import AbstractDataStream, _Iter, _state_field, request_iterator

__all__ = ["DataStream"]

# schemes whose requests are slices of ``_order(epoch)`` (sorted with ``sorted_indices``)
_PLAIN_BATCHES = (BatchScheme.get_request_iterator, ShuffledScheme.get_request_iterator)


def _index_batches(scheme: Any, epoch: int, dataset: Any) -> tuple[Iterator, Any] | None:
    """The batches of a plain batch scheme as int64 index arrays (no ``tolist``) and the
    dataset's reader of them, or ``None`` where the requests must come as the scheme
    gives them. The batches and their order are those of the scheme's requests."""
    plain = type(scheme).get_request_iterator in _PLAIN_BATCHES
    reader = getattr(dataset, "batch_reader", None)
    if not plain or reader is None:
        return None
    order = np.asarray(scheme._order(epoch), dtype=np.int64)
    take = reader(order)
    if take is None:
        return None
    size = scheme.batch_size
    batches: Iterator = (order[i : i + size] for i in range(0, len(order), size))
    if getattr(scheme, "sorted_indices", False):
        batches = (np.sort(b) for b in batches)
    return batches, take


class _LeafIter(_Iter):
    def __init__(self, stream: DataStream, epoch: int, state: Any) -> None:
        self.stream = stream
        self._take: Any = None
        self._ahead: collections.deque = collections.deque()  # batches read, not served
        self._ahead_count = 1
        self.start = int(_state_field(state, "position", 0, "DataStream"))
        self.position = self.start
        ds = stream.dataset
        self.handle = stream._open_dataset(epoch)
        self._closed = False
        scheme = stream.iteration_scheme
        if scheme is None:
            self.requests: Iterator = itertools.repeat(None)
            for _ in range(self.start):  # iterables can only skip by reading
                try:
                    ds.get_data(self.handle, None)
                except StopIteration:
                    break
        else:
            requests = request_iterator(scheme, epoch)
            if stream._data_driven:  # skip by reading: the dataset's state moves with it
                for request in itertools.islice(requests, self.start):
                    try:
                        ds.get_data(self.handle, request)
                    except StopIteration:
                        break
                self.requests = requests
            else:
                self.requests = itertools.islice(requests, self.start, None)
                batches = _index_batches(scheme, epoch, ds)
                if batches is not None:  # in-memory arrays: one fancy index per source
                    self.requests = itertools.islice(batches[0], self.start, None)
                    self._take = batches[1]

    def next_request(self) -> Any:
        return next(self.requests)

    def read(self, request: Any) -> tuple:
        if self._take is not None:
            data = self._take(request)
        else:
            data = self.stream.dataset.get_data(self.handle, request)
        index = self.stream._source_index
        return data if index is None else tuple(data[i] for i in index)

    def read_ahead(self, count: int) -> None:
        self._ahead_count = count

    def _fill(self) -> None:
        """Read up to ``_ahead_count`` batches of one size with one index per source."""
        requests = []
        for request in self.requests:
            if requests and len(request) != len(requests[0]):  # a short last batch
                self.requests = itertools.chain([request], self.requests)
                break
            requests.append(request)
            if len(requests) == self._ahead_count:
                break
        if len(requests) == 1:
            self._ahead.append(self.read(requests[0]))
        elif requests:
            data = self._take.chunk(np.concatenate(requests), len(requests))
            index = self.stream._source_index
            if index is not None:
                data = tuple(data[i] for i in index)
            self._ahead.extend(zip(*data, strict=True))

    def __next__(self) -> tuple:
        if not self._ahead and self._ahead_count > 1 and hasattr(self._take, "chunk"):
            self._fill()
        if self._ahead:
            data = self._ahead.popleft()
            self.position += 1
            return data
        request = next(self.requests)
        try:
            data = self.read(request)
        except StopIteration:
            self.requests = iter(())
            raise
        self.position += 1
        return data

    def state(self) -> dict:
        return {"position": self.position}

    def close(self) -> None:
        self._ahead.clear()
        if not self._closed:
            self._closed = True
            if not self.stream._data_driven:
                self.stream.dataset.close(self.handle)


class DataStream(AbstractDataStream):
    """A stream reading a dataset by the requests of an iteration scheme.

    Args:
        dataset: the dataset to read.
        iteration_scheme: the requests of each epoch; ``None`` for an
            ``IterableDataset`` (one example at a time, in order).
        axis_labels: ``{source: (label, ...)}`` (default: the dataset's). A
            stream of examples drops the ``'batch'`` label, as Fuel did.

    A dataset that overrides ``next_epoch`` (data-driven epochs: one file
    per epoch, ...) keeps one state across epochs: epoch ``e`` is reached
    by ``e`` calls of ``next_epoch`` after ``open``, and a resumed epoch
    skips its first requests by reading them.

    >>> import numpy as np
    >>> from bricks.data import IndexableDataset, SequentialScheme
    >>> stream = DataStream(IndexableDataset({"x": np.arange(5)}),
    ...                     iteration_scheme=SequentialScheme(5, 2))
    >>> [x.tolist() for (x,) in stream.get_epoch_iterator()]
    [[0, 1], [2, 3], [4]]
    """

    def __init__(
        self,
        dataset: Dataset,
        iteration_scheme: IterationScheme | None = None,
        axis_labels: Mapping[str, Sequence[str] | None] | None = None,
    ) -> None:
        if axis_labels is None and getattr(dataset, "axis_labels", None):
            axis_labels = dict(dataset.axis_labels)
        super().__init__(iteration_scheme=iteration_scheme, axis_labels=axis_labels)
        self.dataset = dataset
        reads_by_request = getattr(dataset, "_reads_by_request", False)
        if iteration_scheme is None and reads_by_request:
            raise SchemeError(
                f"DataStream: {type(dataset).__name__} is read by request; give an "
                "iteration_scheme, e.g. SequentialScheme(dataset.num_examples, batch_size)"
            )
        if iteration_scheme is None:
            self.produces_examples = True
        self._sources = tuple(dataset.sources)
        self._source_index: list[int] | None = None
        if self.produces_examples and self.axis_labels:
            self.axis_labels = {
                k: (None if v is None else tuple(x for x in v if x != "batch"))
                for k, v in self.axis_labels.items()
            }
        self._data_driven = type(dataset).next_epoch is not Dataset.next_epoch
        self._dd_state: Any = None
        self._dd_epoch: int | None = None

    @property
    def sources(self) -> tuple[str, ...]:  # type: ignore[override]
        return self._sources

    @sources.setter
    def sources(self, value: Sequence[str]) -> None:
        """Select some of the dataset's sources, or rename all of them, position by position."""
        value = (value,) if isinstance(value, str) else tuple(value)
        given = tuple(self.dataset.sources)
        if all(v in given for v in value):
            self._source_index = [given.index(v) for v in value]
        elif len(value) == len(given):
            self._source_index = None
        else:
            raise SourceError(
                f"DataStream.sources: expected names among the dataset's sources {given} "
                f"(to select) or {len(given)} new names (to rename), found {value}"
            )
        if value != given and self._source_index == list(range(len(given))):
            self._source_index = None
        self._sources = value

    @classmethod
    def default_stream(cls, dataset: Dataset, **kwargs: Any) -> AbstractDataStream:
        """``DataStream(dataset, **kwargs)`` wrapped in the dataset's ``default_transformers``.

        For :class:`~bricks.data.MNIST` that scales the uint8 pixels to
        float32 in [0, 1], as Fuel's ``DataStream.default_stream`` did.
        """
        stream = cls(dataset, **kwargs)
        apply = getattr(dataset, "apply_default_transformers", None)
        return apply(stream) if apply is not None else stream

    def _open_dataset(self, epoch: int) -> Any:
        ds = self.dataset
        if not self._data_driven:
            return ds.open()
        if self._dd_epoch is None or epoch < self._dd_epoch:
            if self._dd_epoch is not None:
                ds.close(self._dd_state)
            self._dd_state, self._dd_epoch = ds.open(), 0
        while self._dd_epoch < epoch:
            self._dd_state = ds.next_epoch(self._dd_state)
            self._dd_epoch += 1
        if self._dd_epoch > epoch:  # pragma: no cover - guarded above
            raise IterationStateError("DataStream: cannot go back in a data-driven dataset")
        self._dd_epoch = epoch  # the next epoch iterator asks for epoch + 1
        return self._dd_state

    def _open(self, epoch: int, state: Any) -> _LeafIter:
        return _LeafIter(self, epoch, state)

    def get_data(self, request: Any = None) -> tuple:
        """Read ``request`` from the dataset (Fuel's ``DataStream.get_data``)."""
        if self._latest is not None and not self._latest._done and request is None:
            return next(self._latest)
        state = self.__dict__.get("_live_state")
        if state is None:
            state = self._live_state = self.dataset.open()
        return self.dataset.get_data(state, request)

    def close(self) -> None:
        super().close()
        state = self.__dict__.pop("_live_state", None)
        if state is not None:
            self.dataset.close(state)
        if self._data_driven and self._dd_epoch is not None:
            self.dataset.close(self._dd_state)
            self._dd_state, self._dd_epoch = None, None

    def reset(self) -> None:
        super().reset()
        if self._data_driven and self._dd_epoch is not None:
            self.dataset.close(self._dd_state)
            self._dd_state, self._dd_epoch = None, None

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_dd_state"], state["_dd_epoch"] = None, None
        return state
