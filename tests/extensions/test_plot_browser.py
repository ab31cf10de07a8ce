"""Live plots in a real browser: headless Chromium driven over the DevTools protocol.

The page is opened by Chromium, which keeps the Bokeh websocket open while
the test reads the Bokeh document through ``Runtime.evaluate`` (the
``--dump-dom`` mode would not keep the page alive long enough). The CDP
client below is a minimal websocket client on the standard library.
"""

import base64
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.request

import numpy as np
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


# -- a minimal websocket client (RFC 6455, client side) ---------------------------------


class WebSocket:
    def __init__(self, host: str, port: int, path: str, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv_some()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")

    def _recv_some(self) -> bytes:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("websocket closed by the peer")
        return data

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.buffer += self._recv_some()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def recv(self) -> str:
        message = b""
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read(8))
            payload = self._read(n)  # a server never masks
            if opcode == 0x9:
                self._send_frame(0xA, payload)
            elif opcode == 0x8:
                raise ConnectionError("websocket closed by the peer")
            elif opcode in (0x0, 0x1, 0x2):
                message += payload
                if b0 & 0x80:
                    return message.decode()

    def close(self) -> None:
        try:
            self._send_frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


# -- headless Chromium over CDP ----------------------------------------------------------


class Chromium:
    """One headless Chromium with one page, opened at ``url``."""

    def __init__(self, url: str, user_data_dir: str, timeout: float = 30.0) -> None:
        self.process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1000,800",
                f"--user-data-dir={user_data_dir}",
                "--remote-debugging-port=0",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.ws = None
        self._id = 0
        try:
            port_file = os.path.join(user_data_dir, "DevToolsActivePort")
            deadline = time.monotonic() + timeout
            while not (os.path.exists(port_file) and open(port_file).read().count("\n") >= 1):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("chromium did not open its DevTools port")
                time.sleep(0.05)
            port = int(open(port_file).read().split()[0])
            page = None
            while page is None:
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
                page = next((t for t in targets if t["type"] == "page"), None)
                if page is None:
                    if time.monotonic() > deadline:
                        raise RuntimeError("chromium has no page target")
                    time.sleep(0.05)
            path = page["webSocketDebuggerUrl"].split(f":{port}", 1)[1]
            self.ws = WebSocket("127.0.0.1", port, path, timeout=timeout)
        except BaseException:
            self.close()
            raise

    def call(self, method: str, **params):
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"CDP {method} failed: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            return None
        return result["result"].get("value")

    def wait_for(self, expression: str, predicate, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value is not None and predicate(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{expression} stayed at {value!r} for {timeout} s")
            time.sleep(0.1)

    def screenshot(self, path) -> np.ndarray:
        from PIL import Image

        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        with open(path, "wb") as f:
            f.write(data)
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def y_length(channel: str) -> str:
    """JS: how many points the page's data source of ``channel`` holds."""
    return f"Bokeh.documents[0].get_model_by_name({channel!r}).data.y.length"


def y_values(channel: str) -> str:
    return f"Array.from(Bokeh.documents[0].get_model_by_name({channel!r}).data.y)"


# -- tests -------------------------------------------------------------------------------


@needs_chromium
def test_server_streams_to_a_browser(tmp_path):
    from bricks.extensions.plot import PlotServer

    plots = PlotServer("stream", [["train_cost"]], update_interval=0.05)
    plots.push([("train_cost", i, 1.0 / (i + 1)) for i in range(10)])
    plots.start(announce=False)
    stop = threading.Event()

    def feed():
        i = 10
        while not stop.wait(0.05):
            plots.push([("train_cost", i, 1.0 / (i + 1))])
            i += 1

    feeder = threading.Thread(target=feed)
    feeder.start()
    browser = None
    try:
        browser = Chromium(plots.url, str(tmp_path / "chromium"))
        first = browser.wait_for(y_length("train_cost"), lambda n: n >= 10)
        browser.wait_for(y_length("train_cost"), lambda n: n > first + 5)
        assert browser.evaluate(y_values("train_cost"))[:3] == [1.0, 0.5, 1.0 / 3]
    finally:
        stop.set()
        feeder.join()
        if browser is not None:
            browser.close()
        plots.close()


# -- training end to end ---------------------------------------------------------------


def _training(tmp_path, plot, stop, slow=0.02, finish_after=None):
    """A tiny linear regression whose loop runs until ``stop`` is set (or ``finish_after``)."""
    from bricks.algorithms import GradientDescent, Scale
    from bricks.extensions import (
        DataStreamMonitoring,
        FinishAfter,
        SimpleExtension,
        TrainingDataMonitoring,
    )
    from bricks.main_loop import MainLoop

    class SlowUntil(SimpleExtension):
        """Makes batches slow enough to watch and finishes training when told."""

        def do(self, which_callback, *args):
            if stop.is_set():
                self.main_loop.log.status["training_finish_requested"] = True
            else:
                time.sleep(slow)

    def cost(params, x, y):
        return ((x @ params["w"] + params["b"] - y) ** 2).mean()

    rng = np.random.RandomState(0)
    x = rng.randn(80, 3).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5], np.float32)
    train = [{"x": x[i : i + 8], "y": y[i : i + 8]} for i in range(0, 64, 8)]
    valid = [{"x": x[64:], "y": y[64:]}]
    algorithm = GradientDescent(
        cost=cost,
        parameters={"w": np.zeros(3, np.float32), "b": np.zeros((), np.float32)},
        step_rule=Scale(0.02),
    )
    return MainLoop(
        algorithm,
        train,
        log_path=str(tmp_path / "run" / "log.jsonl"),
        extensions=[
            TrainingDataMonitoring(["cost"], after_batch=True),
            DataStreamMonitoring(["cost"], valid, after_epoch=True),
            plot,
            SlowUntil(after_batch=True),
        ]
        + ([FinishAfter(after_n_batches=finish_after)] if finish_after else []),
    )


