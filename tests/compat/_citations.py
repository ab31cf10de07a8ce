"""What the compat suites port, and which ported test cites which original.

Each ``*.txt`` manifest beside this module lists every test function of the
original suite (``path::name`` or ``path::Class::name``), generated once from
mila-iqia/blocks and mila-iqia/fuel (the originals are not needed to run the
tests). A compat test cites the originals it pins with the ``ported`` marker::

    @pytest.mark.ported("tests/bricks/test_bricks.py::test_linear")
    def test_linear(): ...

An original may be cited by several tests; it counts as passing only when all
of them pass. ``report.py`` prints the counts; ``test_citations.py`` checks
that every citation names a manifest entry and every strict xfail reason is
in ``docs/porting.md``.
"""

from __future__ import annotations

import ast
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
SUITES = {
    "blocks_model": ("Blocks", "model-side", HERE / "blocks_model.txt"),
    "blocks_training": ("Blocks", "training-side", HERE / "blocks_training.txt"),
    "fuel": ("Fuel", "", HERE / "fuel.txt"),
}


def manifest(suite: str) -> list[str]:
    """The original test functions of one suite, in the originals' order."""
    lines = SUITES[suite][2].read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _marker_calls(tree: ast.AST, attr: str):
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == attr
            and isinstance(node.func.value, ast.Attribute)
            and node.func.value.attr == "mark"
        ):
            yield node


def static_citations() -> dict[str, list[str]]:
    """Every ``ported(...)`` string in the compat test files, by file."""
    found: dict[str, list[str]] = {}
    for path in sorted(HERE.rglob("test_*.py")):
        tree = ast.parse(path.read_text())
        for call in _marker_calls(tree, "ported"):
            for arg in call.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.setdefault(str(path.relative_to(ROOT)), []).append(arg.value)
    return found


def static_xfail_reasons() -> dict[str, list[str]]:
    """Every literal ``reason=`` of an ``xfail`` mark in the compat test files."""
    found: dict[str, list[str]] = {}
    for path in sorted(HERE.rglob("test_*.py")):
        tree = ast.parse(path.read_text())
        for call in _marker_calls(tree, "xfail"):
            for kw in call.keywords:
                if kw.arg == "reason" and isinstance(kw.value, ast.Constant):
                    found.setdefault(str(path.relative_to(ROOT)), []).append(kw.value.value)
    return found
