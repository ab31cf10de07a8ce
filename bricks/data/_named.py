"""Dataset classes over the files the converters write, with Fuel's defaults.

``MNIST(("train",))`` reads ``mnist.hdf5`` from the data directory
(``$BRICKS_DATA_PATH`` or ``~/.bricks/data``; ``python -m bricks.data
convert mnist`` writes it) and, like Fuel's classes, carries
``default_transformers``: ``DataStream.default_stream(MNIST(("train",)),
iteration_scheme=...)`` gives float32 pixels in [0, 1], not uint8 0..255.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from bricks.errors import DataFileError

from ._converters import data_path
from ._hdf5 import H5PYDataset
from ._transformers import Cast, ScaleAndShift

__all__ = ["CIFAR10", "MNIST", "TextCorpus", "uint8_pixels_to_floatX"]


def uint8_pixels_to_floatX(which_sources: Sequence[str]) -> tuple:  # noqa: N802 - Fuel's name
    """Fuel's default transformers that scale uint8 pixels to float32 in [0, 1]."""
    which_sources = tuple(which_sources)
    return (
        (ScaleAndShift, [1 / 255.0, 0], {"which_sources": which_sources}),
        (Cast, [np.float32], {"which_sources": which_sources}),
    )


class _Converted(H5PYDataset):
    """An HDF5 file written by ``bricks.data.convert(name)``."""

    filename: str = ""
    converter: str = ""
    #: ``load_in_memory`` unless given (MNIST and CIFAR-10 are read whole, as in Fuel)
    load_in_memory_by_default: bool = False

    def __init__(
        self,
        which_sets: Sequence[str],
        path: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        if path is None:
            path = data_path() / self.filename
            if not os.path.exists(path):
                raise DataFileError(
                    f"{type(self).__name__}: {path} does not exist; write it with "
                    f"`python -m bricks.data download {self.converter}` then "
                    f"`python -m bricks.data convert {self.converter}` (or give path=)"
                )
        if self.load_in_memory_by_default:
            kwargs.setdefault("load_in_memory", True)
        super().__init__(path, which_sets=which_sets, **kwargs)


class MNIST(_Converted):
    """MNIST digits (``features`` (n, 1, 28, 28) uint8, ``targets`` (n, 1) uint8).

    Splits ``"train"`` (60,000) and ``"test"`` (10,000). Loaded in memory by
    default, as in Fuel. ``default_transformers`` scale the features to
    float32 in [0, 1].

    Args:
        which_sets: e.g. ``("train",)``.
        path: the file (default ``<data path>/mnist.hdf5``).
        **kwargs: as for :class:`~bricks.data.H5PYDataset`.
    """

    filename = "mnist.hdf5"
    converter = "mnist"
    default_transformers = uint8_pixels_to_floatX(("features",))
    load_in_memory_by_default = True


class CIFAR10(_Converted):
    """CIFAR-10 (``features`` (n, 3, 32, 32) uint8, ``targets`` (n, 1) uint8).

    Splits ``"train"`` (50,000) and ``"test"`` (10,000); in memory by
    default; ``default_transformers`` scale the features to float32 in [0, 1].
    """

    filename = "cifar10.hdf5"
    converter = "cifar10"
    default_transformers = uint8_pixels_to_floatX(("features",))
    load_in_memory_by_default = True


class TextCorpus(_Converted):
    """The text corpus of ``convert("text")``: one int32 sequence of token ids per line.

    Splits ``"train"`` and ``"valid"``. ``vocabulary`` is the
    :class:`~bricks.data.Vocabulary` stored in the file (``dictionary``, its
    token → id mapping, as Fuel's text datasets had). No default transformers.
    """

    filename = "text.hdf5"
    converter = "text"

    @property
    def vocabulary(self) -> Any:
        from ._text import Vocabulary

        f = self._file()
        if "vocabulary" not in f.attrs:
            raise DataFileError(
                f"{self.path}: no 'vocabulary' attribute (not written by convert('text'))"
            )
        return Vocabulary.from_dict(json.loads(f.attrs["vocabulary"]))

    @property
    def dictionary(self) -> dict[str, int]:
        """Token → id (Fuel's ``dictionary``)."""
        return dict(self.vocabulary.index)
