"""Data streams, epoch iterators and the iteration-state contract.

A stream turns a dataset and an iteration scheme into epochs of data;
transformers (``bricks.data._transformers``) wrap streams. Every epoch
iterator is independent: two loops (training and monitoring) may read the
same stream at once.

The state contract
------------------
``stream.get_state()`` returns a small JSON-serializable dict meaning
*where the next epoch iterator begins*:

* while an epoch iterator of the stream is live, it is that iterator's
  position — the batch after the last one it gave;
* once that iterator is exhausted, it is the start of the following epoch;
* ``stream.set_state(state)`` (in this or a new process, on a stream built
  the same way) makes the next ``get_epoch_iterator()`` continue exactly
  there, and later ``get_epoch_iterator()`` calls continue with the
  following epochs as an uninterrupted run would. Every example is seen
  exactly once per epoch.

The state is ``{"version": 1, "epoch": e, "iterator": s}`` where ``s`` is the
nested position of each layer (``None`` at the start of an epoch): counts
of requests served, the state of a child, the replay point of a buffer.
Randomness is derived from ``(seed, epoch, count)``, so no RNG internals are
saved. Epoch iterators have the same ``get_state()``/``set_state()``.

>>> import numpy as np, json
>>> from bricks.data import DataStream, IndexableDataset, ShuffledScheme
>>> stream = DataStream(IndexableDataset({"x": np.arange(10)}),
...                     iteration_scheme=ShuffledScheme(10, 4, seed=3))
>>> it = stream.get_epoch_iterator()
>>> first = next(it)
>>> saved = json.dumps(stream.get_state())
>>> rest = [b[0].tolist() for b in it]
>>> stream2 = DataStream(IndexableDataset({"x": np.arange(10)}),
...                      iteration_scheme=ShuffledScheme(10, 4, seed=3))
>>> stream2.set_state(json.loads(saved))
>>> [b[0].tolist() for b in stream2.get_epoch_iterator()] == rest
True
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from bricks.errors import IterationStateError, SchemeError

from ._datasets import Dataset
from ._schemes import IterationScheme

__all__ = ["AbstractDataStream", "DataStream", "EpochIterator"]

STATE_VERSION = 1


class _Iter:
    """Inner iterator protocol: ``__next__`` gives a tuple, ``state()`` a JSON value."""

    def __iter__(self) -> _Iter:
        return self

    def __next__(self) -> tuple:
        raise NotImplementedError

    def state(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (files, workers); called when the epoch ends or is dropped."""


class EpochIterator:
    """One epoch of a stream: an iterator of tuples (or dicts) of numpy arrays.

    Attributes:
        epoch: the epoch number (0 for the first).
    """

    def __init__(self, stream: AbstractDataStream, epoch: int, inner: _Iter, as_dict: bool) -> None:
        self.stream = stream
        self.epoch = epoch
        self._inner = inner
        self._as_dict = as_dict
        self._done = False

    def __iter__(self) -> EpochIterator:
        return self

    def __next__(self) -> tuple | dict:
        if self._done:
            raise StopIteration
        try:
            data = next(self._inner)
        except StopIteration:
            self._done = True
            self._inner.close()
            raise
        except BaseException:
            self._inner.close()
            raise
        if self._as_dict:
            return dict(zip(self.stream.sources, data, strict=True))
        return data

    def get_state(self) -> dict:
        """Where the next batch (or, once exhausted, the next epoch) begins."""
        if self._done:
            return {"version": STATE_VERSION, "epoch": self.epoch + 1, "iterator": None}
        return {"version": STATE_VERSION, "epoch": self.epoch, "iterator": self._inner.state()}

    def set_state(self, state: dict) -> None:
        """Jump to ``state`` (from ``get_state()`` of an iterator of the same stream)."""
        epoch, inner = _parse_state(state, self.stream)
        self._inner.close()
        self.epoch = epoch
        self._inner = self.stream._open(epoch, inner)
        self._done = False

    def close(self) -> None:
        """Stop early and release files and workers."""
        self._inner.close()

    def __del__(self) -> None:
        try:
            self._inner.close()
        except Exception:  # interpreter shutdown
            pass


def _parse_state(state: Any, stream: AbstractDataStream) -> tuple[int, Any]:
    if (
        not isinstance(state, dict)
        or state.get("version") != STATE_VERSION
        or not isinstance(state.get("epoch"), int)
        or "iterator" not in state
    ):
        raise IterationStateError(
            f"{type(stream).__name__}.set_state: expected a dict "
            f"{{'version': {STATE_VERSION}, 'epoch': int, 'iterator': ...}} from get_state(), "
            f"found {state!r:.200}"
        )
    return state["epoch"], state["iterator"]


