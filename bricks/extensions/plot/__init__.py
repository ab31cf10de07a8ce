"""Live Bokeh plots of training curves: :class:`Plot`, :class:`PlotServer` and ``python -m bricks.extensions.plot``."""

from bricks.extensions.plot._channels import group_by_quantity, normalize_channels
from bricks.extensions.plot._server import PlotServer

__all__ = ["PlotServer", "normalize_channels", "group_by_quantity"]
