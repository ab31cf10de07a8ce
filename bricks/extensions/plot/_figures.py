"""The Bokeh figures of a plot document, and its static HTML snapshot.

Each group of channels is one figure (x: iterations done); each channel is
one line drawn from its own :class:`~bokeh.models.ColumnDataSource`, which is
*named after the channel* so a page script (or a test) finds it with
``Bokeh.documents[0].get_model_by_name("train_cost")``. The source has the
columns ``x`` (iterations) and ``y`` (values).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence

from bokeh.embed import file_html
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, HoverTool, LayoutDOM, TabPanel, Tabs
from bokeh.palettes import Category10_10
from bokeh.plotting import figure
from bokeh.resources import INLINE

from bricks.errors import PlotError

__all__ = ["build_layout", "write_static_html"]

History = Mapping[str, tuple[Sequence[float], Sequence[float]]]


def _y_label(group: Sequence[str]) -> str:
    """The quantity a group of channels shares (``train_cost, valid_cost`` -> ``cost``)."""
    tails = {channel.rsplit("_", 1)[-1] for channel in group}
    if len(group) == 1:
        return group[0]
    return tails.pop() if len(tails) == 1 else "value"


def _figure(title: str, name: str, y_label: str, log: bool):
    fig = figure(
        title=title,
        name=name,
        x_axis_label="iterations",
        y_axis_label=y_label + (" (log scale)" if log else ""),
        y_axis_type="log" if log else "linear",
        min_height=200,
        sizing_mode="stretch_both",
        tools="pan,wheel_zoom,box_zoom,reset,save",
    )
    return fig


def build_layout(
    title: str, groups: Sequence[Sequence[str]], history: History
) -> tuple[LayoutDOM, dict[str, ColumnDataSource]]:
    """One panel per group, filled with ``history``; returns the layout and the sources.

    A panel holds two figures over the same sources, shown as tabs: a linear
    y axis and a log one (costs often span decades). The layout stretches to
    the page: the panels share its height.
    """
    sources: dict[str, ColumnDataSource] = {}
    for group in groups:
        for channel in group:
            xs, ys = history.get(channel, ((), ()))
            sources[channel] = ColumnDataSource(data={"x": list(xs), "y": list(ys)}, name=channel)
    panels = []
    for index, group in enumerate(groups):
        caption = ", ".join(group) if len(groups) > 1 else f"{title}: {', '.join(group)}"
        tabs = []
        for log in (False, True):
            name = f"figure_{index}" + ("_log" if log else "")
            fig = _figure(caption, name, _y_label(group), log)
            for k, channel in enumerate(group):
                color = Category10_10[k % len(Category10_10)]
                suffix = "_log" if log else ""
                line = fig.line(
                    "x",
                    "y",
                    source=sources[channel],
                    legend_label=channel,
                    color=color,
                    line_width=2,
                    name=f"line_{channel}{suffix}",
                )
                fig.scatter("x", "y", source=sources[channel], color=color, size=3)
                fig.add_tools(
                    HoverTool(
                        renderers=[line],
                        tooltips=[("channel", channel), ("iteration", "@x"), ("value", "@y")],
                    )
                )
            fig.legend.location = "top_right"
            fig.legend.click_policy = "hide"
            tabs.append(TabPanel(child=fig, title="log y" if log else "linear y"))
        panels.append(Tabs(tabs=tabs, sizing_mode="stretch_both", name=f"panel_{index}"))
    return column(*panels, sizing_mode="stretch_both", name="plots"), sources


def write_static_html(
    path: str | os.PathLike, title: str, groups: Sequence[Sequence[str]], history: History
) -> str:
    """Write a self-contained HTML page of the plots (Bokeh JS inlined: works offline).

    The file is written to a temporary name and renamed into place, so a
    reader never sees half a page. Returns the path written.
    """
    path = os.fspath(path)
    layout, _ = build_layout(title, groups, history)
    html = file_html(layout, INLINE, title=title)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".plot-", suffix=".html.tmp", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
        os.replace(tmp, path)
    except OSError as error:
        raise PlotError(f"cannot write the static plot page {path!r}: {error}") from error
    return path
