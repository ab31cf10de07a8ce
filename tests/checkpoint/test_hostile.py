"""Crafted checkpoints that try to run code are refused; nothing is ever executed.

Each crafted checkpoint has a *consistent* manifest (right sizes and sha256),
so it is the reader's refusal to unpickle or import, not the checksum, that
stops it. The payloads would create a marker file if anything ran them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bricks.checkpoint import load_parameters, read_checkpoint, write_checkpoint
from bricks.errors import CheckpointError, UnsafeCheckpointError


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # what an attacker's pickle does on load
        return (os.system, (f"touch {self.marker}",))


def _reseal(path: Path) -> None:
    """Rewrite the manifest so it matches whatever the files now hold."""
    manifest = json.loads((path / "manifest.json").read_text())
    for name in manifest["files"]:
        data = (path / name).read_bytes()
        manifest["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (path / "manifest.json").write_text(json.dumps(manifest))


def _base(tmp_path: Path) -> Path:
    return write_checkpoint(
        tmp_path / "run", "ckpt-000000001", {"x": 1}, {"algorithm/params//w": np.zeros(2)}
    )


def _craft(tmp_path: Path, kind: str, marker: Path) -> Path:
    path = _base(tmp_path)
    payload = _Payload(str(marker))
    if kind == "pickle_file":  # arrays.bin replaced by a raw pickle
        (path / "arrays.bin").write_bytes(pickle.dumps(payload))
    elif kind == "object_array":  # arrays.bin replaced by an npz holding a pickled object array
        buf = io.BytesIO()
        np.savez(buf, a0=np.array([payload, 1], dtype=object))
        (path / "arrays.bin").write_bytes(buf.getvalue())
    elif kind == "npy_pickle":  # a .npy whose header declares dtype object
        buf = io.BytesIO()
        np.save(buf, np.array([payload], dtype=object), allow_pickle=True)
        (path / "arrays.bin").write_bytes(buf.getvalue())
    elif kind == "header_then_pickle":  # the right header, then a pickle, dtype object
        data = (path / "arrays.bin").read_bytes()
        (path / "arrays.bin").write_bytes(data[:64] + pickle.dumps(payload))
        doc = json.loads((path / "state.json").read_text())
        doc["arrays"]["algorithm/params//w"].update(dtype="object", nbytes=16)
        (path / "state.json").write_text(json.dumps(doc))
    elif kind in ("class_key", "py_object", "target", "bad_dtype"):
        doc = json.loads((path / "state.json").read_text())
        if kind == "class_key":
            doc["state"]["ext"] = {"__class__": "os.system", "args": [f"touch {marker}"]}
        elif kind == "py_object":
            doc["state"]["ext"] = {"py/object": "subprocess.Popen"}
        elif kind == "target":
            doc["meta"]["_target_"] = "os.system"
        else:
            doc["arrays"]["algorithm/params//w"]["dtype"] = "object"
        (path / "state.json").write_text(json.dumps(doc))
    else:  # pragma: no cover
        raise AssertionError(kind)
    _reseal(path)
    return path


KINDS = [
    "pickle_file",
    "object_array",
    "npy_pickle",
    "header_then_pickle",
    "class_key",
    "py_object",
    "target",
    "bad_dtype",
]


@pytest.mark.parametrize("kind", KINDS)
def test_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "pwned"
    path = _craft(tmp_path, kind, marker)
    with pytest.raises(UnsafeCheckpointError, match=str(path)):
        read_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_parameters(path)
    assert not marker.exists()


def test_inspector_refuses_without_running_anything(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _craft(tmp_path, "object_array", marker)
    out = subprocess.run(
        [sys.executable, "-m", "bricks.checkpoint", "show", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and "refused" in (out.stdout + out.stderr)
    assert not marker.exists()


def test_the_marker_payload_really_would_fire(tmp_path: Path) -> None:
    """Sanity check of the test itself: unpickling the payload does create the marker."""
    marker = tmp_path / "fired"
    pickle.loads(pickle.dumps(_Payload(str(marker))))  # noqa: S301 - deliberate
    assert marker.exists()
