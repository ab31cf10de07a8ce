"""Helpers shared by the example configs (glue around bricks' own extensions)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from bricks.extensions.checkpoint import Checkpoint
from bricks.extensions.plot import Plot
from experiments.run import CHECKPOINT_DIR

__all__ = ["checkpoint_and_plot"]


def checkpoint_and_plot(
    config: dict[str, Any], run_dir: str, channels: Sequence[Sequence[str]]
) -> list[Any]:
    """A :class:`Checkpoint` into ``run_dir/checkpoints`` and a :class:`Plot` of ``channels``.

    Config keys read:

    * ``checkpoint_every_n_epochs`` / ``checkpoint_every_n_batches``: how often
      to save (0 or absent: only at the end and on an interrupt, which the
      checkpoint always does);
    * ``plot``: ``False`` for no plot; otherwise the static page
      ``<run-dir-name>.html`` is written into ``run_dir`` at the end;
    * ``plot_server``: also serve the live plot while training (default
      ``True``; its URL is printed when training starts);
    * ``plot_every_n_batches``: hand new values to the plot every this many
      batches (default: when the checkpoint saves, else after every epoch).
      Monitor the plotted channels at least as often, or the points wait
      for the next monitoring.

    Put these *after* the monitoring extensions, so that they see this
    iteration's records.
    """
    conditions = {
        key.removeprefix("checkpoint_"): int(config[key])
        for key in ("checkpoint_every_n_epochs", "checkpoint_every_n_batches")
        if int(config.get(key) or 0) > 0
    }
    extensions: list[Any] = [
        Checkpoint(os.path.join(run_dir, CHECKPOINT_DIR), keep_last=2, **conditions)
    ]
    if config.get("plot", True):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(os.path.normpath(run_dir)))
        plot_every = int(config.get("plot_every_n_batches") or 0)
        every = {"every_n_batches": plot_every} if plot_every > 0 else conditions
        every = every or {"after_epoch": True}
        extensions.append(
            Plot(
                name or "plots",
                channels=[list(c) for c in channels],
                html_path=os.path.join(run_dir, f"{name}.html"),
                serve=bool(config.get("plot_server", True)),
                **every,
            )
        )
    return extensions
