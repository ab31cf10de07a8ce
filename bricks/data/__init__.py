"""The streaming, resumable data pipeline (host-side numpy and h5py; never jax).

Datasets with named sources, iteration schemes with Fuel's request
sequences, streams and transformers whose epoch iterators save and restore
a small JSON state, HDF5 files in Fuel's layout, text datasets, background
prefetching with threads or worker processes, and converters for MNIST,
CIFAR-10 and a text corpus. See ``docs/data.md`` and
:mod:`bricks.data._streams` for the state contract.
"""

from ._converters import convert, download, read_idx, safe_unpickle
from ._datasets import Dataset, IndexableDataset, IterableDataset
from ._hdf5 import H5PYDataset, create_split_array, write_hdf5
from ._prefetch import Prefetch
from ._schemes import (
    BatchScheme,
    ConcatenatedScheme,
    ConstantScheme,
    IterationScheme,
    SequentialExampleScheme,
    SequentialScheme,
    ShuffledExampleScheme,
    ShuffledScheme,
)
from ._streams import AbstractDataStream, DataStream, EpochIterator
from ._text import TextFile, Vocabulary, default_corpus_files
from ._transformers import (
    Batch,
    Cache,
    Cast,
    Filter,
    FilterSources,
    Flatten,
    Mapping,
    Merge,
    NGrams,
    Padding,
    RandomCrop,
    RandomFlip,
    Rename,
    ScaleAndShift,
    SortMapping,
    TimeMajor,
    Transformer,
    Unpack,
    Window,
    bucket_by_length,
)

__all__ = [
    "AbstractDataStream",
    "Batch",
    "BatchScheme",
    "Cache",
    "Cast",
    "ConcatenatedScheme",
    "ConstantScheme",
    "DataStream",
    "Dataset",
    "EpochIterator",
    "Filter",
    "FilterSources",
    "Flatten",
    "H5PYDataset",
    "IndexableDataset",
    "IterableDataset",
    "IterationScheme",
    "Mapping",
    "Merge",
    "NGrams",
    "Padding",
    "Prefetch",
    "RandomCrop",
    "RandomFlip",
    "Rename",
    "ScaleAndShift",
    "SequentialExampleScheme",
    "SequentialScheme",
    "ShuffledExampleScheme",
    "ShuffledScheme",
    "SortMapping",
    "TextFile",
    "TimeMajor",
    "Transformer",
    "Unpack",
    "Vocabulary",
    "Window",
    "bucket_by_length",
    "convert",
    "create_split_array",
    "default_corpus_files",
    "download",
    "read_idx",
    "safe_unpickle",
    "write_hdf5",
]
