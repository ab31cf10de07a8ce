"""The examples of docs/data.md run as written."""

import os
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "data.md"


def test_doc_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), {"__name__": "docs_data"})
    assert os.path.exists(tmp_path / "mnist_like.hdf5")


@pytest.mark.parametrize("module", ["_schemes", "_datasets", "_streams", "_transformers",
                                    "_batching", "_sequences", "_image", "_named", "_hdf5",
                                    "_prefetch", "_text"])
def test_docstring_examples(module):
    import doctest
    import importlib

    mod = importlib.import_module(f"bricks.data.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
