"""An in-memory DataStream serves each batch with one fancy index per source."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bricks.data import DataStream, IndexableDataset, SequentialScheme, ShuffledScheme
from bricks.errors import DataIndexError


def _dataset() -> IndexableDataset:
    rng = np.random.RandomState(0)
    return IndexableDataset(
        {"x": rng.randn(23, 3).astype(np.float32), "y": np.arange(23), "z": rng.randn(23)}
    )


SCHEMES = [
    lambda: SequentialScheme(23, 5),
    lambda: ShuffledScheme(23, 4, seed=7),
    lambda: ShuffledScheme(23, 6, seed=2, sorted_indices=True),
    lambda: ShuffledScheme(list(range(3, 20)), 4, seed=1),
]


def _reference(ds, scheme, epoch, sources):
    """The batches as the scheme's list requests read through get_data give them."""
    out = []
    for request in scheme.get_request_iterator(epoch):
        data = dict(zip(ds.sources, ds.get_data(None, request), strict=True))
        out.append({s: data[s] for s in sources})
    return out


@pytest.mark.parametrize("make", SCHEMES)
@pytest.mark.parametrize("sources", [("x", "y", "z"), ("z", "x")])
def test_batches_equal_the_request_path_and_never_call_get_data(make, sources):
    ds = _dataset()
    stream = DataStream(ds, iteration_scheme=make())
    stream.sources = sources
    calls = []
    ds.get_data = lambda *a: calls.append(a)  # the per-request path is not taken
    for epoch in range(2):
        got = list(stream.get_epoch_iterator(as_dict=True))
        want = _reference(_dataset(), make(), epoch, sources)
        assert_same_batches(got, want, sources)
    assert calls == []


def assert_same_batches(got, want, sources):
    """The same batches (dicts of ``sources``, in that order), values and dtypes."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert list(g) == list(sources)
        for s in sources:
            np.testing.assert_array_equal(g[s], w[s])
            assert g[s].dtype == w[s].dtype


def test_mid_epoch_resume_from_json_state():
    def make():
        return DataStream(_dataset(), iteration_scheme=ShuffledScheme(23, 4, seed=3))

    stream = make()
    next(stream.get_epoch_iterator())  # epoch 0 done partly...
    it = stream.get_epoch_iterator()
    next(it), next(it)
    saved = json.dumps(stream.get_state())
    rest = [b[0] for b in it] + [b[0] for b in stream.get_epoch_iterator()]
    other = make()
    other.set_state(json.loads(saved))
    again = [b[0] for b in other.get_epoch_iterator()] + [b[0] for b in other.get_epoch_iterator()]
    assert len(again) == len(rest)
    for a, b in zip(again, rest, strict=True):
        np.testing.assert_array_equal(a, b)


def test_an_index_past_the_end_is_refused_at_the_epoch_start():
    stream = DataStream(_dataset(), iteration_scheme=SequentialScheme(30, 5))
    with pytest.raises(DataIndexError, match="23 examples.*index 23"):
        next(stream.get_epoch_iterator())


def test_list_sources_keep_the_request_path():
    ds = IndexableDataset({"x": [np.zeros(i) for i in range(5)]})
    batches = list(DataStream(ds, iteration_scheme=SequentialScheme(5, 2)).get_epoch_iterator())
    assert [len(b[0]) for b in batches] == [2, 2, 1]
    assert isinstance(batches[0][0], list)
