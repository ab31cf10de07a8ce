"""Fuel's tests/test_schemes.py, in bricks.data's spelling."""

import json

import numpy as np
import pytest

from bricks.data import (
    ConcatenatedScheme,
    ConstantScheme,
    DataStream,
    IndexableDataset,
    SequentialExampleScheme,
    SequentialScheme,
    ShuffledExampleScheme,
    ShuffledScheme,
    cross_validation,
)


def requests(scheme_class, *args, **kwargs):
    return scheme_class(*args, **kwargs).get_request_iterator()


@pytest.mark.ported("tests/test_schemes.py::test_constant_scheme")
def test_constant_scheme():
    assert list(requests(ConstantScheme, 3, num_examples=7)) == [3, 3, 1]
    assert list(requests(ConstantScheme, 3, num_examples=9)) == [3, 3, 3]
    assert list(requests(ConstantScheme, 3, num_examples=2)) == [2]
    assert list(requests(ConstantScheme, 2, times=3)) == [2, 2, 2]
    assert list(requests(ConstantScheme, 3, times=1)) == [3]
    it = requests(ConstantScheme, 3)
    assert all(next(it) == 3 for _ in range(10))
    with pytest.raises(ValueError, match="not both"):
        requests(ConstantScheme, 10, 2, 2)
    assert not ConstantScheme(3, 3).requests_examples


@pytest.mark.ported("tests/test_schemes.py::test_sequential_scheme")
def test_sequential_scheme():
    assert list(requests(SequentialScheme, 5, 3)) == [[0, 1, 2], [3, 4]]
    assert list(requests(SequentialScheme, 4, 2)) == [[0, 1], [2, 3]]
    assert list(requests(SequentialScheme, [4, 3, 2, 1, 0], 3)) == [[4, 3, 2], [1, 0]]
    assert list(requests(SequentialScheme, [3, 2, 1, 0], 2)) == [[3, 2], [1, 0]]
    assert not SequentialScheme(3, 3).requests_examples


def _fuel_order(indices, seed=3):
    indices = list(indices)
    np.random.RandomState(seed).shuffle(indices)
    return indices


@pytest.mark.ported("tests/test_schemes.py::test_shuffled_scheme_sorted_indices")
def test_shuffled_scheme_sorted_indices():
    indices = _fuel_order(range(7))
    rng = np.random.RandomState(3)
    expected = [sorted(indices[:3]), sorted(indices[3:6]), sorted(indices[6:])]
    assert list(requests(ShuffledScheme, 7, 3, rng=rng, sorted_indices=True)) == expected
    assert list(requests(ShuffledScheme, 7, 3, rng=rng, sorted_indices=True)) != expected

    expected = _fuel_order(list(range(6))[::-1])
    rng = np.random.RandomState(3)
    assert list(
        requests(ShuffledScheme, list(range(6))[::-1], 3, rng=rng, sorted_indices=True)
    ) == [sorted(expected[:3]), sorted(expected[3:6])]


@pytest.mark.ported("tests/test_schemes.py::test_shuffled_scheme_unsorted_indices")
def test_shuffled_scheme_unsorted_indices():
    indices = _fuel_order(range(7))
    rng = np.random.RandomState(3)
    expected = [indices[:3], indices[3:6], indices[6:]]
    assert list(requests(ShuffledScheme, 7, 3, rng=rng, sorted_indices=False)) == expected
    assert list(requests(ShuffledScheme, 7, 3, rng=rng, sorted_indices=False)) != expected

    expected = _fuel_order(list(range(6))[::-1])
    rng = np.random.RandomState(3)
    assert list(
        requests(ShuffledScheme, list(range(6))[::-1], 3, rng=rng, sorted_indices=False)
    ) == [expected[:3], expected[3:6]]


@pytest.mark.ported("tests/test_schemes.py::test_shuffled_scheme_requests_batches")
def test_shuffled_scheme_requests_batches():
    assert not ShuffledScheme(3, 3).requests_examples


@pytest.mark.ported("tests/test_schemes.py::test_shuffled_example_scheme")
def test_shuffled_example_scheme():
    rng = np.random.RandomState(3)
    assert list(requests(ShuffledExampleScheme, 7, rng=rng)) == _fuel_order(range(7))


@pytest.mark.ported("tests/test_schemes.py::test_shuffled_example_scheme_no_rng")
def test_shuffled_example_scheme_no_rng():
    assert ShuffledExampleScheme(7).rng is not None


