"""The live-plot server without a browser: pages over HTTP, history, streaming, origin checks."""

import base64
import json
import os
import re
import socket
import time
import urllib.request

import pytest

from bricks.errors import PlotError, PlotServerError
from bricks.extensions.plot import PlotServer, group_by_quantity, normalize_channels
from bricks.extensions.plot._channels import points_from_rows
from bricks.extensions.plot._figures import write_static_html


def _wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _websocket_handshake(port, path, origin):
    """Send a raw websocket upgrade request; return the HTTP status code."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: bokeh\r\n"
                f"Origin: {origin}\r\n\r\n"
            ).encode()
        )
        status = sock.recv(4096).split(b"\r\n", 1)[0]
    return int(status.split()[1])


@pytest.fixture
def server():
    plots = PlotServer(
        "demo", [["train_cost", "valid_cost"], ["valid_error_rate"]], update_interval=0.05
    )
    yield plots
    plots.close()
    assert not plots.running


def test_page_history_and_stream(server):
    server.push([("train_cost", 0, 2.0), ("train_cost", 1, 1.5), ("valid_error_rate", 1, 0.5)])
    url = server.start(announce=False)
    assert url == f"http://127.0.0.1:{server.port}/demo"
    assert server.websocket_origins == [f"127.0.0.1:{server.port}"]
    html = urllib.request.urlopen(url, timeout=10).read().decode()
    assert "Bokeh" in html and "demo" in html
    assert _wait(lambda: server.session_count == 1)
    assert server.history()["train_cost"] == ([0, 1], [2.0, 1.5])
    server.push([("train_cost", 2, 1.25), ("valid_cost", 2, 1.75), ("unknown", 2, 0.0)])
    assert _wait(lambda: server.history()["train_cost"][0] == [0, 1, 2])
    assert server.history()["valid_cost"] == ([2], [1.75])
    assert "unknown" not in server.history()


def test_reset_and_rewind(server):
    server.start(announce=False)
    server.push([("train_cost", i, float(i)) for i in range(5)])
    assert _wait(lambda: len(server.history()["train_cost"][0]) == 5)
    # a run rewound to iteration 3 rewrites it: the line is cut there and redrawn
    server.push([("train_cost", 3, 30.0)])
    assert _wait(lambda: server.history()["train_cost"] == ([0, 1, 2, 3], [0.0, 1.0, 2.0, 30.0]))
    server.reset([("valid_cost", 7, 1.0)])
    assert _wait(lambda: server.history()["valid_cost"] == ([7], [1.0]))
    assert server.history()["train_cost"] == ([], [])


def test_foreign_websocket_origin_is_refused(server):
    server.start(announce=False)
    path = "/demo/ws"
    assert _websocket_handshake(server.port, path, "http://evil.example") == 403
    assert _websocket_handshake(server.port, path, f"http://localhost:{server.port}") == 403
    # the exact origin passes the origin check (and fails later, for want of a session token)
    assert _websocket_handshake(server.port, path, f"http://127.0.0.1:{server.port}") != 403


def test_configuration_errors(caplog):
    with pytest.raises(PlotError, match="allow_remote"):
        PlotServer("demo", [["a"]], address="0.0.0.0")
    with pytest.raises(PlotError, match="try 'my_run'"):
        PlotServer("my run", [["a"]])
    with pytest.raises(PlotError, match="non-empty list"):
        PlotServer("demo", [[]])
    with pytest.raises(PlotError, match="named twice"):
        PlotServer("demo", [["a"], ["a"]])
    taken = PlotServer("demo", [["a"]])
    taken.start(announce=False)
    try:
        with pytest.raises(PlotServerError, match="cannot serve plots"):
            PlotServer("demo", [["a"]], port=taken.port).start(announce=False)
    finally:
        taken.close()


def test_remote_bind_warns(caplog):
    plots = PlotServer(
        "demo", [["a"]], address="0.0.0.0", allow_remote=True, websocket_origins=["plots.example"]
    )
    try:
        plots.start(announce=False)
        assert "anyone who can reach this machine" in caplog.text
        assert f"plots.example:{plots.port}" in plots.websocket_origins
    finally:
        plots.close()


def test_channels_and_static_html(tmp_path):
    assert normalize_channels(["a", ["b", "c"]]) == [["a"], ["b", "c"]]
    assert group_by_quantity(["train_cost", "valid_cost", "lr"]) == [
        ["train_cost", "valid_cost"],
        ["lr"],
    ]
    rows = [(0, {"a": 1, "b": "text"}), (3, {"a": float("inf"), "b": [1, 2]})]
    points = points_from_rows(rows, ["a", "b"])
    assert points[0] == ("a", 0, 1.0) and points[1][:2] == ("a", 3) and points[1][2] != points[1][2]
    path = write_static_html(
        tmp_path / "run" / "plots.html", "demo", [["a"]], {"a": ([0, 3], [1.0, 2.0])}
    )
    html = open(path, encoding="utf-8").read()
    assert "<script" in html and '"name":"a"' in html
    # works offline: no script or stylesheet tag loads anything (BokehJS is inlined)
    assert "cdn.bokeh.org" not in html
    assert not re.search(r"<script[^>]*\bsrc=|<link[^>]*\bhref=", html)


def _append(path, iteration, **records):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"iteration": iteration, "records": records}) + "\n")


def test_serve_log_follows_the_file(tmp_path):
    from bricks.extensions.plot import serve_log

    run = tmp_path / "my run"
    run.mkdir()
    log = run / "log.jsonl"
    _append(log, 1, train_cost=2.0, note="text")
    _append(log, 1, valid_cost=3.0)
    _append(log, 2, train_cost=1.0, valid_error_rate=0.5)
    server = serve_log(run, announce=False, update_interval=0.05)
    try:
        assert server.document_name == "my_run"
        assert server.groups == [["train_cost", "valid_cost"], ["valid_error_rate"]]
        urllib.request.urlopen(server.url, timeout=10).read()
        assert server.history()["train_cost"] == ([1, 2], [2.0, 1.0])
        _append(log, 3, train_cost=0.5)
        assert _wait(lambda: server.history()["train_cost"][0] == [1, 2, 3])
        _append(log, 2, train_cost=0.75)  # resumed from an earlier checkpoint: rewritten
        assert _wait(lambda: server.history()["train_cost"] == ([1, 2], [2.0, 0.75]))
    finally:
        server.close()


def test_command_line(tmp_path, capsys):
    from bricks.extensions.plot.__main__ import main

    log = tmp_path / "log.jsonl"
    assert main([str(tmp_path)]) == 2
    assert "found no *.jsonl" in capsys.readouterr().err
    _append(log, 1, train_cost=2.0)
    _append(log, 4, train_cost=1.0)
    out = tmp_path / "page.html"
    assert main([str(tmp_path), "--channels", "train_cost", "--html", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert '"name":"train_cost"' in html and "cdn.bokeh.org" not in html
    assert main([str(tmp_path / "missing")]) == 2
    assert "no run directory" in capsys.readouterr().err
