"""Bounded shapes for compiled steps: length buckets and full-size batches.

A compiled training step is one program per input shape. Two transformers
keep the number of shapes small:

- :class:`~bricks.data.Padding` with ``buckets=`` pads each batch's time axis
  up to a bucket (powers of two, a list, or a function), so a run sees at
  most as many lengths as there are buckets; the masks mark the real steps.
- :class:`PadBatch` pads a short batch (the ragged last batch of an epoch)
  to the full batch size by repeating its examples, and adds an
  ``example_mask`` source, ``(batch,)``, 1 for real examples and 0 for the
  repeats. A cost that averages over examples with this mask
  (:func:`bricks.algorithms.example_mean`) gives the unpadded batch's value
  and gradients; training and monitoring refuse a cost or a monitored value
  that ignores it (:class:`~bricks.errors.ExampleMaskError`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bricks.errors import BucketError, DataShapeError, SchemeError, SourceError

from ._streams import AbstractDataStream
from ._transformers import Transformer

__all__ = ["EXAMPLE_MASK", "PadBatch", "as_bucketer"]

#: The source :class:`PadBatch` adds: ``(batch,)``, 1 for real examples, 0 for padding.
EXAMPLE_MASK = "example_mask"

Buckets = str | Sequence[int] | Callable[[int], int] | None


def _pow2(length: int) -> int:
    return 1 << max(int(length) - 1, 0).bit_length()


def as_bucketer(buckets: Buckets, where: str = "Padding") -> Callable[[int, str], int] | None:
    """``fn(length, source) -> padded length`` for a ``buckets=`` setting (None: none).

    Args:
        buckets: ``"pow2"`` (the next power of two), an increasing list of
            lengths (the smallest that holds the sequence), or a function
            ``length -> padded length`` (at least ``length``).
        where: who asks, for messages.

    Raises:
        SchemeError: a setting that is none of these, or an unsorted list.

    >>> as_bucketer("pow2")(5, "x"), as_bucketer([4, 10])(5, "x")
    (8, 10)
    """
    if buckets is None:
        return None
    if isinstance(buckets, str):
        if buckets != "pow2":
            raise SchemeError(
                f"{where}: buckets={buckets!r} is not known; use 'pow2', an increasing list of "
                "lengths, or a function length -> padded length"
            )
        return lambda length, source: _pow2(length)
    if callable(buckets):
        fn = buckets

        def call(length: int, source: str) -> int:
            padded = fn(length)
            if not isinstance(padded, (int, np.integer)) or padded < length:
                raise BucketError(
                    f"{where}: source {source!r}: buckets function {fn!r} gave {padded!r} for "
                    f"length {length}; expected an int >= {length}"
                )
            return int(padded)

        return call
    sizes = list(buckets)
    if (
        not sizes
        or not all(isinstance(b, (int, np.integer)) and b > 0 for b in sizes)
        or sizes != sorted(set(sizes))
    ):
        raise SchemeError(
            f"{where}: buckets must be positive lengths in increasing order, found {sizes!r}"
        )
    table = np.asarray(sizes)

    def lookup(length: int, source: str) -> int:
        i = int(np.searchsorted(table, length))
        if i == len(table):
            raise BucketError(
                f"{where}: source {source!r} has a sequence of length {length}, longer than the "
                f"largest of buckets={sizes}; add a larger bucket, or drop long sequences "
                "with Filter (sequences are never cut)"
            )
        return int(table[i])

    return lookup


class PadBatch(Transformer):
    """Pad short batches to ``batch_size`` and add an ``example_mask`` source.

    A ragged last batch then has the shape of all the others, so a compiled
    step (or monitoring function) runs it without compiling a second
    program. The missing rows repeat the batch's own examples (so they hold
    valid data: no NaN from a padded row reaches a masked sum), and
    ``example_mask`` is 1.0 for the real rows and 0.0 for the repeats.

    The cost must read ``example_mask`` and average over examples with it,
    e.g. ``example_mean(costs_per_example, example_mask)`` from
    :mod:`bricks.algorithms`; GradientDescent and the monitoring extensions
    raise :class:`~bricks.errors.ExampleMaskError` for a cost or monitored
    value that does not depend on it. Every source is padded along its first
    axis (the batch axis: apply it before :class:`TimeMajor`).

    Args:
        data_stream: a stream of batches.
        batch_size: the full size (default: the ``batch_size`` of the
            stream's iteration scheme).

    Raises:
        SchemeError: a stream of examples, or no batch size known.
        DataShapeError: a batch larger than ``batch_size``, or sources of
            different lengths.

    >>> import numpy as np
    >>> from bricks.data import DataStream, IndexableDataset, SequentialScheme
    >>> s = DataStream(IndexableDataset({"x": np.arange(5)}),
    ...                iteration_scheme=SequentialScheme(5, 3))
    >>> [(x.tolist(), m.tolist()) for x, m in PadBatch(s).get_epoch_iterator()]
    [([0, 1, 2], [1.0, 1.0, 1.0]), ([3, 4, 3], [1.0, 1.0, 0.0])]
    """

    def __init__(self, data_stream: AbstractDataStream, batch_size: int | None = None) -> None:
        if data_stream.produces_examples:
            raise SchemeError(
                "PadBatch: expected a stream of batches, found one of examples; wrap it in "
                "Batch first"
            )
        if EXAMPLE_MASK in data_stream.sources:
            raise SourceError(
                f"PadBatch: the stream already has a source {EXAMPLE_MASK!r} (padded twice?)"
            )
        if batch_size is None:
            scheme = _scheme_of(data_stream)
            batch_size = getattr(scheme, "batch_size", None)
            if batch_size is None:
                raise SchemeError(
                    f"PadBatch: the stream's scheme {scheme!r} has no batch_size; pass "
                    "PadBatch(stream, batch_size=...)"
                )
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise SchemeError(f"PadBatch: batch_size must be a positive int, found {batch_size!r}")
        super().__init__(data_stream)
        self.batch_size = int(batch_size)
        self.sources = (*data_stream.sources, EXAMPLE_MASK)
        if self.axis_labels:
            labels = dict(self.axis_labels)
            for name, axes in labels.items():
                if axes and axes[0] != "batch":
                    raise DataShapeError(
                        f"PadBatch: source {name!r} has axis labels {tuple(axes)}; expected the "
                        "batch axis first (apply PadBatch before TimeMajor)"
                    )
            labels[EXAMPLE_MASK] = ("batch",)
            self.axis_labels = labels

    def transform(self, data: tuple, epoch: int, count: int) -> tuple:
        sizes = {s: len(d) for s, d in zip(self.data_stream.sources, data, strict=True)}
        if len(set(sizes.values())) != 1:
            raise DataShapeError(
                f"PadBatch: the sources of a batch differ in length along the batch axis: {sizes}"
            )
        n = next(iter(sizes.values()))
        if n > self.batch_size or n == 0:
            raise DataShapeError(
                f"PadBatch: batch {count} of epoch {epoch} has {n} examples; expected 1 to "
                f"batch_size={self.batch_size} (never cut)"
            )
        mask = np.zeros(self.batch_size, np.float32)
        mask[:n] = 1.0
        if n == self.batch_size:
            return (*data, mask)
        rows = np.arange(self.batch_size) % n
        return (*(_take_rows(d, rows) for d in data), mask)


def _scheme_of(stream: AbstractDataStream) -> Any:
    """The iteration scheme that draws the batches: the first one down the chain."""
    while stream.iteration_scheme is None and isinstance(stream, Transformer):
        stream = stream.data_stream
    return stream.iteration_scheme


def _take_rows(data: Any, rows: np.ndarray) -> Any:
    if isinstance(data, list):
        return [data[i] for i in rows]
    return np.asarray(data)[rows]