def test_shuffled_scheme_with_rng_resumes_exactly():
    """bricks: a stream over ShuffledScheme(rng=...) keeps the JSON state contract."""

    def build():
        ds = IndexableDataset({"x": np.arange(10)})
        scheme = ShuffledScheme(10, 3, rng=np.random.RandomState(3))
        return DataStream(ds, iteration_scheme=scheme)

    a = build()
    full = [b[0].tolist() for _ in range(2) for b in a.get_epoch_iterator()]
    assert full[:4] != full[4:]
    b = build()
    it = b.get_epoch_iterator()
    head = [next(it)[0].tolist() for _ in range(2)]
    state = json.loads(json.dumps(b.get_state()))
    c = build()
    c.set_state(state)
    rest = [x[0].tolist() for _ in range(2) for x in c.get_epoch_iterator()]
    assert head + rest == full


@pytest.mark.ported("tests/test_schemes.py::test_shuffled_example_scheme_requests_examples")
def test_shuffled_example_scheme_requests_examples():
    assert ShuffledExampleScheme(3).requests_examples


@pytest.mark.ported("tests/test_schemes.py::test_sequential_example_scheme")
def test_sequential_example_scheme():
    assert list(requests(SequentialExampleScheme, 7)) == list(range(7))
    assert list(requests(SequentialExampleScheme, range(7)[::-1])) == list(range(7)[::-1])


@pytest.mark.ported("tests/test_schemes.py::test_sequential_example_scheme_requests_examples")
def test_sequential_example_scheme_requests_examples():
    assert SequentialExampleScheme(3).requests_examples


@pytest.mark.ported("tests/test_schemes.py::test_concatenated_scheme")
def test_concatenated_scheme():
    sch = ConcatenatedScheme(
        schemes=[
            ConstantScheme(batch_size=10, times=5),
            ConstantScheme(batch_size=20, times=3),
            ConstantScheme(batch_size=30, times=1),
        ]
    )
    assert list(sch.get_request_iterator()) == [10] * 5 + [20] * 3 + [30]


@pytest.mark.ported(
    "tests/test_schemes.py::test_concatenated_scheme_raises_value_error_on_different_request_types"
)
def test_concatenated_scheme_raises_value_error_on_different_request_types():
    with pytest.raises(ValueError, match="mix"):
        ConcatenatedScheme(
            [ConstantScheme(batch_size=10, times=5), SequentialExampleScheme(examples=3)]
        )


@pytest.mark.ported("tests/test_schemes.py::test_concatenated_scheme_infers_request_type")
def test_concatenated_scheme_infers_request_type():
    assert not ConcatenatedScheme(
        schemes=[ConstantScheme(batch_size=10, times=5), ConstantScheme(batch_size=10, times=5)]
    ).requests_examples
    assert ConcatenatedScheme(
        schemes=[SequentialExampleScheme(examples=10), SequentialExampleScheme(examples=10)]
    ).requests_examples


def _twice(scheme):
    first = list(scheme.get_request_iterator())
    assert list(scheme.get_request_iterator()) == first  # indices are not depleted
    return first


@pytest.mark.ported("tests/test_schemes.py::test_cross_validation")
def test_cross_validation():
    cross = cross_validation(SequentialExampleScheme, 10, 3)
    with pytest.raises(ValueError, match="strict=False"):
        next(cross)

    cross = cross_validation(SequentialExampleScheme, 10, 3, False)
    train, valid, valid_size = next(cross)
    assert _twice(train) == list(range(3, 10))
    assert _twice(valid) == list(range(0, 3))
    assert valid_size == 3
    train, valid, valid_size = next(cross)
    assert _twice(train) == list(range(0, 3)) + list(range(6, 10))
    assert _twice(valid) == list(range(3, 6))
    assert valid_size == 3
    train, valid, valid_size = next(cross)
    assert _twice(train) == list(range(0, 6))
    assert _twice(valid) == list(range(6, 10))
    assert valid_size == 4
    with pytest.raises(StopIteration):
        next(cross)

    cross = cross_validation(SequentialScheme, 8, 2, batch_size=2)
    train, valid = next(cross)
    assert _twice(train) == [[4, 5], [6, 7]]
    assert _twice(valid) == [[0, 1], [2, 3]]
    train, valid = next(cross)
    assert _twice(train) == [[0, 1], [2, 3]]
    assert _twice(valid) == [[4, 5], [6, 7]]
    with pytest.raises(StopIteration):
        next(cross)
