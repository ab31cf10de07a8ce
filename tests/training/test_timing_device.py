"""Timing's figures are true: device time in ``time_train_*`` (dispatch is asynchronous)
and no time from before a resumption in the first epoch after it (issue 22)."""

from __future__ import annotations

import time

import pytest

from bricks.extensions import FinishAfter, Timing
from bricks.main_loop import MainLoop
from tests.training.helpers import ListStream, make_algorithm

STEP_S = 0.03  # what the fake device takes per step


class _Clock:
    """``time.perf_counter`` moved by hand: only the fake device's work takes time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(time, "perf_counter", fake)
    return fake


class _Pending:
    """A device value whose steps run only when someone waits for them."""

    def __init__(self, algorithm: _AsyncAlgorithm) -> None:
        self.algorithm = algorithm

    def block_until_ready(self) -> _Pending:
        if isinstance(time.perf_counter, _Clock):
            time.perf_counter.now += STEP_S * self.algorithm.queued
        else:
            time.sleep(STEP_S * self.algorithm.queued)
        self.algorithm.queued = 0
        return self


class _AsyncAlgorithm:
    """Returns from a step at once, like JAX's dispatch; the work waits in a queue."""

    def __init__(self) -> None:
        self.queued = 0

    def initialize(self) -> None:
        pass

    def process_batch(self, batch) -> None:
        self.queued += 1

    def current_parameters(self) -> dict:
        return {"w": _Pending(self)}


def _epoch_row(sync: bool, batches: int = 5) -> dict:
    loop = MainLoop(
        _AsyncAlgorithm(),
        ListStream(batches),
        extensions=[Timing(sync=sync), FinishAfter(after_n_epochs=1)],
    )
    loop.run()
    return loop.log.current_row


@pytest.mark.parametrize("sync", [False, True])
def test_train_time_includes_the_device(sync, clock):
    row = _epoch_row(sync=sync)
    # the clock moves only while the fake device works: 5 steps of STEP_S, all train time
    assert row["time_train_this_epoch"] == pytest.approx(5 * STEP_S, abs=1e-9)
    assert row["time_train_total"] == pytest.approx(5 * STEP_S, abs=1e-9)
    assert row["time_this_epoch"] == pytest.approx(5 * STEP_S, abs=1e-9)


def test_first_epoch_after_resume_counts_only_this_run():
    first = MainLoop(
        make_algorithm(),
        ListStream(6),
        extensions=[Timing(), Timing(every_n_batches=1, name="per_batch", prefix="b"),
                    FinishAfter(after_n_batches=4)],
    )
    first.run()
    before = first.log.last_value("b_time_train_total")
    assert before > 0
    state = first.get_state()
    time.sleep(0.2)  # time between the runs counts in neither
    second = MainLoop(
        make_algorithm(),
        ListStream(6),
        extensions=[Timing(), Timing(every_n_batches=1, name="per_batch", prefix="b"),
                    FinishAfter(after_n_epochs=1)],
    )
    start = time.perf_counter()
    second.run(resume=state)
    wall = time.perf_counter() - start
    row = second.log.current_row
    assert second.log.status["iterations_done"] == 6
    assert 0 < row["time_this_epoch"] <= wall  # not the process's clock since boot
    assert row["time_train_this_epoch"] <= wall
    # the totals go on from the restored log
    assert row["b_time_train_total"] >= before + row["time_train_this_epoch"] * 0.99


def test_the_host_still_overlaps_the_device():
    """A step call returns at once; the wait for it comes with the next call."""
    from bricks.extensions import TrainingExtension

    class Queued(TrainingExtension):
        seen: list[int] = []

        def after_batch(self, batch) -> None:
            self.seen.append(self.main_loop.algorithm.queued)

    algorithm = _AsyncAlgorithm()
    MainLoop(
        algorithm, ListStream(4),
        extensions=[Timing(sync=True), Queued(), FinishAfter(after_n_epochs=1)],
    ).run()
    assert Queued.seen == [1, 1, 1, 1]  # this call's work still queued when extensions run


def test_by_default_no_step_waits_for_the_device():
    """Timing's default keeps the queue of dispatched steps: it waits only when it fires."""
    from bricks.extensions import TrainingExtension

    class Queued(TrainingExtension):
        seen: list[int] = []

        def after_batch(self, batch) -> None:
            self.seen.append(self.main_loop.algorithm.queued)

    MainLoop(
        _AsyncAlgorithm(), ListStream(4),
        extensions=[Timing(), Queued(), FinishAfter(after_n_epochs=1)],
    ).run()
    assert Queued.seen == [1, 2, 3, 4]
