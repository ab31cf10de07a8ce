"""Iteration schemes: which examples each request of an epoch asks for.

A scheme is stateless. ``get_request_iterator(epoch)`` returns the requests
of one epoch, and the same epoch always gives the same requests, which is
what lets a stream resume mid-epoch: it only has to remember the epoch and
how many requests it has already served. Shuffled schemes derive the order
from ``(seed, epoch)``, so each epoch has a different order and a rerun (or a
resumed run) has the same one.

Request sequences are Fuel's: batch schemes yield lists of ``int`` indices,
example schemes yield ``int`` indices, :class:`ConstantScheme` yields batch
sizes (``int``) for :class:`~bricks.data.Batch` and
:class:`~bricks.data.Cache`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from bricks.errors import SchemeError

__all__ = [
    "BatchScheme",
    "BatchSizeScheme",
    "ConcatenatedScheme",
    "ConstantScheme",
    "IterationScheme",
    "SequentialExampleScheme",
    "SequentialScheme",
    "ShuffledExampleScheme",
    "ShuffledScheme",
    "cross_validation",
]


class IterationScheme:
    """Base class: a recipe for the requests of each epoch.

    Attributes:
        requests_examples: ``True`` when each request is one example index
            (the stream then produces examples), ``False`` for batches.
    """

    requests_examples: bool = False

    def get_request_iterator(self, epoch: int | None = None) -> Iterator:
        """Return the requests of epoch ``epoch`` (the same every time; ``None``: 0)."""
        raise NotImplementedError

    def num_requests(self, epoch: int = 0) -> int | None:
        """Number of requests in an epoch, or ``None`` when infinite or unknown."""
        return None


def _as_indices(examples: int | Sequence[int], name: str) -> np.ndarray:
    if isinstance(examples, (int, np.integer)):
        if examples < 0:
            raise SchemeError(
                f"{name}: expected a non-negative number of examples, found {examples}"
            )
        return np.arange(int(examples), dtype=np.int64)
    arr = np.asarray(list(examples), dtype=np.int64)
    if arr.ndim != 1:
        raise SchemeError(
            f"{name}: expected an int or a flat list of indices, found shape {arr.shape}"
        )
    return arr


def _check_batch_size(batch_size: int, name: str) -> int:
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise SchemeError(f"{name}: expected a positive int batch_size, found {batch_size!r}")
    return int(batch_size)


class _Shuffling:
    """Seeded or Fuel-style shuffling of ``self.indices``.

    With ``seed`` (the default), the order of epoch ``e`` is a permutation
    drawn from ``numpy.random.default_rng([seed, e])``. With ``rng`` (a
    ``numpy.random.RandomState``, Fuel's argument), a call without an epoch
    draws the next order from ``rng`` exactly as Fuel did; streams, which
    ask for epoch ``e``, use a seed drawn once from ``rng`` when they first
    ask, so their epochs keep the seeded, resumable contract.
    """

    indices: np.ndarray

    def _init_shuffle(self, seed: int | None, rng: Any) -> None:
        if rng is not None and not hasattr(rng, "shuffle"):
            raise SchemeError(
                f"{type(self).__name__}: rng must be a numpy.random.RandomState (or Generator), "
                f"found {type(rng).__name__}"
            )
        if rng is not None and seed is not None:
            raise SchemeError(f"{type(self).__name__}: give seed or rng, not both")
        self._rng = rng
        self._seed = None if seed is None and rng is not None else int(1 if seed is None else seed)

    @property
    def rng(self) -> Any:
        """The ``RandomState`` given, or the generator of epoch 0's order."""
        if self._rng is not None:
            return self._rng
        return np.random.default_rng([self.seed, 0])

    @property
    def seed(self) -> int:
        """The seed of the epochs' orders (drawn once from ``rng`` when one was given)."""
        if self._seed is None:
            self._seed = int(self._rng.randint(0, 2**31 - 1))
        return self._seed

    def _order(self, epoch: int | None) -> np.ndarray:
        if epoch is None and self._rng is not None:
            order = self.indices.tolist()
            self._rng.shuffle(order)
            return np.asarray(order, dtype=np.int64)
        rng = np.random.default_rng([self.seed, int(epoch or 0)])
        return rng.permutation(self.indices)


class BatchScheme(IterationScheme):
    """Base of schemes that split a list of example indices into batches."""

    def __init__(self, examples: int | Sequence[int], batch_size: int) -> None:
        name = type(self).__name__
        self.indices = _as_indices(examples, name)
        self.batch_size = _check_batch_size(batch_size, name)

    def _order(self, epoch: int | None) -> np.ndarray:
        return self.indices

    def get_request_iterator(self, epoch: int | None = None) -> Iterator[list[int]]:
        order = self._order(epoch)
        bs = self.batch_size
        return (order[i : i + bs].tolist() for i in range(0, len(order), bs))

    def num_requests(self, epoch: int | None = None) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.indices)}, batch_size={self.batch_size})"


