"""Malformed checkpoints: every one raises a documented bricks error and none allocates
what it declares (caps on sizes, nesting and entries are checked before reading)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from bricks.checkpoint import find_checkpoint, load_parameters, read_checkpoint, write_checkpoint
from bricks.checkpoint.__main__ import main as inspect
from bricks.errors import CheckpointError

FILES = ("arrays.bin", "state.json", "manifest.json")


def _good(directory: Path) -> Path:
    arrays = {
        "algorithm/params//mlp/linear_0.W": np.arange(12, dtype=np.float32).reshape(3, 4),
        "algorithm/params//mlp/linear_0.b": np.zeros(4, np.float64),
        "algorithm/rng_key": np.array([1, 2], np.uint32),
    }
    state = {"format": "bricks.main_loop/1", "log": {"status": {"iterations_done": 3}}}
    return write_checkpoint(directory, "ckpt-000000003", state, arrays, {"step": 3})


def _reseal(ckpt: Path) -> None:
    """Rewrite the manifest for the files as they are now (a crafted, 'consistent' file)."""
    files = {
        name: {
            "size": (ckpt / name).stat().st_size,
            "sha256": hashlib.sha256((ckpt / name).read_bytes()).hexdigest(),
        }
        for name in ("arrays.bin", "state.json")
    }
    doc = {"format": "bricks.checkpoint/2", "files": files}
    (ckpt / "manifest.json").write_text(json.dumps(doc))


def _edit_state(ckpt: Path, change) -> None:
    doc = json.loads((ckpt / "state.json").read_text())
    change(doc)
    (ckpt / "state.json").write_text(json.dumps(doc))
    _reseal(ckpt)


#: far above a real load of the tiny checkpoints here, far below what a forged
#: header declares (gigabytes): an allocation of a declared size shows up here
MAX_PEAK_BYTES = 64 << 20


@contextlib.contextmanager
def _peak_memory():
    """Peak bytes allocated (Python and numpy, via tracemalloc) inside the block."""
    tracemalloc.start()
    result = {}
    try:
        yield lambda: result["peak"]
    finally:
        result["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def _load_all_ways(ckpt: Path) -> None:
    """Every reader; each either succeeds or raises a CheckpointError, and never
    allocates what a malformed file declares (sizes are checked first)."""
    for reader in (
        lambda: read_checkpoint(ckpt),
        lambda: read_checkpoint(ckpt, verify=False),
        lambda: find_checkpoint(ckpt.parent),
        lambda: load_parameters(ckpt.parent),
    ):
        with _peak_memory() as peak:
            try:
                reader()
            except CheckpointError:
                pass
        assert peak() < MAX_PEAK_BYTES, f"a load allocated {peak()} bytes"
    assert inspect(["show", str(ckpt)]) in (0, 1, 2)


def _mutations(rng: random.Random):
    for _ in range(30):
        name = rng.choice(FILES)
        yield f"flip {name}", name, lambda b: _flip(b, rng)
    for _ in range(15):
        name = rng.choice(FILES)
        yield f"truncate {name}", name, lambda b: b[: rng.randrange(len(b))]


def _flip(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def test_byte_flips_and_truncations(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = random.Random(19)
    for k, (_what, name, mutate) in enumerate(_mutations(rng)):
        ckpt = _good(tmp_path / f"case{k}")
        path = ckpt / name
        path.write_bytes(mutate(path.read_bytes()))
        _load_all_ways(ckpt)
        with pytest.raises(CheckpointError):
            read_checkpoint(ckpt)  # the manifest catches every change
        shutil.rmtree(ckpt.parent)


@pytest.mark.parametrize(
    "case",
    [
        "nested_state",
        "nested_manifest",
        "huge_shape",
        "many_dims",
        "zero_by_huge",
        "many_entries",
        "meta_list",
        "offset_bool",
        "manifest_list",
        "big_json",
    ],
)
def test_crafted_but_consistent_files(tmp_path: Path, case: str) -> None:
    ckpt = _good(tmp_path)
    entry = "algorithm/params//mlp/linear_0.W"
    if case == "nested_state":
        (ckpt / "state.json").write_text("[" * 100_000 + "]" * 100_000)
        _reseal(ckpt)
    elif case == "nested_manifest":
        (ckpt / "manifest.json").write_text('{"a":' * 50_000 + "1" + "}" * 50_000)
    elif case == "huge_shape":
        _edit_state(
            ckpt,
            lambda d: d["arrays"][entry].update(shape=[1 << 40, 1 << 40], nbytes=(1 << 80) * 4),
        )
    elif case == "many_dims":
        _edit_state(ckpt, lambda d: d["arrays"][entry].update(shape=[1] * 100, nbytes=4))
    elif case == "zero_by_huge":
        _edit_state(ckpt, lambda d: d["arrays"][entry].update(shape=[0, 1 << 62], nbytes=0))
    elif case == "many_entries":
        _edit_state(
            ckpt,
            lambda d: d["arrays"].update(
                {
                    f"x{i}": {"offset": 16, "nbytes": 4, "shape": [1], "dtype": "float32"}
                    for i in range(100_000)
                }
            ),
        )
    elif case == "meta_list":
        _edit_state(ckpt, lambda d: d.update(meta=[1, 2]))
    elif case == "offset_bool":
        _edit_state(ckpt, lambda d: d["arrays"][entry].update(offset=None))
    elif case == "manifest_list":
        (ckpt / "manifest.json").write_text("[1, 2, 3]")
    elif case == "big_json":
        (ckpt / "state.json").write_text(" " * (1 << 20) + "{}")
        _reseal(ckpt)
    with _peak_memory() as peak, pytest.raises(CheckpointError):
        read_checkpoint(ckpt)
    assert peak() < MAX_PEAK_BYTES, f"a load allocated {peak()} bytes"
    _load_all_ways(ckpt)
