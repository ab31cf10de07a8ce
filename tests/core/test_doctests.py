"""Runs the ``>>>`` examples of every module of bricks.core."""

import doctest
import importlib
import pkgutil

import pytest

import bricks.core

MODULES = sorted(
    f"bricks.core.{m.name}" for m in pkgutil.iter_modules(bricks.core.__path__)
) + ["bricks.core"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
