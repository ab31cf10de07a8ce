"""An embedded Bokeh server on its own thread that streams new points to every open page.

The training thread never waits for the server or a browser:
:meth:`PlotServer.push` puts the new points on a :class:`queue.SimpleQueue`
and returns. On the server's own thread (its own asyncio loop, hence its
own tornado ``IOLoop``) a periodic *pump* drains the queue, appends the
points to the history, and hands each open document its share with
``doc.add_next_tick_callback``, where ``ColumnDataSource.stream`` sends only
the new points over the websocket. A page opened later (or after a resume)
starts from the whole history and then keeps extending. A slow or closed
browser only makes tornado buffer or drop its messages, on the server thread.

>>> server = PlotServer("demo", [["train_cost"]])
>>> url = server.start()              # doctest: +SKIP
Serving live plots of 'demo' at http://127.0.0.1:.../demo
>>> server.push([("train_cost", 10, 0.5)])
>>> server.close()
"""

from __future__ import annotations

import asyncio
import atexit
import bisect
import ipaddress
import logging
import queue
import socket
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

from bokeh.application import Application
from bokeh.application.handlers.function import FunctionHandler
from bokeh.document import Document
from bokeh.models import ColumnDataSource
from bokeh.server.server import BaseServer
from bokeh.server.tornado import BokehTornado
from bokeh.server.util import bind_sockets
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop, PeriodicCallback

from bricks.errors import PlotError, PlotServerError
from bricks.extensions.plot._channels import Point, check_document_name, normalize_channels
from bricks.extensions.plot._figures import build_layout

__all__ = ["PlotServer", "is_loopback"]

logger = logging.getLogger(__name__)

_LIVE: weakref.WeakSet[PlotServer] = weakref.WeakSet()