class _Run:
    """Runs ``loop.run(**kwargs)`` on a thread; re-raises its error on join."""

    def __init__(self, loop, **kwargs):
        self.error = None

        def target():
            try:
                loop.run(**kwargs)
            except BaseException as error:  # noqa: BLE001 - re-raised in join()
                self.error = error

        self.thread = threading.Thread(target=target)
        self.thread.start()

    def join(self):
        self.thread.join(60)
        assert not self.thread.is_alive(), "training did not stop"
        if self.error is not None:
            raise self.error


def _wait_for_url(plot, run, timeout=30.0):
    deadline = time.monotonic() + timeout
    while plot.url is None:
        if run.error is not None or time.monotonic() > deadline:
            run.join()
            raise AssertionError("the plot server did not start")
        time.sleep(0.02)
    return plot.url


@needs_chromium
def test_training_plots_live_in_a_browser(tmp_path):
    from PIL import Image

    from bricks.extensions.plot import Plot

    plot = Plot(
        "training", channels=[["train_cost", "valid_cost"]], every_n_batches=1, update_interval=0.05
    )
    stop = threading.Event()
    loop = _training(tmp_path, plot, stop)
    run = _Run(loop)
    browser = None
    try:
        browser = Chromium(_wait_for_url(plot, run), str(tmp_path / "chromium"))
        first = browser.wait_for(y_length("train_cost"), lambda n: n >= 5)
        browser.wait_for(y_length("valid_cost"), lambda n: n >= 1)
        # training goes on: the page gets more points
        browser.wait_for(y_length("train_cost"), lambda n: n >= first + 10)
        pixels = browser.screenshot(tmp_path / "plots.png")
        assert pixels.std() > 5.0, "the screenshot is blank"
        assert browser.evaluate("document.title") == "training"
        # the figure fills the page: drawn pixels span most of the viewport both ways
        drawn = (np.abs(pixels - 255).sum(axis=2) > 30)
        rows, cols = np.where(drawn.any(axis=1))[0], np.where(drawn.any(axis=0))[0]
        assert rows.max() - rows.min() > 0.8 * pixels.shape[0], (rows.min(), rows.max())
        assert cols.max() - cols.min() > 0.8 * pixels.shape[1], (cols.min(), cols.max())
        # a log-scale view of the same sources, and a y-axis label
        log_figure = "Bokeh.documents[0].get_model_by_name('figure_0_log')"
        assert browser.evaluate(f"{log_figure}.y_scale.type") == "LogScale"
        assert browser.evaluate(
            "Bokeh.documents[0].get_model_by_name('figure_0').left[0].axis_label"
        ) == "cost"
        stop.set()
        run.join()
        on_page = browser.evaluate(y_values("train_cost"))
    finally:
        stop.set()
        run.join()
        if browser is not None:
            browser.close()
    logged = [value for _, value in loop.log.records("train_cost")]
    assert len(on_page) >= first + 10
    assert on_page == logged[: len(on_page)]
    # the static page, written when training finished, holds every point and no CDN link
    assert plot.html_written == str(tmp_path / "run" / "training.html")
    html = open(plot.html_written, encoding="utf-8").read()
    assert "cdn.bokeh.org" not in html and "Bokeh" in html
    assert plot.server is None  # stopped after training
    assert not [t for t in threading.enumerate() if t.name.startswith("bricks-plot")]
    assert Image.open(tmp_path / "plots.png").size[0] > 100


