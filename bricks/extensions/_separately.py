"""What ``Checkpoint(save_separately=[...])`` writes beside each checkpoint.

Blocks wrote attributes of the main loop (``"log"``, ``"model"``) into
files of their own next to the pickled main loop. bricks never pickles, so
each supported name has an open format, written atomically (a temporary
name, then a rename) into the checkpoint's directory:

=============  ====================================================
name           file
=============  ====================================================
parameters     ``parameters.npz``: the trained values by path, for
               inference (``numpy.load(path)`` with no pickle)
model          ``model.npz``: the model's parameter values by path
log            ``log.json``: the training log (status and rows)
=============  ====================================================
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bricks.errors import CheckpointWriteError, MissingAttributeError

__all__ = ["SEPARATE_NAMES", "check_separately", "write_separately"]

SEPARATE_NAMES = ("parameters", "model", "log")


def check_separately(main_loop: Any, names: Sequence[str]) -> None:
    """Raise before anything is written when a name cannot be saved separately."""
    for name in names:
        if name in SEPARATE_NAMES:
            continue
        try:
            getattr(main_loop, name)
        except AttributeError:
            raise MissingAttributeError(
                f"Checkpoint(save_separately=...) names {name!r}, which the main loop does "
                f"not have; names that can be saved separately: {list(SEPARATE_NAMES)}"
            ) from None
        raise CheckpointWriteError(
            f"Checkpoint(save_separately=...) names main_loop.{name}, which has no open "
            f"format (bricks never pickles); names that can be: {list(SEPARATE_NAMES)}"
        )


def _values(owner: Any) -> dict[str, np.ndarray]:
    for method in ("parameter_values", "get_parameter_values"):
        if hasattr(owner, method):
            return {k: np.asarray(v) for k, v in getattr(owner, method)().items()}
    raise CheckpointWriteError(
        f"cannot save the parameters of a {type(owner).__name__} separately: it has "
        "neither parameter_values() nor get_parameter_values()"
    )


def _atomic(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_separately(main_loop: Any, names: Sequence[str], directory: Path) -> list[Path]:
    """Write each name's file into ``directory``; returns the paths written."""
    check_separately(main_loop, names)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        if name == "log":
            path = directory / "log.json"
            text = json.dumps(main_loop.log.get_state()).encode()
            _atomic(path, lambda f, text=text: f.write(text))
        else:
            owner = main_loop.algorithm if name == "parameters" else main_loop.model
            values = _values(owner)
            path = directory / f"{name}.npz"
            _atomic(path, lambda f, values=values: np.savez(f, **values))
        written.append(path)
    return written
