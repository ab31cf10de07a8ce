"""The step watchdog: deadlines, warm-up, extension calls, naming the stuck process, aborting."""

from __future__ import annotations

import doctest
import time

import numpy as np
import pytest

import bricks.distributed._watchdog as watchdog_module
from bricks.distributed import LocalStore, StepWatchdog
from bricks.errors import DistributedError, ProcessLostError, ShapeError


def _dogs(count=2, **kwargs):
    store, aborted = LocalStore(), []
    settings = {"factor": 10, "minimum_s": 2.0, "extension_minimum_s": 20.0, "warmup_steps": 0,
                "lost_after_s": 5.0, **kwargs}
    dogs = [StepWatchdog(index=i, count=count, store=store,
                         on_abort=lambda m, i=i: aborted.append((i, m)), **settings)
            for i in range(count)]
    return dogs, aborted


def _train(dogs, steps, base, dt=0.1):
    """Every watchdog beats ``steps`` steps of ``dt`` seconds from ``base`` and looks once."""
    for k in range(1, steps + 1):
        for dog in dogs:
            dog.beat(k, now=base + k * dt)
            dog.check(now=base + k * dt)
    return base + steps * dt


def test_doctests():
    result = doctest.testmod(watchdog_module)
    assert result.failed == 0 and result.attempted > 0


def test_deadline_is_factor_times_median_step_but_at_least_the_minimum():
    dog = StepWatchdog(factor=10, minimum_s=2.0, warmup_steps=0, index=0, count=1,
                       store=LocalStore(), on_abort=lambda m: None)
    assert dog.deadline(now=0.0) is None  # nothing timed yet
    for k, t in enumerate([0.0, 0.1, 0.2, 0.3], 1):  # steps of 0.1 s: the minimum decides
        dog.beat(k, now=t)
    taken, allowed, what = dog.deadline(now=1.3)  # on the clock given as now=
    assert taken == pytest.approx(1.0) and allowed == 2.0 and what.startswith("step 5 ")
    for k, t in enumerate([1.3, 2.3, 3.3, 4.3, 5.3], 5):  # now 1 s steps: 10 x median 1 s
        dog.beat(k, now=t)
    assert dog.deadline(now=6.0)[1] == pytest.approx(10 * np.median([0.1] * 3 + [1.0] * 5))


def test_the_first_steps_compilation_are_not_timed():
    dog = StepWatchdog(minimum_s=1.0, warmup_steps=2, index=0, count=1, store=LocalStore(),
                       on_abort=lambda m: None)
    with dog.excused("Load"):  # before training: not timed either
        assert dog.deadline() is None
    dog.beat(1, now=100.0)  # step 1 compiled for 100 s: never timed
    assert dog.check(now=150.0) is None  # step 2 (a second program?) is not timed either
    dog.beat(2, now=150.0)
    assert list(dog.step_times) == [] and dog.check(now=190.0) is None  # no median yet
    dog.beat(3, now=190.1)
    assert list(dog.step_times) == pytest.approx([40.1])  # step 3 is the first one timed
    dog.beat(4, now=190.2)
    # median of 40.1 s and 0.1 s: 20.1 s, so 201 s
    assert dog.check(now=190.2 + 200) is None and dog.check(now=190.2 + 202) is not None


def test_an_extension_call_is_not_step_time_and_has_its_own_deadline(monkeypatch):
    clock = [100.0]  # the watchdog's clock, moved by hand: nothing here waits
    monkeypatch.setattr(watchdog_module.time, "monotonic", lambda: clock[0])
    dog = StepWatchdog(factor=10, minimum_s=0.2, extension_minimum_s=5.0, warmup_steps=0,
                       index=0, count=1, store=LocalStore(), on_abort=lambda m: None)
    dog.beat(1, now=99.99)
    dog.beat(2, now=100.0)  # one step timed: deadlines apply
    with dog.excused("Checkpoint"):
        clock[0] = 100.5  # longer than a step may take
        taken, allowed, what = dog.deadline()
        assert (taken, allowed) == (0.5, 5.0) and "extension 'Checkpoint'" in what
        assert dog.check() is None
        with dog.excused("inner"):  # a nested call belongs to the outer one
            pass
    assert set(dog.extension_longest) == {"Checkpoint"}
    clock[0] = 100.6
    dog.beat(3)
    assert dog.step_times[-1] == pytest.approx(0.1)  # the save (0.5 s) was taken out
    with dog.excused("Checkpoint"):
        clock[0] = 100.62
        assert dog.deadline()[1] == 5.0  # max(10 x the longest call 0.5 s, 5 s)
    assert dog.extension_longest["Checkpoint"] == pytest.approx(0.5)  # the longest, not last


