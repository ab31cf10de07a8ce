"""The streaming, resumable data pipeline (host-side numpy and h5py; never jax).

Datasets with named sources, iteration schemes with Fuel's request
sequences, streams and transformers whose epoch iterators save and restore
a small JSON state, HDF5 files in Fuel's layout, text datasets, background
prefetching with threads or worker processes, converters for MNIST,
CIFAR-10 and a text corpus and dataset classes over their files (with
Fuel's ``default_transformers``), and Fuel's image transformers (Pillow).
Fuel's own tests pass against it (``tests/compat/fuel``). See
``docs/data.md`` and :mod:`bricks.data._streams` for the state contract.
"""

from ._batching import (
    Batch,
    Cache,
    Filter,
    Merge,
    MultiProcessing,
    Unpack,
)
from ._buckets import EXAMPLE_MASK, PadBatch
from ._converters import convert, download, read_idx, safe_unpickle
from ._datasets import Dataset, IndexableDataset, IterableDataset
from ._datastream import DataStream
from ._hdf5 import H5PYDataset, create_split_array, write_hdf5
from ._image import (
    ImagesFromBytes,
    MinimumImageDimensions,
    Random2DRotation,
    RandomCrop,
    RandomFixedSizeCrop,
    RandomFlip,
)
from ._named import CIFAR10, MNIST, TextCorpus, uint8_pixels_to_floatX
from ._prefetch import Prefetch
from ._schemes import (
    BatchScheme,
    BatchSizeScheme,
    ConcatenatedScheme,
    ConstantScheme,
    IterationScheme,
    SequentialExampleScheme,
    SequentialScheme,
    ShuffledExampleScheme,
    ShuffledScheme,
    cross_validation,
)
from ._sequences import NGrams, Padding, TimeMajor, Window, bucket_by_length
from ._sharding import ProcessSlice, slice_stream
from ._streams import AbstractDataStream, EpochIterator
from ._text import TextFile, Vocabulary, default_corpus_files
from ._transformers import (
    AgnosticSourcewiseTransformer,
    Cast,
    ExpectsAxisLabels,
    FilterSources,
    Flatten,
    ForceFloatX,
    Mapping,
    Rename,
    ScaleAndShift,
    SortMapping,
    SourcewiseTransformer,
    ToBytes,
    Transformer,
)

__all__ = [
    "AbstractDataStream",
    "AgnosticSourcewiseTransformer",
    "Batch",
    "BatchScheme",
    "BatchSizeScheme",
    "CIFAR10",
    "Cache",
    "Cast",
    "ConcatenatedScheme",
    "ConstantScheme",
    "DataStream",
    "Dataset",
    "EXAMPLE_MASK",
    "EpochIterator",
    "ExpectsAxisLabels",
    "Filter",
    "FilterSources",
    "Flatten",
    "ForceFloatX",
    "H5PYDataset",
    "ImagesFromBytes",
    "IndexableDataset",
    "IterableDataset",
    "IterationScheme",
    "MNIST",
    "Mapping",
    "Merge",
    "MinimumImageDimensions",
    "MultiProcessing",
    "NGrams",
    "PadBatch",
    "Padding",
    "Prefetch",
    "ProcessSlice",
    "Random2DRotation",
    "RandomCrop",
    "RandomFixedSizeCrop",
    "RandomFlip",
    "Rename",
    "ScaleAndShift",
    "SequentialExampleScheme",
    "SequentialScheme",
    "ShuffledExampleScheme",
    "ShuffledScheme",
    "SortMapping",
    "SourcewiseTransformer",
    "TextCorpus",
    "TextFile",
    "TimeMajor",
    "ToBytes",
    "Transformer",
    "Unpack",
    "Vocabulary",
    "Window",
    "bucket_by_length",
    "convert",
    "create_split_array",
    "cross_validation",
    "default_corpus_files",
    "download",
    "read_idx",
    "safe_unpickle",
    "slice_stream",
    "uint8_pixels_to_floatX",
    "write_hdf5",
]
