"""``python -m bricks.checkpoint show``: file and array sizes in binary units."""

from __future__ import annotations

import io

import numpy as np

from bricks.checkpoint import write_checkpoint
from bricks.checkpoint.__main__ import show


def test_show_gives_sizes_in_binary_units(tmp_path):
    arrays = {"algorithm/params//linear.W": np.zeros((64, 32), np.float32)}  # 8192 bytes
    ckpt = write_checkpoint(tmp_path, "ckpt-000000001", {"log": {}}, arrays, {"step": 1})
    out = io.StringIO()
    show(ckpt, out)
    text = out.getvalue()
    assert "arrays: 1 (8.0 KiB)" in text
    for f in ckpt.iterdir():
        size = f.stat().st_size
        shown = f"{size} B" if size < 1024 else f"{size / 1024:.1f} KiB"
        assert f"  {f.name:<16} {shown:>10}" in text