class SequentialScheme(BatchScheme):
    """Batches of consecutive examples, in order; the last one may be short.

    >>> list(SequentialScheme(5, 2).get_request_iterator())
    [[0, 1], [2, 3], [4]]
    """


class ShuffledScheme(_Shuffling, BatchScheme):
    """Batches of examples in a new random order each epoch.

    The order of epoch ``e`` is a permutation drawn from
    ``numpy.random.default_rng([seed, e])``: different each epoch, identical
    between runs with the same seed.

    Args:
        examples: number of examples, or the list of example indices.
        batch_size: examples per batch (the last batch may be short).
        seed: seed of the shuffles (default 1).
        sorted_indices: sort the indices inside each batch (Fuel's option;
            faster HDF5 reads, same batch contents).
        rng: Fuel's ``numpy.random.RandomState`` instead of ``seed`` (see
            ``_Shuffling``: direct calls draw from it as Fuel did; stream
            epochs use a seed drawn once from it).

    >>> scheme = ShuffledScheme(6, 3, seed=0)
    >>> sorted(sum(scheme.get_request_iterator(epoch=0), []))
    [0, 1, 2, 3, 4, 5]
    >>> list(scheme.get_request_iterator(0)) == list(scheme.get_request_iterator(0))
    True
    """

    def __init__(
        self,
        examples: int | Sequence[int],
        batch_size: int,
        seed: int | None = None,
        sorted_indices: bool = False,
        rng: Any = None,
    ) -> None:
        BatchScheme.__init__(self, examples, batch_size)
        self._init_shuffle(seed, rng)
        self.sorted_indices = sorted_indices

    def get_request_iterator(self, epoch: int | None = None) -> Iterator[list[int]]:
        it = super().get_request_iterator(epoch)
        return (sorted(r) for r in it) if self.sorted_indices else it


class SequentialExampleScheme(IterationScheme):
    """One example index per request, in order.

    >>> list(SequentialExampleScheme(3).get_request_iterator())
    [0, 1, 2]
    """

    requests_examples = True

    def __init__(self, examples: int | Sequence[int]) -> None:
        self.indices = _as_indices(examples, type(self).__name__)

    def _order(self, epoch: int | None) -> np.ndarray:
        return self.indices

    def get_request_iterator(self, epoch: int | None = None) -> Iterator[int]:
        return iter(self._order(epoch).tolist())

    def num_requests(self, epoch: int | None = None) -> int:
        return len(self.indices)


class ShuffledExampleScheme(_Shuffling, SequentialExampleScheme):
    """One example index per request, in a new seeded order each epoch.

    Args:
        examples: number of examples, or the list of example indices.
        seed: seed of the shuffles (default 1).
        rng: Fuel's ``numpy.random.RandomState`` instead of ``seed`` (as in
            :class:`ShuffledScheme`).
    """

    def __init__(
        self, examples: int | Sequence[int], seed: int | None = None, rng: Any = None
    ) -> None:
        SequentialExampleScheme.__init__(self, examples)
        self._init_shuffle(seed, rng)


class BatchSizeScheme(IterationScheme):
    """Base of schemes whose requests are batch sizes (``int``), read by
    :class:`~bricks.data.Batch` and :class:`~bricks.data.Cache` (Fuel's class)."""

    requests_examples = False


