"""Each process's slice of the global batches: data order is global (DESIGN.md, decision 11).

An iteration scheme defines the sequence of *global* batches.
:class:`ProcessSlice` wraps it so that process ``i`` of ``P`` reads only the
``i``-th contiguous block of each global batch (an
:class:`~bricks.data.H5PYDataset` reads only those rows from disk). A
stream's state counts requests served, the same on every process, so a
checkpoint written with ``P`` processes resumes with ``P'`` (or one) and
continues with exactly the same global batches. This module knows the
process index and count as plain integers: it never imports jax.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bricks.errors import ProcessSliceError

from ._schemes import BatchSizeScheme, IterationScheme

__all__ = ["ProcessSlice", "slice_stream"]


class ProcessSlice(IterationScheme):
    """Process ``process_index``'s part of every global batch of ``scheme``.

    Args:
        scheme: a batch scheme (requests are lists of example indices) that
            defines the global batches.
        process_index: this process's index, ``0 <= process_index < process_count``.
        process_count: how many processes read the global batches.

    Every global batch must divide by ``process_count``; process ``i``
    reads its rows ``[i·B/P, (i+1)·B/P)``, the order in which
    :class:`bricks.distributed.DataParallel` puts them on the devices.

    Raises:
        ProcessSliceError: the scheme yields examples or batch sizes instead
            of batches, the index is out of range, or (while iterating) a
            global batch does not divide by ``process_count``.

    >>> from bricks.data import SequentialScheme
    >>> list(ProcessSlice(SequentialScheme(8, 4), 1, 2).get_request_iterator())
    [[2, 3], [6, 7]]
    """

    requests_examples = False

    def __init__(self, scheme: IterationScheme, process_index: int, process_count: int) -> None:
        if not isinstance(scheme, IterationScheme) or scheme.requests_examples or isinstance(
            scheme, BatchSizeScheme
        ):
            raise ProcessSliceError(
                f"ProcessSlice: expected a batch scheme (SequentialScheme, ShuffledScheme ...) "
                f"whose requests are lists of example indices, got {scheme!r}"
            )
        if isinstance(process_index, bool) or isinstance(process_count, bool):
            raise ProcessSliceError("ProcessSlice: process_index and count must be ints")
        index, count = int(process_index), int(process_count)
        if count < 1 or not 0 <= index < count:
            raise ProcessSliceError(
                f"ProcessSlice: expected 0 <= process_index < process_count, got "
                f"process_index={process_index}, process_count={process_count}"
            )
        self.scheme = scheme
        self.process_index = index
        self.process_count = count

    def __getattr__(self, name: str) -> Any:  # batch_size, indices ... of the global scheme
        if name == "scheme":
            raise AttributeError(name)
        return getattr(self.scheme, name)

    def get_request_iterator(self, epoch: int | None = None) -> Iterator[list[int]]:
        for number, request in enumerate(self.scheme.get_request_iterator(epoch)):
            yield self.slice(request, number, epoch)

    def slice(self, request: Any, number: int = 0, epoch: int | None = None) -> list[int]:
        """This process's block of the global batch ``request``."""
        rows = list(request)
        count = self.process_count
        if len(rows) % count:
            raise ProcessSliceError(
                f"ProcessSlice: global batch {number} of epoch {epoch or 0} from {self.scheme!r} "
                f"has {len(rows)} examples, which do not divide over {count} processes; "
                f"use a batch size (and a number of examples) that divides by {count}"
            )
        per = len(rows) // count
        return rows[self.process_index * per : (self.process_index + 1) * per]

    def num_requests(self, epoch: int = 0) -> int | None:
        return self.scheme.num_requests(epoch)

    def __repr__(self) -> str:
        return f"ProcessSlice({self.scheme!r}, {self.process_index}, {self.process_count})"


def slice_stream(stream: Any, process_index: int, process_count: int) -> Any:
    """Make ``stream`` read only this process's slice of every global batch (in place).

    Follows ``data_stream`` (transformers, ``Prefetch``) down to the
    :class:`~bricks.data.DataStream` that reads the dataset and wraps its
    batch scheme in :class:`ProcessSlice`. The transformers above see the
    slice as their batch, so they must treat examples independently
    (``Mapping``, ``Cast``, ``ScaleAndShift`` ... do; a ``Batch``, ``Cache``
    or ``Filter`` that draws or drops examples would change the global
    batches, and is refused). Returns ``stream``.

    Raises:
        ProcessSliceError: the stream is not a bricks stream, has no batch
            scheme at its leaf, or a transformer on the way draws its own
            requests.

    >>> import numpy as np
    >>> from bricks.data import DataStream, IndexableDataset, ScaleAndShift, SequentialScheme
    >>> leaf = DataStream(IndexableDataset({"x": np.arange(8.0)}), SequentialScheme(8, 4))
    >>> stream = slice_stream(ScaleAndShift(leaf, 10, 0), 1, 2)
    >>> [x.tolist() for (x,) in stream.get_epoch_iterator()]
    [[20.0, 30.0], [60.0, 70.0]]
    """
    if process_count == 1 and process_index == 0:
        return stream
    node = stream
    path = [type(node).__name__]
    while hasattr(node, "data_stream"):
        refused = ("Batch", "Cache", "Filter", "Unpack", "Merge", "MultiProcessing")
        if getattr(node, "iteration_scheme", None) is not None or type(node).__name__ in refused:
            raise ProcessSliceError(
                f"slice_stream: {' -> '.join(path)} draws or drops examples itself, so slicing "
                "its input would change the global batches; read batches with a batch scheme "
                "at the DataStream instead"
            )
        node = node.data_stream
        path.append(type(node).__name__)
    scheme = getattr(node, "iteration_scheme", None)
    if isinstance(scheme, ProcessSlice):
        raise ProcessSliceError(f"slice_stream: {' -> '.join(path)} is sliced already: {scheme!r}")
    if scheme is None or not hasattr(node, "dataset"):
        raise ProcessSliceError(
            f"slice_stream: expected a bricks DataStream with a batch scheme under "
            f"{' -> '.join(path)}, found {type(node).__name__} with scheme {scheme!r}"
        )
    node.iteration_scheme = ProcessSlice(scheme, process_index, process_count)
    return stream
