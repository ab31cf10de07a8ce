"""The :class:`Plot` extension: live training curves in the browser (Blocks' ``Plot``)."""

from __future__ import annotations

import logging
import os
import webbrowser
from collections.abc import Sequence
from typing import Any

from bricks.errors import did_you_mean
from bricks.extensions.base import SimpleExtension
from bricks.extensions.plot._channels import (
    Point,
    as_number,
    check_document_name,
    normalize_channels,
    numeric_channels,
    points_from_rows,
)

__all__ = ["Plot"]

logger = logging.getLogger(__name__)


class Plot(SimpleExtension):
    """Plot channels of the training log live in a browser, from an embedded Bokeh server.

    When training starts (or resumes) a Bokeh server starts on a background
    thread, on 127.0.0.1 at a free port, and the page URL is printed. The
    page has one figure per channel group and one line per channel; it
    starts from the whole log (also after a resume: the checkpoint restores
    the log) and then extends live. Whenever one of the extension's
    conditions fires, the log's new values are handed to the server through
    a queue (a few microseconds); the training loop never waits for the
    server or a browser. When training ends a self-contained HTML page of
    the plots (Bokeh's JavaScript inlined, no CDN) is written, by default
    next to the persisted log, and the server stops (unless
    ``keep_serving``).

    Args:
        document_name: the page's name and URL path: ``http://127.0.0.1:PORT/<name>``.
        channels: Blocks' channel groups, e.g. ``[["train_cost", "valid_cost"],
            ["valid_error_rate"]]``: one figure per group; a bare string is a
            group of one.
        port: port to listen on; ``0`` (default) takes a free one.
        address: address to bind; only loopback unless ``allow_remote``.
        allow_remote: allow binding another ``address`` (logs a warning).
        websocket_origins: extra ``host[:port]`` origins a page may come from;
            by default only the exact ``address:port`` is accepted.
        update_interval: seconds between two pushes from the server to pages.
        html_path: where to write the static page at the end of training;
            default ``<log directory>/<document_name>.html`` when the log is
            persisted, else none. ``False``: never write it.
        serve: start the server (``False``: only write the static page).
        keep_serving: keep the server running after training ends, until
            :meth:`close` (or the process ends).
        open_browser: open the page in the default browser when it starts.
        **kwargs: conditions for sending new values, e.g.
            ``every_n_batches=10``; default ``after_epoch=True``. The server
            also starts ``before_training`` / ``on_resumption`` and stops
            ``after_training`` / ``on_error`` whatever the conditions.

    Attributes:
        url: the live page's address (``None`` until the server started).
        server: the :class:`~bricks.extensions.plot.PlotServer`, while running.
        html_written: the static page's path, once written.

    >>> plot = Plot("mnist", channels=[["train_cost", "valid_cost"]], every_n_batches=10)
    >>> plot.groups
    [['train_cost', 'valid_cost']]
    """

    def __init__(
        self,
        document_name: str,
        channels: Sequence[Sequence[str] | str],
        *,
        port: int = 0,
        address: str = "127.0.0.1",
        allow_remote: bool = False,
        websocket_origins: Sequence[str] | None = None,
        update_interval: float = 0.2,
        html_path: str | os.PathLike | bool | None = None,
        serve: bool = True,
        keep_serving: bool = False,
        open_browser: bool = False,
        **kwargs: Any,
    ) -> None:
        if not any(k != "name" for k in kwargs):
            kwargs["after_epoch"] = True
        super().__init__(**kwargs)
        self.document_name = check_document_name(document_name)
        self.groups = normalize_channels(channels)
        self.channels = [c for group in self.groups for c in group]
        self.server_options = {
            "port": port,
            "address": address,
            "allow_remote": allow_remote,
            "websocket_origins": websocket_origins,
            "update_interval": update_interval,
        }
        if serve:  # check the options now, not when training has started
            from bricks.extensions.plot._server import PlotServer

            PlotServer(document_name, self.groups, **self.server_options)
        self.html_path = html_path
        self.serve = serve
        self.keep_serving = keep_serving
        self.open_browser = open_browser
        self.server: Any = None
        self.url: str | None = None
        self.html_written: str | None = None
        self._scan_from = 0
        self._last_sent: dict[str, int] = {}

    # -- events --------------------------------------------------------------
    def dispatch(self, callback_name: str, *args: Any) -> None:
        if callback_name in ("before_training", "on_resumption"):
            self._start()
        super().dispatch(callback_name, *args)
        if callback_name == "after_training":
            self._send_new()
            self._warn_missing()
            self._write_html()
            if not self.keep_serving:
                self.close()
        elif callback_name == "on_error":
            self.close()

    def do(self, which_callback: str, *args: Any) -> None:
        """Hand the log's values that are new since the last call to the server."""
        self._send_new()

    # -- work ----------------------------------------------------------------
    def _history(self) -> list[Point]:
        return points_from_rows(iter(self.main_loop.log), self.channels)

    def _start(self) -> None:
        log = self.main_loop.log
        history = self._history()
        self._last_sent = {}
        for channel, x, _ in history:
            self._last_sent[channel] = x
        self._scan_from = log.status["iterations_done"]
        if not self.serve:
            return
        if self.server is not None and self.server.running:
            self.server.reset(history)
            return
        from bricks.extensions.plot._server import PlotServer

        self.server = PlotServer(self.document_name, self.groups, **self.server_options)
        self.server.reset(history)
        self.url = self.server.start()
        if self.open_browser:
            webbrowser.open(self.url)

    def _send_new(self) -> None:
        log = self.main_loop.log
        now = log.status["iterations_done"]
        points: list[Point] = []
        last_sent = self._last_sent
        for iteration in range(self._scan_from, now + 1):
            if iteration not in log:
                continue
            row = log[iteration]
            for channel in self.channels:
                if channel in row and iteration > last_sent.get(channel, -1):
                    y = as_number(row[channel])
                    if y is not None:
                        points.append((channel, iteration, y))
                        last_sent[channel] = iteration
        self._scan_from = now
        if points and self.server is not None:
            self.server.push(points)

    def _warn_missing(self) -> None:
        missing = [c for c in self.channels if c not in self._last_sent]
        if not missing:
            return
        known = numeric_channels(iter(self.main_loop.log))
        for channel in missing:
            logger.warning(
                "Plot %r: the log has no numeric record %r%s; records: %s",
                self.document_name,
                channel,
                did_you_mean(channel, known),
                ", ".join(known) or "none",
            )

    def _write_html(self) -> None:
        path = self.html_path
        if path is False:
            return
        if path is None or path is True:
            log_path = getattr(self.main_loop.log, "path", None)
            if log_path is None:
                logger.info(
                    "Plot %r: no log file and no html_path, so no static page", self.document_name
                )
                return
            path = os.path.join(
                os.path.dirname(os.path.abspath(log_path)), f"{self.document_name}.html"
            )
        from bricks.extensions.plot._figures import write_static_html

        history: dict[str, tuple[list[int], list[float]]] = {c: ([], []) for c in self.channels}
        for channel, x, y in self._history():
            history[channel][0].append(x)
            history[channel][1].append(y)
        self.html_written = write_static_html(path, self.document_name, self.groups, history)
        logger.info("Plot %r: wrote %s", self.document_name, self.html_written)

    def close(self) -> None:
        """Stop the server (idempotent); the URL stops answering."""
        if self.server is not None:
            self.server.close()
            self.server = None
