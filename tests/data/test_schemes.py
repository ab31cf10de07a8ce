"""Exact request sequences of the iteration schemes (Fuel's)."""

import numpy as np
import pytest

from bricks.data import (
    ConcatenatedScheme,
    ConstantScheme,
    SequentialExampleScheme,
    SequentialScheme,
    ShuffledExampleScheme,
    ShuffledScheme,
)
from bricks.errors import SchemeError


def test_sequential_scheme():
    assert list(SequentialScheme(7, 3).get_request_iterator()) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(SequentialScheme([4, 2, 9], 2).get_request_iterator()) == [[4, 2], [9]]
    assert SequentialScheme(7, 3).num_requests() == 3


def test_constant_scheme():
    assert list(ConstantScheme(3, num_examples=7).get_request_iterator()) == [3, 3, 1]
    assert list(ConstantScheme(3, num_examples=6).get_request_iterator()) == [3, 3]
    assert list(ConstantScheme(2, times=4).get_request_iterator()) == [2, 2, 2, 2]
    it = ConstantScheme(5).get_request_iterator()
    assert [next(it) for _ in range(100)] == [5] * 100
    with pytest.raises(SchemeError):
        ConstantScheme(3, num_examples=5, times=2)
    with pytest.raises(SchemeError):
        ConstantScheme(0)


def test_example_schemes():
    assert list(SequentialExampleScheme(4).get_request_iterator()) == [0, 1, 2, 3]
    assert SequentialExampleScheme(4).requests_examples
    order = list(ShuffledExampleScheme(10, seed=3).get_request_iterator(epoch=0))
    assert sorted(order) == list(range(10)) and order != list(range(10))
    assert all(isinstance(i, int) for i in order)


def test_shuffled_scheme_seeded_and_per_epoch():
    s = ShuffledScheme(20, 6, seed=5)
    e0 = list(s.get_request_iterator(0))
    assert [len(b) for b in e0] == [6, 6, 6, 2]
    assert sorted(sum(e0, [])) == list(range(20))
    assert e0 == list(ShuffledScheme(20, 6, seed=5).get_request_iterator(0))
    e1 = list(s.get_request_iterator(1))
    assert e1 != e0 and sorted(sum(e1, [])) == list(range(20))
    assert list(ShuffledScheme(20, 6, seed=6).get_request_iterator(0)) != e0
    srt = list(ShuffledScheme(20, 6, seed=5, sorted_indices=True).get_request_iterator(0))
    assert srt == [sorted(b) for b in e0]
    assert all(type(i) is int for b in e0 for i in b)


def test_concatenated_scheme():
    s = ConcatenatedScheme([SequentialScheme(3, 2), SequentialScheme([7, 8, 9], 2)])
    assert list(s.get_request_iterator()) == [[0, 1], [2], [7, 8], [9]]
    assert s.num_requests() == 4
    with pytest.raises(SchemeError, match="mix"):
        ConcatenatedScheme([SequentialScheme(3, 2), SequentialExampleScheme(3)])


def test_bad_arguments_name_the_scheme():
    with pytest.raises(SchemeError, match="SequentialScheme"):
        SequentialScheme(10, -1)
    with pytest.raises(SchemeError, match="ShuffledScheme"):
        ShuffledScheme(np.zeros((2, 2), int).tolist(), 2)