def test_a_stopped_process_is_named_and_every_process_stops():
    dogs, aborted = _dogs()
    now = _train(dogs, 5, base=0.0)
    dogs[0].beat(6, now=now + 0.1)  # process 1 is stopped: its thread looks no more
    now += 0.1
    for t in np.arange(now, now + 8, 1.0):
        if dogs[0].check(now=t):
            break
    (who, message), = aborted
    assert who == 0 and t >= now + 2.0  # after the deadline (2 s)
    assert "process 0 of 2 waited" in message and "for step 7" in message
    assert "process 1 did not reach step 7: no sign of life for" in message
    assert "(stopped, or dead), last reported at step 5" in message
    dogs[1].check(now=t + 100)  # process 1 wakes up: it follows the abort
    assert aborted[1][0] == 1 and aborted[1][1] == f"stopping: {message}"


def test_an_alive_but_hung_process_is_named_with_its_step():
    dogs, aborted = _dogs()
    now = _train(dogs, 5, base=0.0)
    dogs[0].beat(6, now=now + 0.1)
    for t in np.arange(now + 0.5, now + 4, 0.5):  # process 1's thread ticks: it is alive
        if dogs[0].check(now=t):
            break
        dogs[1].check(now=t)
    (who, message), = aborted
    assert who == 0 and "waited 2.4 s for step 7 (deadline 2 s" in message
    assert "process 1 did not reach step 7: alive but hung at step 5" in message
    dogs[1].check(now=t)
    assert aborted[1] == (1, f"stopping: {message}")
    # had process 1's own watchdog fired first, it would have said that it is behind
    from bricks.distributed._watchdog import describe_peers

    said = describe_peers(dict(dogs[1]._peers), 1, 2, 5, t, 3.0)
    assert said == "this process is the one behind: process(es) [0] reached step 6 and wait for it"


def test_all_alive_at_the_same_step_says_so():
    dogs, aborted = _dogs()
    now = _train(dogs, 5, base=0.0)
    for t in np.arange(now + 0.5, now + 4, 0.5):
        for dog in dogs:
            dog.check(now=t)
    assert "every process is alive at step 5 and none reached step 6" in aborted[0][1]
    # which one entered the collective is not known: the message says where each one is
    assert "training threads: process 0 at distributed/_watchdog.py:" in aborted[0][1]
    assert "; process 1 at " in aborted[0][1]


def test_a_peer_busy_saving_is_waited_for_but_a_silent_one_is_not():
    dogs, aborted = _dogs(extension_minimum_s=30.0)
    base = time.monotonic()
    now = _train(dogs, 5, base=base - 10)
    with dogs[1].excused("Checkpoint"):  # process 1 saves; process 0 waits for it
        for t in np.arange(now + 0.5, now + 9, 0.5):
            dogs[1].check(now=t)
            dogs[0].check(now=t)
        assert aborted == []  # 8.5 s past a 2 s step deadline: the save may take 30 s
        for t in np.arange(now + 9, now + 16, 0.5):  # process 1 stops ticking: it is lost
            dogs[0].check(now=t)
    assert aborted and aborted[0][0] == 0
    assert "process 1 did not reach step 6: no sign of life" in aborted[0][1]


def test_a_silent_peer_ends_the_wait_inside_an_extension_call():
    dogs, aborted = _dogs(extension_minimum_s=600.0)
    base = time.monotonic()
    now = _train(dogs, 5, base=base - 20)
    with dogs[0].excused("Checkpoint"):  # blocked reading a state that needs process 1
        for t in np.arange(now + 1, now + 40, 1.0):
            if dogs[0].check(now=t):
                break
    assert aborted and "extension 'Checkpoint'" in aborted[0][1]
    assert "process 1 did not reach step 6: no sign of life" in aborted[0][1]