@needs_chromium
def test_resumed_run_page_starts_with_the_first_runs_history(tmp_path):
    from bricks.extensions.plot import Plot

    first = _training(
        tmp_path,
        Plot("resumed", ["train_cost"], serve=False),
        threading.Event(),
        slow=0.0,
        finish_after=12,
    )
    first.run()
    state = first.get_state()
    history = [value for _, value in first.log.records("train_cost")]
    assert len(history) == 12

    plot = Plot("resumed", ["train_cost"], every_n_batches=1, update_interval=0.05)
    stop = threading.Event()
    second = _training(tmp_path, plot, stop)
    run = _Run(second, resume=state)
    browser = None
    try:
        browser = Chromium(_wait_for_url(plot, run), str(tmp_path / "chromium"))
        n = browser.wait_for(y_length("train_cost"), lambda n: n >= len(history))
        assert browser.evaluate(y_values("train_cost"))[: len(history)] == history
        browser.wait_for(y_length("train_cost"), lambda k: k >= n + 5)
    finally:
        stop.set()
        run.join()
        if browser is not None:
            browser.close()


@needs_chromium
def test_second_process_watches_a_log_live(tmp_path):
    import sys

    import bricks

    log = tmp_path / "log.jsonl"

    def append(iteration, value):
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"iteration": iteration, "records": {"train_cost": value}}) + "\n")

    for i in range(5):
        append(i, 1.0 / (i + 1))
    root = os.path.dirname(os.path.dirname(bricks.__file__))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bricks.extensions.plot",
            str(tmp_path),
            "--name",
            "watch",
            "--interval",
            "0.05",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    browser = None
    try:
        line = server.stdout.readline()
        assert "Serving live plots of 'watch' at http://127.0.0.1:" in line, line
        browser = Chromium(line.split(" at ")[1].strip(), str(tmp_path / "chromium"))
        browser.wait_for(y_length("train_cost"), lambda n: n == 5)
        for i in range(5, 10):
            append(i, 1.0 / (i + 1))
        browser.wait_for(y_length("train_cost"), lambda n: n == 10)
        assert browser.evaluate(y_values("train_cost")) == [1.0 / (i + 1) for i in range(10)]
    finally:
        if browser is not None:
            browser.close()
        server.terminate()
        assert server.wait(15) == 0
        server.stdout.close()


@needs_chromium
@pytest.mark.slow
def test_default_run_plots_its_first_points_within_seconds(tmp_path):
    """The default config (issue 22): points on the page within 10 s of the first step."""
    import re
    import signal

    from tests.experiments._helpers import env, runner_command

    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        runner_command("char_lm", run_dir, "--set", "num_batches=200", "--set", "sample_length=5")
        + ["--compile-cache", str(tmp_path / "cache")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env(),
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")))
    reader.start()
    browser = None
    try:
        deadline = time.monotonic() + 120
        url = None
        while url is None:
            found = [re.search(r"at (http://127\.0\.0\.1:\d+/run)$", s.strip()) for s in lines]
            url = next((m.group(1) for m in found if m), None)
            assert proc.poll() is None and time.monotonic() < deadline, lines
            time.sleep(0.05)
        browser = Chromium(url, str(tmp_path / "chromium"))
        browser.wait_for(y_length("train_cost"), lambda n: n >= 0, timeout=60.0)  # loaded
        # the first step call (10 steps) ends when its training cost is in the log
        log = run_dir / "log.jsonl"
        while not (log.is_file() and '"train_cost"' in log.read_text(encoding="utf-8")):
            assert proc.poll() is None and time.monotonic() < deadline + 120, lines
            time.sleep(0.02)
        first_step = time.monotonic()
        browser.wait_for(y_length("train_cost"), lambda n: n >= 1, timeout=10.0)
        assert time.monotonic() - first_step < 10.0
    finally:
        if browser is not None:
            browser.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        reader.join(10)
        proc.stdout.close()
    assert proc.returncode in (0, 75), lines
