"""ruff, configured in pyproject.toml, finds nothing in the project's code."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_check_is_clean():
    if shutil.which("ruff") is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    paths = ["bricks", "experiments", "tests", "bench"]
    out = subprocess.run(
        ["ruff", "check", "--output-format", "concise", *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
