"""Data streams, epoch iterators and the iteration-state contract.

A stream turns a dataset and an iteration scheme into epochs of data
(``DataStream``, in ``bricks.data._datastream``); transformers
(``bricks.data._transformers``) wrap streams. Every epoch
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

import inspect
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from bricks.errors import IterationStateError, RequestError, SchemeError

__all__ = ["AbstractDataStream", "EpochIterator", "request_iterator"]


STATE_VERSION = 1


class _Iter:
    """Inner iterator protocol: ``__next__`` gives a tuple, ``state()`` a JSON value."""

    def __iter__(self) -> _Iter:
        return self

    def __next__(self) -> tuple:
        raise NotImplementedError

    def state(self) -> Any:
        raise NotImplementedError

    def read_ahead(self, count: int) -> None:
        """A hint: the next ``count`` batches are wanted together (see
        :meth:`EpochIterator.read_ahead`). Most iterators ignore it."""

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

    def read_ahead(self, count: int) -> None:
        """A hint that the next ``count`` batches will be taken together (the main
        loop's ``steps_per_call``). A stream of in-memory arrays then reads them with
        one fancy index per source into one buffer, whose consecutive batches the
        training step stacks without copying them; other streams ignore it. The
        batches, their order and :meth:`get_state` are the same either way."""
        self._inner.read_ahead(int(count))

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

    def __reduce__(self) -> tuple:
        # An epoch iterator pickles as its stream and position (never its files or workers).
        return (_restore_epoch_iterator, (self.stream, self.get_state(), self._as_dict))

    def __del__(self) -> None:
        try:
            self._inner.close()
        except Exception:  # interpreter shutdown
            pass


def _restore_epoch_iterator(
    stream: AbstractDataStream, state: dict, as_dict: bool
) -> EpochIterator:
    stream.set_state(state)
    return stream.get_epoch_iterator(as_dict=as_dict)


def request_iterator(scheme: Any, epoch: int) -> Iterator:
    """The requests of ``epoch`` from ``scheme``; a Fuel scheme whose
    ``get_request_iterator()`` takes no epoch is called without one."""
    fn = scheme.get_request_iterator
    try:
        takes_epoch = bool(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        takes_epoch = True
    return iter(fn(epoch) if takes_epoch else fn())


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

    Args:
        iteration_scheme: the requests of each epoch (``None``: the stream
            reads in order, or its child decides).
        axis_labels: ``{source: (label, ...)}``.

    Attributes:
        sources: names of the arrays in each tuple the stream gives.
        produces_examples: ``True`` for one example per item, ``False`` for
            batches. Set by the iteration scheme when there is one (setting
            it then raises); a stream without a scheme must be told.
        axis_labels: ``{source: (label, ...)}`` or ``None``.
    """

    sources: tuple[str, ...] = ()
    axis_labels: dict[str, tuple[str, ...]] | None = None
    iteration_scheme: Any = None

    def __init__(
        self,
        iteration_scheme: Any = None,
        axis_labels: Mapping[str, Sequence[str] | None] | None = None,
    ) -> None:
        self.iteration_scheme = iteration_scheme
        if axis_labels is not None:
            self.axis_labels = {
                k: (None if v is None else (v,) if isinstance(v, str) else tuple(v))
                for k, v in axis_labels.items()
            }
        self._next_epoch = 0
        self._resume: Any = None
        self._latest: EpochIterator | None = None

    @property
    def produces_examples(self) -> bool:
        scheme = getattr(self, "iteration_scheme", None)
        if scheme is not None:
            return bool(scheme.requests_examples)
        value = self.__dict__.get("_produces_examples")
        if value is None:
            value = getattr(type(self), "_class_produces_examples", None)
        if value is None:
            raise SchemeError(
                f"{type(self).__name__}: cannot tell whether it gives examples or batches (it "
                "has no iteration scheme); set produces_examples to True or False"
            )
        return value

    @produces_examples.setter
    def produces_examples(self, value: bool) -> None:
        scheme = getattr(self, "iteration_scheme", None)
        if scheme is not None:
            raise SchemeError(
                f"{type(self).__name__}: produces_examples is decided by its iteration scheme "
                f"{scheme!r} (requests_examples={scheme.requests_examples}); it cannot be set"
            )
        self._produces_examples = bool(value)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Fuel subclasses may write ``produces_examples = True`` in the class body.
        super().__init_subclass__(**kwargs)
        value = cls.__dict__.get("produces_examples")
        if isinstance(value, bool):
            cls._class_produces_examples = value
            del cls.produces_examples
            cls.produces_examples = AbstractDataStream.produces_examples

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
        self.close()
        self.set_state({"version": STATE_VERSION, "epoch": 0, "iterator": None})

    def close(self) -> None:
        """Release the files and workers of the live epoch iterator (Fuel's ``close``)."""
        if self._latest is not None:
            self._latest.close()

    def next_epoch(self) -> None:
        """End the live epoch: the next ``get_epoch_iterator()`` starts the following one."""
        if self._latest is not None and not self._latest._done:
            state = self._latest.get_state()
            self._latest.close()
            self._latest = None
            self._next_epoch = state["epoch"] + 1

    def get_data(self, request: Any = None) -> tuple:
        """The next item of the live epoch iterator (Fuel's pull interface).

        Only a ``DataStream`` takes requests; a transformer computes its
        items from its child and raises :class:`~bricks.errors.RequestError`
        when given one.
        """
        if request is not None:
            raise RequestError(
                f"{type(self).__name__}.get_data: expected no request (a transformer reads its "
                f"child stream), found {request!r:.80}"
            )
        if self._latest is None or self._latest._done:
            self.get_epoch_iterator()
        return next(self._latest)

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_live")}
        if self._latest is not None:
            state["_resume"] = _parse_state(self.get_state(), self)
        state["_latest"] = None
        return state


def _state_field(state: Any, key: str, default: Any, where: str) -> Any:
    if state is None:
        return default
    if not isinstance(state, dict) or key not in state:
        raise IterationStateError(
            f"{where}: state {state!r:.200} lacks {key!r}; was it saved from a stream "
            "built the same way?"
        )
    return state[key]


def stack_examples(examples: list, source: str = "?") -> np.ndarray:
    """Stack same-shape examples into one array; ragged ones into an object array."""
    arrays = [np.asarray(e) for e in examples]
    if all(a.shape == arrays[0].shape for a in arrays):
        return np.stack(arrays) if arrays else np.empty((0,))
    out = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        out[i] = a
    return out
