"""The layers of DESIGN.md: imports only flow down, and data never imports jax.

Every ``import`` statement under ``bricks/`` is read with ``ast`` (lazy
imports inside functions included), so an upward import anywhere fails here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "bricks"

TRAINING = {"algorithms", "main_loop", "log", "checkpoint"}
# layer -> the bricks packages it may import (besides itself and bricks.errors)
ALLOWED = {
    "core": set(),
    "recurrent": {"core"},
    "graph": {"core"},
    "data": set(),
    "distributed": {"core"},
    **{t: {"core", "graph", "data", "recurrent", "distributed"} | TRAINING for t in TRAINING},
    "extensions": {"core", "graph", "data", "recurrent", "distributed"} | TRAINING,
}
NO_JAX = {"data"}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_only_flow_down(layer):
    bad = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] == "bricks" and len(parts) > 1 and parts[1] not in ("errors", layer):
                if parts[1] not in ALLOWED[layer]:
                    bad.append(f"{path.relative_to(ROOT.parent)}:{line} imports {module}")
            if layer in NO_JAX and parts[0] in ("jax", "jaxlib", "optax"):
                bad.append(f"{path.relative_to(ROOT.parent)}:{line} imports {module}")
    assert not bad, "imports against the layers of DESIGN.md:\n" + "\n".join(bad)


def test_importing_the_data_layer_does_not_load_jax():
    code = "import sys, bricks.data, bricks.data.text; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