def test_a_finished_peer_is_not_called_stuck():
    dogs, aborted = _dogs()
    now = _train(dogs, 3, base=0.0)
    dogs[1].stop()
    for t in np.arange(now + 1, now + 8, 1.0):
        dogs[0].check(now=t)
    assert "process 1 finished training or failed" in aborted[0][1]


def test_lost_peer_after_a_failed_collective():
    dogs, aborted = _dogs(lost_after_s=0.3, interval_s=0.05)
    dogs[0]._peers.clear()
    now = time.monotonic()
    dogs[1].beat(4, now=now)
    dogs[1].check(now=now)  # process 1 published once, then died
    error = dogs[0].explain(RuntimeError("Gloo all-reduce failed: Connection closed by peer"))
    assert isinstance(error, ProcessLostError)
    assert "process 0 of 2: process 1 did not reach step 1: no sign of life" in str(error)
    assert "Gloo all-reduce failed" in str(error)
    # bricks' own errors are not a lost process; nor is anything with every peer alive
    assert dogs[0].explain(ShapeError("bad input")) is None
    assert dogs[0].explain(KeyboardInterrupt()) is None
    alive, _ = _dogs()  # silent means three 1-s ticks missed: not within this wait
    for dog in alive:
        dog.check()
    assert alive[0].lost_peers(wait_s=0.1) is None


def test_settings_are_checked():
    with pytest.raises(DistributedError, match="factor, minimum_s and extension_minimum_s > 0"):
        StepWatchdog(minimum_s=0)
    with pytest.raises(DistributedError, match="lost_after_s > interval_s > 0"):
        StepWatchdog(interval_s=2.0, lost_after_s=1.0)


class _SlowAt:
    """A numpy 'algorithm' whose step ``at`` takes ``seconds``."""

    def __init__(self, at, seconds):
        self.at, self.seconds, self.done = at, seconds, 0

    def initialize(self):
        pass

    def process_batch(self, batch):
        self.done += 1
        if self.done in self.at:
            time.sleep(self.seconds)


def test_main_loop_times_steps_and_excuses_extensions():
    from bricks.extensions import FinishAfter, SimpleExtension
    from bricks.main_loop import MainLoop

    class SlowSave(SimpleExtension):
        def do(self, which_callback, *args):
            if self.main_loop.status["iterations_done"] == 12:
                time.sleep(1.0)  # longer than a step may take: excused

    aborted = []
    dog = StepWatchdog(minimum_s=0.6, extension_minimum_s=4.0, interval_s=0.05,
                       lost_after_s=1.0, index=0, count=1, store=LocalStore(),
                       on_abort=aborted.append)
    data = [{"x": np.zeros(1)} for _ in range(30)]
    algorithm = _SlowAt(at={1, 20}, seconds=1.0)  # step 1 compiles; step 20 hangs
    loop = MainLoop(algorithm, data, watchdog=dog, extensions=[
        FinishAfter(after_n_batches=25), SlowSave(after_batch=True, name="SlowSave")])
    loop.run()
    assert len(aborted) == 1, aborted
    assert "process 0 of 1 waited" in aborted[0] and "for step 20 (deadline 0.6 s" in aborted[0]
    assert dog.extension_longest["SlowSave"] >= 1.0
    assert dog._thread is None  # stopped with the loop


def test_runner_flags_make_the_watchdog():
    import argparse

    from experiments._distributed import watch_steps

    class Loop:
        watchdog = None

    flags = argparse.Namespace(step_deadline=5.0, step_deadline_factor=4.0,
                               extension_deadline=30.0)
    loop = Loop()
    watch_steps(loop, flags)
    dog = loop.watchdog
    assert (dog.factor, dog.minimum_s, dog.extension_minimum_s) == (4.0, 5.0, 30.0)
    off = Loop()
    watch_steps(off, argparse.Namespace(step_deadline=0.0))
    assert off.watchdog is False  # --step-deadline 0: none
    own = Loop()
    own.watchdog = mine = StepWatchdog(minimum_s=1.0)
    watch_steps(own, flags)
    assert own.watchdog is mine  # a config's own watchdog is kept
