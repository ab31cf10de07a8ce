"""The Plot extension in a main loop, without a browser: history, conditions, errors, warnings."""

import threading
import urllib.request

import numpy as np
import pytest

from bricks.algorithms import GradientDescent, Scale
from bricks.errors import PlotError
from bricks.extensions import FinishAfter, SimpleExtension, TrainingDataMonitoring
from bricks.extensions.plot import Plot
from bricks.main_loop import MainLoop


def _cost(params, x, y):
    return ((x @ params["w"] - y) ** 2).mean()


def _loop(plot, *extra, log_path=None):
    rng = np.random.RandomState(0)
    x = rng.randn(32, 3).astype(np.float32)
    batches = [{"x": x[i : i + 8], "y": x[i : i + 8].sum(1)} for i in range(0, 32, 8)]
    algorithm = GradientDescent(
        cost=_cost, parameters={"w": np.zeros(3, np.float32)}, step_rule=Scale(0.05)
    )
    return MainLoop(
        algorithm,
        batches,
        log_path=log_path,
        extensions=[TrainingDataMonitoring(["cost"], after_batch=True), plot, *extra],
    )


def _no_server_threads():
    return not [t for t in threading.enumerate() if t.name.startswith("bricks-plot")]


def test_sends_new_values_and_writes_the_page(tmp_path):
    seen = []

    class Peek(SimpleExtension):
        def do(self, which, *args):
            if plot.server is not None:
                urllib.request.urlopen(plot.url, timeout=10).read()
                seen.append(plot.server.history()["train_cost"][0])

    plot = Plot("unit", ["train_cost"], every_n_batches=2, update_interval=0.01)
    loop = _loop(
        plot, Peek(after_epoch=True), FinishAfter(after_n_epochs=2), log_path=tmp_path / "log.jsonl"
    )
    loop.run()
    assert plot._last_sent == {"train_cost": 8}
    # a page opened at the end of the first epoch starts with what was sent so far
    assert seen[0] == [1, 2, 3, 4]
    assert plot.html_written == str(tmp_path / "unit.html")
    assert '"name":"train_cost"' in (tmp_path / "unit.html").read_text(encoding="utf-8")
    assert plot.server is None and _no_server_threads()


def test_unknown_channel_warns_with_a_suggestion(caplog):
    plot = Plot("unit", ["train_cots"], serve=False)
    _loop(plot, FinishAfter(after_n_epochs=1)).run()
    assert "no numeric record 'train_cots' (did you mean 'train_cost'?)" in caplog.text
    assert plot.html_written is None  # no log file, no html_path


def test_server_stops_on_error():
    class Boom(SimpleExtension):
        def do(self, which, *args):
            raise RuntimeError("boom")

    plot = Plot("unit", ["train_cost"], every_n_batches=1)
    with pytest.raises(RuntimeError, match="boom"):
        _loop(plot, Boom(after_n_batches=2)).run()
    assert plot.server is None and _no_server_threads()


def test_bad_options_fail_at_construction():
    with pytest.raises(PlotError, match="allow_remote"):
        Plot("unit", ["a"], address="192.0.2.1")
    with pytest.raises(PlotError, match="channel group"):
        Plot("unit", [["a"], []])
