"""Helpers shared by the example configs (only glue around bricks' own extensions)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

__all__ = ["checkpoint_and_plot"]


def checkpoint_and_plot(
    config: dict[str, Any], run_dir: str, channels: Sequence[Sequence[str]]
) -> list[Any]:
    """A ``Checkpoint`` into ``run_dir`` and a ``Plot`` writing its static file there.

    Uses ``config["checkpoint_every_n_epochs"]`` or
    ``config["checkpoint_every_n_batches"]`` (0 or absent: only at the end) and
    ``config["plot"]`` (False: no plot). Either extension is left out, with a
    note on stderr, while its module is not available in this bricks.
    """
    extensions: list[Any] = []
    try:
        from bricks.extensions import Checkpoint  # type: ignore[attr-defined]
    except ImportError:
        Checkpoint = None
    if Checkpoint is not None:
        kwargs = {
            key: int(config[key])
            for key in ("checkpoint_every_n_epochs", "checkpoint_every_n_batches")
            if int(config.get(key) or 0) > 0
        }
        kwargs = {key.removeprefix("checkpoint_"): n for key, n in kwargs.items()}
        extensions.append(Checkpoint(run_dir, **kwargs))
    if config.get("plot", True):
        try:
            from bricks.extensions import Plot  # type: ignore[attr-defined]
        except ImportError:
            Plot = None
        if Plot is not None:
            name = os.path.basename(os.path.normpath(run_dir))
            extensions.append(Plot(name, channels=[list(c) for c in channels], output_dir=run_dir))
    return extensions
