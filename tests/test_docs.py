"""Runs the ```python blocks of README.md and of every docs/*.md file.

The blocks of one file run in order in one namespace, in a temporary working
directory. A block whose first line is ``# skip-test`` is skipped.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(path: Path) -> list[str]:
    return [
        code for code in BLOCK.findall(path.read_text())
        if code.strip().splitlines()[:1] != ["# skip-test"]
    ]


@pytest.mark.parametrize(
    "path", [ROOT / "README.md", *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name
)
def test_doc_examples_run(path, tmp_path, monkeypatch):
    code_blocks = blocks(path)
    if not code_blocks:
        pytest.skip(f"{path.name} has no python blocks")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{path.stem}"}
    for i, code in enumerate(code_blocks):
        exec(compile(code, f"{path.name} [python block {i + 1}]", "exec"), namespace)
