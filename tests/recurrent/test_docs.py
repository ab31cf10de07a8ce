"""Runs the ``>>>`` examples of bricks.recurrent (tests/test_docs.py runs the
``python`` blocks of docs/recurrent.md)."""

from __future__ import annotations

import doctest
import importlib

import pytest

# The modules of issue 3 (attention and sequence generators test their own).
MODULES = [
    "bricks.recurrent._recurrent",
    "bricks.recurrent._architectures",
    "bricks.recurrent._bidirectional",
    "bricks.recurrent._stack",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
