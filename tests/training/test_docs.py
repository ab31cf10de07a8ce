"""Run the ```python blocks of docs/training.md in order."""

import pathlib
import re

DOC = pathlib.Path(__file__).parents[2] / "docs" / "training.md"


def test_training_doc_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
