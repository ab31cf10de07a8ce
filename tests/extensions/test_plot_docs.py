"""Run the ```python blocks of docs/plot.md in order (```text blocks are commands)."""

import pathlib
import re
import threading

DOC = pathlib.Path(__file__).parents[2] / "docs" / "plot.md"


def test_plot_doc_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert blocks
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    assert "Serving live plots of 'regression' at http://127.0.0.1:" in capsys.readouterr().out
    assert not [t for t in threading.enumerate() if t.name.startswith("bricks-plot")]
