"""Sequence transformers: padding with masks, time-major layout, windows, n-grams, buckets.

The state contract is that of :mod:`bricks.data._transformers` (``Window``
and ``NGrams`` buffer one sequence and resume by re-reading it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bricks.errors import DataShapeError, SchemeError

from ._batching import Batch, Unpack, _Expanding
from ._buckets import Buckets, as_bucketer
from ._datasets import check_sources
from ._schemes import ConstantScheme
from ._streams import AbstractDataStream
from ._transformers import AgnosticSourcewiseTransformer, Mapping, SortMapping, Transformer

__all__ = ["NGrams", "Padding", "TimeMajor", "Window", "bucket_by_length"]


class Padding(Transformer):
    """Pad variable-length sequences of a batch and add ``<source>_mask`` sources.

    Each listed source (default: all) becomes a ``(batch, max_len, ...)``
    array padded with zeros, followed by a ``(batch, max_len)`` mask that is
    1 where data is. Use :class:`TimeMajor` afterwards for recurrent models.

    With ``buckets`` the time axis is padded beyond the longest sequence, up
    to a bucket, so a compiled step sees a few lengths only (one program
    each): ``"pow2"`` (the next power of two: at most
    ⌈log2(longest / shortest)⌉ + 1 lengths), an increasing list of lengths
    (a sequence longer than the largest is a
    :class:`~bricks.errors.BucketError`, never cut), or a function
    ``length -> padded length``.

    >>> import numpy as np
    >>> from bricks.data import DataStream, IterableDataset, Batch, ConstantScheme
    >>> s = Batch(DataStream(IterableDataset({"w": [[1, 2, 3], [4]]})), ConstantScheme(2))
    >>> w, mask = next(Padding(s).get_epoch_iterator())
    >>> w.tolist(), mask.tolist()
    ([[1, 2, 3], [4, 0, 0]], [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    >>> w, mask = next(Padding(s, buckets="pow2").get_epoch_iterator())
    >>> w.tolist(), mask.tolist()
    ([[1, 2, 3, 0], [4, 0, 0, 0]], [[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    """

    def __init__(
        self,
        data_stream: AbstractDataStream,
        mask_sources: Sequence[str] | None = None,
        mask_dtype: Any = "float32",
        buckets: Buckets = None,
    ) -> None:
        if data_stream.produces_examples:
            raise SchemeError(
                "Padding: expected a stream of batches, found one of examples; "
                "wrap it in Batch first"
            )
        super().__init__(data_stream)
        self.mask_sources = self._which(mask_sources)
        self.mask_dtype = np.dtype(mask_dtype)
        self.buckets = buckets
        self._bucket = as_bucketer(buckets, "Padding")
        sources = []
        labels = dict(self.axis_labels) if self.axis_labels else None
        for s in data_stream.sources:
            sources.append(s)
            if s in self.mask_sources:
                sources.append(s + "_mask")
                if labels is not None:
                    labels[s + "_mask"] = ("batch", "time")
        self.sources = tuple(sources)
        self.axis_labels = labels

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
            length = max(len(x) for x in seqs)
            if self._bucket is not None:
                length = self._bucket(length, s)
            dtype = np.result_type(*seqs)
            padded = np.zeros((len(seqs), length, *rest), dtype=dtype)
            mask = np.zeros((len(seqs), length), dtype=self.mask_dtype)
            for i, x in enumerate(seqs):
                padded[i, : len(x)] = x
                mask[i, : len(x)] = 1
            out.extend([padded, mask])
        return tuple(out)


class TimeMajor(AgnosticSourcewiseTransformer):
    """Swap the batch and time axes: ``(batch, time, ...)`` → ``(time, batch, ...)``.

    Recurrent bricks scan over time-major sequences with ``(time, batch)``
    masks. By default every source of two or more axes is transposed.
    """

    def __init__(
        self, data_stream: AbstractDataStream, which_sources: Sequence[str] | None = None
    ) -> None:
        super().__init__(data_stream, which_sources=which_sources)
        if self.produces_examples:
            raise SchemeError("TimeMajor: expected a stream of batches, found one of examples")

    def transform_any_source(self, source_data: Any, source_name: str) -> Any:
        a = np.asarray(source_data)
        return np.ascontiguousarray(np.swapaxes(a, 0, 1)) if a.ndim >= 2 else a


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