class ConstantScheme(BatchSizeScheme):
    """Requests the same batch size again and again (for ``Batch``/``Cache``).

    With ``num_examples`` the requests add up to exactly that many examples
    (the last one is the remainder); with ``times`` there are that many
    requests; with neither, the requests never end (the child stream ends
    the epoch).

    >>> list(ConstantScheme(3, num_examples=7).get_request_iterator())
    [3, 3, 1]
    >>> list(ConstantScheme(2, times=3).get_request_iterator())
    [2, 2, 2]
    """

    def __init__(
        self, batch_size: int, num_examples: int | None = None, times: int | None = None
    ) -> None:
        self.batch_size = _check_batch_size(batch_size, "ConstantScheme")
        if num_examples is not None and times is not None:
            raise SchemeError("ConstantScheme: give num_examples or times, not both")
        self.num_examples = num_examples
        self.times = times

    def get_request_iterator(self, epoch: int | None = None) -> Iterator[int]:
        if self.num_examples is not None:
            d, r = divmod(int(self.num_examples), self.batch_size)
            return iter([self.batch_size] * d + ([r] if r else []))
        if self.times is not None:
            return itertools.repeat(self.batch_size, int(self.times))
        return itertools.repeat(self.batch_size)

    def num_requests(self, epoch: int | None = None) -> int | None:
        if self.num_examples is not None:
            return -(-int(self.num_examples) // self.batch_size)
        return None if self.times is None else int(self.times)


class ConcatenatedScheme(IterationScheme):
    """The requests of several schemes, one after the other.

    >>> s = ConcatenatedScheme([SequentialScheme(3, 2), SequentialScheme([7, 8], 2)])
    >>> list(s.get_request_iterator())
    [[0, 1], [2], [7, 8]]
    """

    def __init__(self, schemes: Sequence[IterationScheme]) -> None:
        self.schemes = list(schemes)
        if not self.schemes:
            raise SchemeError("ConcatenatedScheme: expected at least one scheme, found none")
        kinds = {s.requests_examples for s in self.schemes}
        if len(kinds) != 1:
            raise SchemeError(
                "ConcatenatedScheme: expected all-example or all-batch schemes, found a mix: "
                + ", ".join(type(s).__name__ for s in self.schemes)
            )
        self.requests_examples = kinds.pop()

    def get_request_iterator(self, epoch: int | None = None) -> Iterator:
        return itertools.chain.from_iterable(s.get_request_iterator(epoch) for s in self.schemes)

    def num_requests(self, epoch: int | None = None) -> int | None:
        counts = [s.num_requests(epoch) for s in self.schemes]
        return None if any(c is None for c in counts) else sum(counts)


def cross_validation(
    scheme_class: type, num_examples: int, num_folds: int, strict: bool = True, **kwargs: Any
) -> Iterator[tuple]:
    """Pairs ``(train, valid)`` of schemes for each of ``num_folds`` folds (Fuel's function).

    Fold ``i`` validates on examples ``[n*i//k, n*(i+1)//k)`` and trains on
    the rest; ``scheme_class`` is called with the list of indices and
    ``**kwargs`` (e.g. ``batch_size``). With ``strict`` (the default),
    ``num_examples`` must divide into equal folds; without it each tuple
    also holds the size of the validation fold.

    >>> [list(v.get_request_iterator()) for _, v in
    ...  cross_validation(SequentialScheme, 4, 2, batch_size=2)]
    [[[0, 1]], [[2, 3]]]
    """
    if num_folds < 1 or num_examples < num_folds:
        raise SchemeError(
            f"cross_validation: expected 1 <= num_folds <= num_examples, found num_folds="
            f"{num_folds}, num_examples={num_examples}"
        )
    if strict and num_examples % num_folds:
        raise SchemeError(
            f"cross_validation: {num_examples} examples do not split into {num_folds} folds of "
            "equal size; give strict=False to allow unequal folds"
        )
    for i in range(num_folds):
        begin, end = num_examples * i // num_folds, num_examples * (i + 1) // num_folds
        train = scheme_class([*range(begin), *range(end, num_examples)], **kwargs)
        valid = scheme_class(list(range(begin, end)), **kwargs)
        yield (train, valid) if strict else (train, valid, end - begin)