def is_loopback(address: str) -> bool:
    """Whether ``address`` only accepts connections from this machine."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Update:
    """What one pump hands every open document: new points, and channels to redraw."""

    __slots__ = ("stream", "reset")

    def __init__(self) -> None:
        self.stream: dict[str, tuple[list[int], list[float]]] = {}
        self.reset: dict[str, tuple[list[int], list[float]]] = {}


class PlotServer:
    """Serve one Bokeh document of live training curves from a background thread.

    Args:
        document_name: the URL path (``http://127.0.0.1:PORT/<document_name>``).
        channels: Blocks' channel groups: one figure per group, one line per
            channel (record name of the log).
        port: the port to listen on; ``0`` (default) takes a free one.
        address: the address to bind; loopback by default. Any other address
            needs ``allow_remote=True`` and logs a warning.
        allow_remote: allow a non-loopback ``address``.
        websocket_origins: ``host`` or ``host:port`` values a page may be
            served from; the websocket refuses every other ``Origin``. By
            default only the exact ``address:port`` the server prints (for a
            remote bind: this machine's host names at the port).
        update_interval: seconds between two pumps of new points to the pages.

    Attributes:
        url: the page address, set by :meth:`start`.
        port: the port listened on, set by :meth:`start`.
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
    ) -> None:
        self.document_name = check_document_name(document_name)
        self.groups = normalize_channels(channels)
        self.channels = [c for group in self.groups for c in group]
        if not is_loopback(address) and not allow_remote:
            raise PlotError(
                f"the plot server would listen on {address!r}, which other machines can reach; "
                "it binds to 127.0.0.1 unless you pass allow_remote=True as well"
            )
        if not 0 <= int(port) < 65536:
            raise PlotError(f"port must be 0 (any free port) or in 1..65535, got {port!r}")
        if update_interval <= 0:
            raise PlotError(f"update_interval must be positive seconds, got {update_interval!r}")
        self.address = address
        self.allow_remote = allow_remote
        self.requested_port = int(port)
        self.update_interval = float(update_interval)
        self._extra_origins = list(websocket_origins or [])
        self.port: int | None = None
        self.url: str | None = None
        self.websocket_origins: list[str] = []
        # shared between threads
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._history_lock = threading.Lock()
        # owned by the server thread
        self._history: dict[str, tuple[list[int], list[float]]] = {
            c: ([], []) for c in self.channels
        }
        self._sessions: dict[int, dict[str, ColumnDataSource]] = {}
        self._documents: dict[int, Document] = {}
        self._pollers: list[Callable[[], Iterable[Point]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None

    # -- the training side (any thread) --------------------------------------
    def push(self, points: Sequence[Point]) -> None:
        """Hand over new ``(channel, iteration, value)`` points; never blocks."""
        if points:
            self._queue.put(("points", points))

    def reset(self, points: Sequence[Point]) -> None:
        """Replace the whole history by ``points`` (e.g. the log of a resumed run)."""
        self._queue.put(("reset", points))

    def add_poller(self, poll: Callable[[], Iterable[Point]]) -> None:
        """Call ``poll()`` on the server thread at every pump; it returns new points.

        Used to follow a log file written by another process. Add pollers
        before :meth:`start`.
        """
        self._pollers.append(poll)

    def history(self) -> dict[str, tuple[list[int], list[float]]]:
        """A copy of the points the pages start from (those pumped so far)."""
        with self._history_lock:
            return {c: (list(xs), list(ys)) for c, (xs, ys) in self._history.items()}

    @property
    def session_count(self) -> int:
        """How many documents (browser pages) are open."""
        return len(self._sessions)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- life cycle ----------------------------------------------------------
    def start(self, timeout: float = 30.0, announce: bool = True) -> str:
        """Start serving on a background thread; returns (and prints) the page URL."""
        if self._thread is not None:
            raise PlotServerError(f"the plot server of {self.document_name!r} was already started")
        self._thread = threading.Thread(
            target=self._run, name=f"bricks-plot-{self.document_name}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise PlotServerError(f"the plot server did not start within {timeout} s")
        if self._error is not None:
            self._thread.join(timeout)
            raise PlotServerError(
                f"cannot serve plots on {_host_port(self.address, self.requested_port)}: "
                f"{self._error}"
            ) from self._error
        _LIVE.add(self)
        if not is_loopback(self.address):
            logger.warning(
                "The plot server listens on %s: anyone who can reach this machine can read "
                "the training curves",
                _host_port(self.address, self.port or 0),
            )
        if announce:
            print(f"Serving live plots of {self.document_name!r} at {self.url}", flush=True)
        logger.info("Serving live plots of %r at %s", self.document_name, self.url)
        return self.url  # type: ignore[return-value]

    def close(self, timeout: float = 10.0) -> None:
        """Stop the server and join its thread (idempotent)."""
        thread, loop, stop = self._thread, self._loop, self._stop_event
        if thread is None or not thread.is_alive():
            return
        if loop is not None and stop is not None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop already closed
                pass
        thread.join(timeout)
        _LIVE.discard(self)
        if thread.is_alive():
            raise PlotServerError(f"the plot server thread did not stop within {timeout} s")

    def __enter__(self) -> PlotServer:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- the server thread ---------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # noqa: BLE001 - reported to start() / logged
            if not self._ready.is_set():
                self._error = error
                self._ready.set()
            else:
                logger.exception("The plot server of %r stopped with an error", self.document_name)

    def _origins(self, port: int) -> list[str]:
        origins = []
        if is_loopback(self.address) or self.address not in ("0.0.0.0", "::", ""):
            origins.append(_host_port(self.address, port))
        if not is_loopback(self.address):
            for name in {socket.gethostname(), socket.getfqdn()}:
                origins.append(_host_port(name, port))
        for origin in self._extra_origins:
            has_port = origin.rsplit(":", 1)[-1].isdigit() and not origin.endswith("]")
            origins.append(origin if has_port else _host_port(origin, port))
        return list(dict.fromkeys(origins))

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        sockets, port = bind_sockets(self.address, self.requested_port)
        self.port = port
        self.websocket_origins = self._origins(port)
        host = self.address if self.address not in ("0.0.0.0", "::", "") else socket.gethostname()
        self.url = f"http://{_host_port(host, port)}/{self.document_name}"
        try:
            app = Application(FunctionHandler(self._make_document))
            tornado_app = BokehTornado(
                {f"/{self.document_name}": app},
                extra_websocket_origins=self.websocket_origins,
                use_index=False,
                redirect_root=False,
            )
            http = HTTPServer(tornado_app)
            http.add_sockets(sockets)
        except BaseException:
            for s in sockets:
                s.close()
            raise
        server = BaseServer(IOLoop.current(), tornado_app, http)
        server.start()
        pump = PeriodicCallback(self._pump, self.update_interval * 1000)
        pump.start()
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            pump.stop()
            self._sessions.clear()
            self._documents.clear()
            server.stop(wait=False)
            try:
                await asyncio.wait_for(http.close_all_connections(), timeout=2.0)
            except TimeoutError:
                logger.warning("Some plot connections did not close within 2 s")

    def _make_document(self, doc: Document) -> None:
        self._pump()  # pages start from everything handed over so far
        layout, sources = build_layout(self.document_name, self.groups, self.history())
        doc.title = self.document_name
        doc.add_root(layout)
        key = id(doc)
        self._sessions[key] = sources
        self._documents[key] = doc

        def forget(session_context: Any) -> None:
            self._sessions.pop(key, None)
            self._documents.pop(key, None)

        doc.on_session_destroyed(forget)

    def _pump(self) -> None:
        items: list[tuple[str, Any]] = []
        for poll in self._pollers:
            try:
                points = list(poll())
            except Exception:  # a bad log line must not kill the server
                logger.exception("Reading new plot points failed")
                continue
            if points:
                items.append(("points", points))
        try:
            while True:
                items.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        if not items:
            return
        update = _Update()
        with self._history_lock:
            for kind, points in items:
                if kind == "reset":
                    for xs, ys in self._history.values():
                        xs.clear()
                        ys.clear()
                    update.stream.clear()
                    update.reset = {c: ([], []) for c in self.channels}
                for channel, x, y in points:
                    self._add(update, channel, x, y)
            for channel in update.reset:
                xs, ys = self._history[channel]
                update.reset[channel] = (list(xs), list(ys))
        if not update.stream and not update.reset:
            return
        for key, doc in list(self._documents.items()):
            doc.add_next_tick_callback(partial(_apply, self._sessions[key], update))

    def _add(self, update: _Update, channel: str, x: int, y: float) -> None:
        series = self._history.get(channel)
        if series is None:
            return
        xs, ys = series
        if xs and x <= xs[-1]:  # a rewound run rewrites iterations: redraw the line
            cut = bisect.bisect_left(xs, x)
            del xs[cut:], ys[cut:]
            update.stream.pop(channel, None)
            update.reset[channel] = ([], [])
        xs.append(x)
        ys.append(y)
        if channel not in update.reset:
            new = update.stream.setdefault(channel, ([], []))
            new[0].append(x)
            new[1].append(y)


def _apply(sources: dict[str, ColumnDataSource], update: _Update) -> None:
    for channel, (xs, ys) in update.reset.items():
        sources[channel].data = {"x": list(xs), "y": list(ys)}
    for channel, (xs, ys) in update.stream.items():
        sources[channel].stream({"x": xs, "y": ys})


@atexit.register
def _close_all() -> None:
    for server in list(_LIVE):
        try:
            server.close(timeout=2.0)
        except Exception:  # noqa: BLE001 - the interpreter is going away
            pass
