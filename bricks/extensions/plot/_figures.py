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
from bokeh.models import ColumnDataSource, LayoutDOM
from bokeh.palettes import Category10_10
from bokeh.plotting import figure
from bokeh.resources import INLINE

from bricks.errors import PlotError

__all__ = ["build_layout", "write_static_html"]

History = Mapping[str, tuple[Sequence[float], Sequence[float]]]


def build_layout(
    title: str, groups: Sequence[Sequence[str]], history: History
) -> tuple[LayoutDOM, dict[str, ColumnDataSource]]:
    """One figure per group, filled with ``history``; returns the layout and the sources."""
    sources: dict[str, ColumnDataSource] = {}
    figures = []
    for index, group in enumerate(groups):
        fig = figure(
            title=", ".join(group) if len(groups) > 1 else f"{title}: {', '.join(group)}",
            name=f"figure_{index}",
            x_axis_label="iterations",
            height=300,
            sizing_mode="stretch_width",
            tools="pan,wheel_zoom,box_zoom,reset,save,hover",
        )
        for k, channel in enumerate(group):
            xs, ys = history.get(channel, ((), ()))
            source = ColumnDataSource(data={"x": list(xs), "y": list(ys)}, name=channel)
            color = Category10_10[k % len(Category10_10)]
            fig.line(
                "x",
                "y",
                source=source,
                legend_label=channel,
                color=color,
                line_width=2,
                name=f"line_{channel}",
            )
            fig.scatter("x", "y", source=source, color=color, size=3)
            sources[channel] = source
        fig.legend.location = "top_right"
        fig.legend.click_policy = "hide"
        figures.append(fig)
    return column(*figures, sizing_mode="stretch_width", name="plots"), sources


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
