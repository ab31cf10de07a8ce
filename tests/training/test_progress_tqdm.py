"""ProgressBar drawn by tqdm: latest monitored values, report lines, and one line per
report (no carriage returns) on output that is not a terminal (issue 22)."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

from bricks.errors import ExtensionError
from bricks.extensions import FinishAfter, ProgressBar, TrainingDataMonitoring
from bricks.extensions.progress import is_interactive
from bricks.main_loop import MainLoop
from tests.training.helpers import ListStream, make_algorithm


class _Sized(ListStream):
    num_batches = 8  # known ahead, as a scheme's num_requests() would tell


def _run(bar: ProgressBar, epochs: int = 2, steps_per_call: int = 1) -> MainLoop:
    loop = MainLoop(
        make_algorithm(),
        _Sized(8),
        extensions=[
            TrainingDataMonitoring(["cost"], every_n_batches=2),
            bar,
            FinishAfter(after_n_epochs=epochs),
        ],
        steps_per_call=steps_per_call,
    )
    loop.run()
    return loop


def test_postfix_shows_the_latest_cost():
    out = io.StringIO()
    loop = _run(ProgressBar(file=out, interval=0.0))
    text = out.getvalue()
    last = loop.log.last_value("train_cost")
    assert f"train_cost={last:.4g}" in text
    assert "epoch 2 [##############################] 8/8" in text


def test_report_lines_above_the_bar(tmp_path):
    out = io.StringIO()
    _run(ProgressBar(file=out, interval=0.0, report_every_n_batches=4), steps_per_call=4)
    lines = [s for s in re.split(r"[\r\n]", out.getvalue()) if s.strip()]
    reports = [s for s in lines if " batches " in s]
    # batches 4 and 8 of each epoch (the bar's own draws have "[###...]" instead)
    assert [r.split(" batches")[0].strip() for r in reports] == [
        "epoch 1 4/8", "epoch 1 8/8", "epoch 2 4/8", "epoch 2 8/8"
    ]
    assert all(re.search(r"(it/s|s/it) ETA", r) and "train_cost=" in r for r in reports)


def test_a_log_file_gets_one_line_per_report_and_no_carriage_returns(tmp_path):
    path = tmp_path / "progress.log"
    with open(path, "w") as log_file:
        assert not is_interactive(log_file)
        loop = _run(ProgressBar(file=log_file, report_every_n_batches=4))
    text = path.read_text()
    assert "\r" not in text
    lines = text.splitlines()
    # reports at batches 4 and 8 (the end of the epoch: no second line for it)
    assert [line.split(" batches")[0] for line in lines] == [
        "epoch 1 4/8", "epoch 1 8/8", "epoch 2 4/8", "epoch 2 8/8"
    ]
    cost = loop.log.last_value("train_cost")
    assert lines[-1].endswith(f"train_cost={cost:.4g}")
    assert all(re.search(r"\d+\.\d\d(it/s|s/it) ETA \d\d:\d\d", line) for line in lines), lines


def test_a_log_file_without_reports_gets_a_line_per_epoch(tmp_path):
    path = tmp_path / "progress.log"
    with open(path, "w") as log_file:
        _run(ProgressBar(file=log_file))
    assert [line.split(" batches")[0] for line in path.read_text().splitlines()] == [
        "epoch 1 8/8", "epoch 2 8/8"
    ]


def test_interactivity_is_decided_by_the_output():
    assert is_interactive(io.StringIO())  # in memory: a notebook cell, a test buffer
    with open("/dev/null", "w") as devnull:
        assert not is_interactive(devnull)


def test_records_choose_what_is_shown(caplog):
    out = io.StringIO()
    _run(ProgressBar(file=out, records=["train_cots"], interval=0.0), epochs=1)
    assert "train_cost" not in out.getvalue()
    assert "'train_cots' was never a number in the log" in caplog.text
    assert "did you mean 'train_cost'?" in caplog.text


def test_report_interval_is_checked():
    with pytest.raises(ExtensionError, match="report_every_n_batches"):
        ProgressBar(report_every_n_batches=0)


def test_reports_do_not_break_multi_step_calls():
    many = _run(ProgressBar(file=io.StringIO(), report_every_n_batches=4), steps_per_call=4)
    one = _run(ProgressBar(file=io.StringIO()), steps_per_call=1)
    np.testing.assert_allclose(
        [v for _, v in many.log.records("train_cost")],
        [v for _, v in one.log.records("train_cost")],
        rtol=1e-6,
    )


def test_values_written_a_step_late_are_shown():
    # monitoring completes a row after the next step is queued: the draw after batch 3
    # shows batch 2's cost, which the current row (3) does not hold
    out = io.StringIO()
    loop = _run(ProgressBar(file=out, interval=0.0), epochs=1)
    draws = [s for s in re.split(r"[\r\n]", out.getvalue()) if " 3/8 " in s]
    cost = dict(loop.log.records("train_cost"))[2]
    assert draws and f"train_cost={cost:.4g}" in draws[0], draws
    assert "train_cost" not in loop.log[3]
