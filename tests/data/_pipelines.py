"""Pipelines shared by the resume tests (importable from a subprocess too).

Every pipeline carries an ``id`` source (the example index), so a test can
check that each example is seen exactly once per epoch.
"""

from __future__ import annotations

import numpy as np

from bricks.data import (
    AgnosticSourcewiseTransformer,
    Batch,
    Cache,
    ConstantScheme,
    DataStream,
    Filter,
    FilterSources,
    Flatten,
    ForceFloatX,
    H5PYDataset,
    IndexableDataset,
    IterableDataset,
    Mapping,
    Padding,
    Random2DRotation,
    RandomFixedSizeCrop,
    RandomFlip,
    Rename,
    SequentialScheme,
    ShuffledExampleScheme,
    ShuffledScheme,
    Unpack,
    Window,
    bucket_by_length,
    write_hdf5,
)

N = 23


def _indexable():
    return IndexableDataset(
        {"id": np.arange(N), "features": np.arange(N * 4.0).reshape(N, 1, 2, 2)}
    )


def _sequences():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 9, size=int(n)) for n in rng.integers(1, 8, size=N)]


class _Negate(AgnosticSourcewiseTransformer):
    """A transformer written the Fuel way (``transform_any_source``)."""

    def transform_any_source(self, source_data, source_name):
        return -np.asarray(source_data)


def _images():
    rng = np.random.default_rng(1)
    return [
        rng.integers(0, 255, size=(2, int(h), int(w))).astype(np.uint8)
        for h, w in rng.integers(5, 9, size=(N, 2))
    ]


def _double_dict(d):
    return {"twice": np.asarray(d["features"]) * 2}


def make_hdf5(path):
    write_hdf5(
        path,
        {"id": np.arange(N), "features": np.arange(N * 4.0).reshape(N, 1, 2, 2)},
        splits={"train": (0, N)},
    )


def build(name: str, workdir: str | None = None, prefetch: str | None = None):
    if name == "sequential":
        s = DataStream(_indexable(), iteration_scheme=SequentialScheme(N, 5))
    elif name == "shuffled":
        s = DataStream(_indexable(), iteration_scheme=ShuffledScheme(N, 4, seed=2))
    elif name == "examples_batch":
        s = Batch(
            DataStream(_indexable(), iteration_scheme=ShuffledExampleScheme(N, seed=1)),
            ConstantScheme(3),
        )
    elif name == "unpack_filter_batch":
        inner = DataStream(_indexable(), iteration_scheme=ShuffledScheme(N, 4, seed=4))
        s = Batch(Filter(Unpack(inner), lambda d: int(d[0]) % 3 != 0), ConstantScheme(4))
    elif name == "cache":
        s = Cache(
            DataStream(_indexable(), iteration_scheme=ShuffledScheme(N, 5, seed=7)),
            ConstantScheme(3),
        )
    elif name == "bucket_padding":
        seqs = _sequences()
        ds = IterableDataset({"id": list(range(N)), "words": seqs})
        s = Padding(
            bucket_by_length(DataStream(ds), 3, key_source="words", sort_batches=2),
            mask_sources=("words",),
        )
    elif name == "window":
        ds = IterableDataset({"text": [np.arange(k * 100, k * 100 + 3 + k % 4) for k in range(N)]})
        s = Mapping(
            Window(DataStream(ds), 2, 2, 1, overlapping=True),
            lambda d: (np.asarray(d[0][0]),),
            add_sources=("id",),
        )
    elif name == "fuel_rng_images":
        # Fuel's spellings: rng= schemes and transformers, a list source of images
        ds = IndexableDataset({"id": list(range(N)), "image": _images()})
        scheme = ShuffledScheme(N, 4, rng=np.random.RandomState(3))
        s = DataStream(ds, iteration_scheme=scheme)
        s = RandomFixedSizeCrop(
            s, (4, 4), which_sources=("image",), rng=np.random.RandomState(5)
        )
        s = Random2DRotation(s, 0.5, which_sources=("image",), seed=2)
        s = _Negate(s, which_sources=("id",))
    elif name == "fuel_mapping_dict":
        s = DataStream(_indexable(), iteration_scheme=ShuffledScheme(N, 5, seed=8))
        s = Mapping(s, _double_dict, add_sources=("twice",), mapping_accepts=dict)
        s = Rename(s, {"features": "x"})
        s = FilterSources(s, ("twice", "id"))
        s = ForceFloatX(Flatten(s, which_sources=("twice",)))
    elif name == "hdf5_flip":
        path = f"{workdir}/resume.hdf5"
        ds = H5PYDataset(path, ("train",))
        s = RandomFlip(DataStream(ds, iteration_scheme=ShuffledScheme(N, 4, seed=3)), seed=5)
    else:
        raise KeyError(name)
    if prefetch is not None:
        from bricks.data import Prefetch

        parallel = isinstance(s, DataStream) and s.iteration_scheme is not None
        s = Prefetch(
            s, workers=2 if parallel else 1, processes=prefetch == "processes", buffer_size=2
        )
    return s


PIPELINES = [
    "sequential",
    "shuffled",
    "examples_batch",
    "unpack_filter_batch",
    "cache",
    "bucket_padding",
    "window",
    "hdf5_flip",
    "fuel_rng_images",
    "fuel_mapping_dict",
]


def canon(item) -> list:
    """A comparable (JSON-like) form of one item of a stream."""
    out = []
    for x in item:
        x = np.asarray(x)
        if x.dtype == object:
            out.append([np.asarray(e).tolist() for e in x])
        else:
            out.append(x.tolist())
    return out


def run_epochs(stream, n_epochs: int) -> list:
    items = []
    for _ in range(n_epochs):
        items.extend(canon(b) for b in stream.get_epoch_iterator())
    return items
