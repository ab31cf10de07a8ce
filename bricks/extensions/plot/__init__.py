"""Live Bokeh plots of training curves.

:class:`Plot` is the extension; :class:`PlotServer` the embedded server it
runs; ``python -m bricks.extensions.plot RUN_DIR`` serves the plots of a
persisted log from another process. Bokeh is imported only when a plot is
made, so importing :mod:`bricks.extensions` stays fast.
"""

from typing import Any

from bricks.extensions.plot._channels import group_by_quantity, normalize_channels
from bricks.extensions.plot._extension import Plot

__all__ = ["Plot", "PlotServer", "normalize_channels", "group_by_quantity", "serve_log"]


def __getattr__(name: str) -> Any:
    if name == "PlotServer":
        from bricks.extensions.plot._server import PlotServer

        return PlotServer
    if name == "serve_log":
        from bricks.extensions.plot._follow import serve_log

        return serve_log
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
