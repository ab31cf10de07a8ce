"""Runs the ``python`` blocks of docs/recurrent.md (in order, one namespace)
and the ``>>>`` examples of bricks.recurrent."""

from __future__ import annotations

import doctest
import importlib
import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "recurrent.md"
# The modules of issue 3 (attention and sequence generators test their own).
MODULES = [
    "bricks.recurrent._recurrent",
    "bricks.recurrent._architectures",
    "bricks.recurrent._bidirectional",
    "bricks.recurrent._stack",
]


@pytest.mark.slow
def test_recurrent_md_runs():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 4
    namespace: dict = {"__name__": "docs_recurrent"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name}[block {i}]", "exec"), namespace)  # noqa: S102


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