class AbstractDataStream:
    """Base class of streams (``DataStream`` and every transformer).

    Attributes:
        sources: names of the arrays in each tuple the stream gives.
        produces_examples: ``True`` for one example per item, ``False`` for batches.
        axis_labels: ``{source: (label, ...)}`` or ``None``.
    """

    sources: tuple[str, ...] = ()
    produces_examples: bool = False
    axis_labels: dict[str, tuple[str, ...]] | None = None

    def __init__(self) -> None:
        self._next_epoch = 0
        self._resume: Any = None
        self._latest: EpochIterator | None = None

    # -- to implement ---------------------------------------------------------
    def _open(self, epoch: int, state: Any) -> _Iter:
        """Return an inner iterator of ``epoch`` positioned at ``state`` (``None``: the start)."""
        raise NotImplementedError

    # -- public ----------------------------------------------------------------
    def get_epoch_iterator(self, as_dict: bool = False) -> EpochIterator:
        """Start the next epoch (or continue the one ``set_state`` points into).

        Args:
            as_dict: give ``{source: array}`` dicts instead of tuples.
        """
        if self._resume is not None:
            epoch, inner_state = self._resume
            self._resume = None
        else:
            epoch, inner_state = self._next_epoch, None
        it = EpochIterator(self, epoch, self._open(epoch, inner_state), as_dict)
        self._latest = it
        self._next_epoch = epoch + 1
        return it

    def iterate_epochs(self, as_dict: bool = False) -> Iterator[EpochIterator]:
        """Yield epoch iterators forever."""
        while True:
            yield self.get_epoch_iterator(as_dict=as_dict)

    def get_state(self) -> dict:
        """Where the next epoch iterator begins (see the module docstring)."""
        if self._resume is not None:
            epoch, inner = self._resume
            return {"version": STATE_VERSION, "epoch": epoch, "iterator": inner}
        if self._latest is not None:
            return self._latest.get_state()
        return {"version": STATE_VERSION, "epoch": self._next_epoch, "iterator": None}

    def set_state(self, state: dict) -> None:
        """Make the next ``get_epoch_iterator()`` continue from ``state``."""
        epoch, inner = _parse_state(state, self)
        self._resume = (epoch, inner)
        self._latest = None
        self._next_epoch = epoch

    def reset(self) -> None:
        """Forget all positions: the next epoch iterator is epoch 0 again."""
        self.set_state({"version": STATE_VERSION, "epoch": 0, "iterator": None})


def _state_field(state: Any, key: str, default: Any, where: str) -> Any:
    if state is None:
        return default
    if not isinstance(state, dict) or key not in state:
        raise IterationStateError(
            f"{where}: state {state!r:.200} lacks {key!r}; was it saved from a stream "
            "built the same way?"
        )
    return state[key]


class _LeafIter(_Iter):
    def __init__(self, stream: DataStream, epoch: int, state: Any) -> None:
        self.stream = stream
        self.start = int(_state_field(state, "position", 0, "DataStream"))
        self.position = self.start
        ds = stream.dataset
        self.handle = ds.open()
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
            self.requests = itertools.islice(scheme.get_request_iterator(epoch), self.start, None)

    def next_request(self) -> Any:
        return next(self.requests)

    def read(self, request: Any) -> tuple:
        return self.stream.dataset.get_data(self.handle, request)

    def __next__(self) -> tuple:
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
        if not self._closed:
            self._closed = True
            self.stream.dataset.close(self.handle)


class DataStream(AbstractDataStream):
    """A stream reading a dataset by the requests of an iteration scheme.

    Args:
        dataset: the dataset to read.
        iteration_scheme: the requests of each epoch; ``None`` for an
            ``IterableDataset`` (one example at a time, in order).

    >>> import numpy as np
    >>> from bricks.data import IndexableDataset, SequentialScheme
    >>> stream = DataStream(IndexableDataset({"x": np.arange(5)}),
    ...                     iteration_scheme=SequentialScheme(5, 2))
    >>> [x.tolist() for (x,) in stream.get_epoch_iterator()]
    [[0, 1], [2, 3], [4]]
    """

    def __init__(self, dataset: Dataset, iteration_scheme: IterationScheme | None = None) -> None:
        super().__init__()
        self.dataset = dataset
        self.iteration_scheme = iteration_scheme
        if iteration_scheme is None and dataset.num_examples is not None:
            raise SchemeError(
                f"DataStream: {type(dataset).__name__} is read by request; give an "
                "iteration_scheme, e.g. SequentialScheme(dataset.num_examples, batch_size)"
            )
        self.sources = tuple(dataset.sources)
        self.produces_examples = iteration_scheme is None or iteration_scheme.requests_examples
        labels = dataset.axis_labels
        self.axis_labels = (
            {k: v for k, v in labels.items() if k in self.sources} if labels else None
        )

    @classmethod
    def default_stream(cls, dataset: Dataset, **kwargs: Any) -> DataStream:
        """Fuel's name for ``DataStream(dataset, **kwargs)``."""
        return cls(dataset, **kwargs)

    def _open(self, epoch: int, state: Any) -> _LeafIter:
        return _LeafIter(self, epoch, state)


def stack_examples(examples: list, source: str = "?") -> np.ndarray:
    """Stack same-shape examples into one array; ragged ones into an object array."""
    arrays = [np.asarray(e) for e in examples]
    if all(a.shape == arrays[0].shape for a in arrays):
        return np.stack(arrays) if arrays else np.empty((0,))
    out = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        out[i] = a
    return out
