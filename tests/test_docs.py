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


#: Guides whose examples take over ~3 s of CPU time (measured on 2 cores): they
#: run in the full suite only; what they show is tested in their area's quick tests.
SLOW = {"recurrent.md", "sequence_generators.md", "bricks.md"}


def _param(path: Path):
    return pytest.param(path, marks=pytest.mark.slow) if path.name in SLOW else path


@pytest.mark.parametrize(
    "path", [_param(p) for p in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]],
    ids=lambda p: p.name,
)
def test_doc_examples_run(path, tmp_path, monkeypatch):
    code_blocks = blocks(path)
    if not code_blocks:
        pytest.skip(f"{path.name} has no python blocks")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{path.stem}"}
    for i, code in enumerate(code_blocks):
        exec(compile(code, f"{path.name} [python block {i + 1}]", "exec"), namespace)


def test_the_slow_guides_exist():
    """A renamed guide would silently move back into the quick pass."""
    assert {p.name for p in DOCS.glob("*.md")} >= SLOW
