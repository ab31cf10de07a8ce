"""MainLoop: event order, epochs, compilation count, errors, resumption, signals."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bricks.errors import MainLoopError
from bricks.extensions import FinishAfter, SimpleExtension, TrainingExtension
from bricks.main_loop import MainLoop

from .helpers import ListStream, Recorder, make_algorithm


def test_two_epochs_event_order():
    rec = Recorder()
    loop = MainLoop(
        make_algorithm(), ListStream(10), extensions=[FinishAfter(after_n_epochs=2), rec]
    )
    loop.run()
    status = loop.log.status
    assert status["iterations_done"] == 20 and status["epochs_done"] == 2
    assert status["epoch_ends"] == [10, 20]
    names = [e[0] for e in rec.events]
    assert names[:4] == ["before_training", "before_epoch", "before_batch", "after_batch"]
    assert rec.events[2] == ("before_batch", 0, 0) and rec.events[3] == ("after_batch", 1, 0)
    assert ("after_epoch", 10, 1) in rec.events
    assert rec.events[-2:] == [("after_epoch", 20, 2), ("after_training", 20, 2)]
    assert names.count("after_batch") == 20 and names.count("before_epoch") == 2
    assert loop.log.current_row["training_finished"] is True


def test_compiles_once_plus_ragged_tail():
    algorithm = make_algorithm()
    loop = MainLoop(
        algorithm, ListStream(10, batch_size=4), extensions=[FinishAfter(after_n_epochs=3)]
    )
    loop.run()
    assert loop.log.status["iterations_done"] == 9
    assert algorithm.compilations == 2  # batches of 4 and the ragged 2


def test_stream_exhaustion_and_empty_stream():
    class OneEpoch(ListStream):
        used = False

        def get_epoch_iterator(self, as_dict=True):
            if self.used:
                raise StopIteration
            self.used = True
            return super().get_epoch_iterator()

    loop = MainLoop(make_algorithm(), OneEpoch(4))
    loop.run()
    assert loop.log.status["epochs_done"] == 1
    with pytest.raises(MainLoopError, match="no batches"):
        MainLoop(make_algorithm(), []).run()


def test_error_reraised_even_if_on_error_fails():
    class Boom(SimpleExtension):
        def do(self, which, *args):
            raise KeyError("boom")

    class BadHandler(TrainingExtension):
        def on_error(self, exception=None):
            raise RuntimeError("handler failed")

    rec = Recorder()
    loop = MainLoop(
        make_algorithm(), ListStream(10), extensions=[Boom(after_n_batches=3), BadHandler(), rec]
    )
    with pytest.raises(KeyError, match="boom"):
        loop.run()
    assert rec.events[-1] == ("on_error", 3, 0)
    assert "after_training" not in [e[0] for e in rec.events]
    assert "KeyError" in loop.log.current_row["got_exception"]


def test_duplicate_extension_names_rejected():
    with pytest.raises(MainLoopError, match="unique"):
        MainLoop(make_algorithm(), ListStream(), extensions=[Recorder(), Recorder()])


def test_resume_is_exact_and_after_n_fires_once():
    class Counter(SimpleExtension):
        calls = 0

        def do(self, which, *args):
            self.calls += 1

    def build(stream):
        counter = Counter(after_n_batches=5, name="counter")
        return MainLoop(
            make_algorithm(), stream, extensions=[FinishAfter(after_n_epochs=2), counter]
        )

    full = build(ListStream(10, batch_size=3))
    full.run()
    # interrupted run: stop after 7 batches, mid-epoch 2
    partial = build(ListStream(10, batch_size=3))
    partial.extensions.append(FinishAfter(after_n_batches=6, name="stop"))
    partial.extensions[-1].set_main_loop(partial)
    partial.run()
    assert partial.log.status["iterations_done"] == 6
    state, arrays = partial.get_state()
    assert partial.extensions[1].calls == 1
    resumed = build(ListStream(10, batch_size=3))
    rec = Recorder()
    resumed.extensions.append(rec)
    rec.set_main_loop(resumed)
    resumed.run(resume=(state, arrays))
    assert rec.events[0][0] == "on_resumption"
    assert resumed.extensions[1].calls == 0  # already fired before the checkpoint
    assert resumed.log.status["iterations_done"] == full.log.status["iterations_done"] == 8
    got, want = resumed.algorithm.parameter_values(), full.algorithm.parameter_values()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_finish_after_when_resumed_past_its_point():
    loop = MainLoop(make_algorithm(), ListStream(4), extensions=[FinishAfter(after_n_batches=2)])
    loop.run()
    state, arrays = loop.get_state()
    again = MainLoop(make_algorithm(), ListStream(4), extensions=[FinishAfter(after_n_batches=1)])
    again.run(resume=(state, arrays))
    assert again.log.status["iterations_done"] == 3  # stops right after the next batch


_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    sys.path.insert(0, {tests!r})
    from helpers import ListStream, make_algorithm
    from bricks.extensions import SimpleExtension, TrainingExtension
    from bricks.main_loop import MainLoop

    class Slow(ListStream):
        def get_epoch_iterator(self, as_dict=True):
            for batch in super().get_epoch_iterator():
                time.sleep(0.05)
                yield batch

    class Report(TrainingExtension):
        def after_batch(self, batch):
            print("batch", self.main_loop.status["iterations_done"], flush=True)
        def on_interrupt(self):
            print("interrupt", flush=True)
        def after_training(self):
            s = self.main_loop.status
            print("done", s["iterations_done"], s["epochs_done"], flush=True)

    MainLoop(make_algorithm(), Slow(20), extensions=[Report()]).run()
    """
)


def _run_with_signals(tmp_path, signals):
    script = tmp_path / "train.py"
    here = os.path.dirname(__file__)
    root = os.path.dirname(os.path.dirname(here))
    script.write_text(_SCRIPT.format(root=root, tests=here))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    lines = []
    sent = 0
    for line in proc.stdout:
        lines.append(line.split())
        if sent < len(signals) and line.startswith("batch") and int(line.split()[1]) >= 3 + sent:
            os.kill(proc.pid, signals[sent])
            sent += 1
    assert proc.wait(timeout=60) == 0
    return lines


@pytest.mark.slow
def test_sigint_finishes_epoch_then_second_finishes_batch(tmp_path):
    lines = _run_with_signals(tmp_path, [signal.SIGINT])
    assert lines[-2] == ["interrupt"] and lines[-1] == ["done", "20", "1"]
    lines = _run_with_signals(tmp_path, [signal.SIGINT, signal.SIGINT])
    assert lines[-1][0] == "done" and int(lines[-1][1]) < 10 and lines[-1][2] == "0"


@pytest.mark.slow
def test_sigterm_finishes_batch(tmp_path):
    lines = _run_with_signals(tmp_path, [signal.SIGTERM])
    assert lines[-2] == ["interrupt"]
    assert lines[-1][0] == "done" and int(lines[-1][1]) < 8 and lines[-1][2] == "0"
