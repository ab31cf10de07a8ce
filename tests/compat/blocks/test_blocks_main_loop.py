"""Blocks' tests/test_main_loop.py in bricks' idiom (pickling becomes get_state/set_state)."""

import itertools
import os
import signal
import subprocess
import sys
import textwrap
from unittest.mock import ANY, MagicMock

import numpy as np
import pytest

from bricks.data import IterableDataset
from bricks.extensions import FinishAfter, TrainingExtension
from bricks.main_loop import MainLoop

from ._blocks_training_mocks import MockAlgorithm, mock_main_loop

ported = pytest.mark.ported
ORIG = "tests/test_main_loop.py::"


class WriteBatchExtension(TrainingExtension):
    """Writes the batch MockAlgorithm saw to the log."""

    def after_batch(self, batch):
        self.main_loop.log.current_row["batch"] = self.main_loop.algorithm.batch


@ported(ORIG + "test_main_loop")
def test_main_loop():
    main_loop = MainLoop(
        MockAlgorithm(),
        IterableDataset(range(10)).get_example_stream(),
        extensions=[WriteBatchExtension(), FinishAfter(after_n_epochs=2)],
    )
    assert main_loop.iteration_state is None  # reading it before training is fine
    main_loop.run()
    with pytest.raises(AttributeError):
        _ = main_loop.model
    assert main_loop.log.status["iterations_done"] == 20
    assert main_loop.log.status["epoch_ends"] == [10, 20]
    assert len(main_loop.log) == 20
    for i in range(20):
        assert main_loop.log[i + 1]["batch"] == {"data": i % 10}


def _resumption(with_state):
    data_stream = IterableDataset(range(10)).get_example_stream()
    extensions = [WriteBatchExtension(), FinishAfter(after_n_batches=14)]
    main_loop = MainLoop(MockAlgorithm(), data_stream, extensions=extensions)
    main_loop.run()
    assert main_loop.log.status["iterations_done"] == 14
    if with_state:  # Blocks pickled the main loop; bricks carries its state over
        state = main_loop.get_state()
        main_loop = MainLoop(
            MockAlgorithm(),
            IterableDataset(range(10)).get_example_stream(),
            extensions=[WriteBatchExtension(), FinishAfter(after_n_batches=14)],
        )
        main_loop.set_state(*state)
    (finish_after,) = [e for e in main_loop.extensions if isinstance(e, FinishAfter)]
    finish_after.add_condition(
        ["after_batch"], predicate=lambda log: log.status["iterations_done"] == 27
    )
    main_loop.run()
    assert main_loop.log.status["iterations_done"] == 27
    assert main_loop.log.status["epochs_done"] == 2
    for i in range(27):
        assert main_loop.log[i + 1]["batch"] == {"data": i % 10}
    return main_loop


@ported(ORIG + "test_training_resumption")
def test_training_resumption():
    main_loop = _resumption(with_state=False)
    # bricks calls initialize() at every run(); it is idempotent (Blocks did not call it again)
    assert main_loop.algorithm.initialized == 2
    _resumption(with_state=True)


_SCRIPT = textwrap.dedent(
    """
    import itertools, sys, time
    sys.path.insert(0, {root!r})
    from bricks.data import IterableDataset
    from bricks.extensions import Printing
    from bricks.main_loop import MainLoop

    class Slow:
        def initialize(self):
            pass

        def process_batch(self, batch):
            time.sleep(0.1)
            print("batch", flush=True)

    stream = IterableDataset(itertools.count()).get_example_stream()
    MainLoop(Slow(), stream, extensions=[Printing()]).run()
    """
)


@ported(ORIG + "test_training_interrupt")
@pytest.mark.slow
def test_training_interrupt(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT.format(root=root))
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )

    def next_batch():
        for line in proc.stdout:  # Printing writes its own lines in between
            if line == "batch\n":
                return
        raise AssertionError("training ended")

    try:
        next_batch()  # training has started
        os.kill(proc.pid, signal.SIGINT)  # the first finishes the epoch: never, here
        for _ in range(3):
            next_batch()
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGINT)  # the second finishes the batch
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@ported(ORIG + "test_error")
def test_error():
    ext = TrainingExtension()
    ext.after_batch = MagicMock(side_effect=KeyError)
    ext.on_error = MagicMock()
    main_loop = mock_main_loop(extensions=[ext, FinishAfter(after_epoch=True)])
    with pytest.raises(KeyError):
        main_loop.run()
    ext.on_error.assert_called_once_with(ANY)
    assert "got_exception" in main_loop.log.current_row

    ext.on_error = MagicMock(side_effect=AttributeError)
    main_loop = mock_main_loop(extensions=[ext, FinishAfter(after_epoch=True)])
    with pytest.raises(KeyError):
        main_loop.run()
    ext.on_error.assert_called_once_with(ANY)
    assert "got_exception" in main_loop.log.current_row


def test_infinite_stream_is_lazy():
    # the interrupt test relies on an unbounded example stream
    stream = IterableDataset(itertools.count()).get_example_stream()
    first = list(itertools.islice(stream.get_epoch_iterator(as_dict=True), 3))
    assert [int(np.asarray(b["data"])) for b in first] == [0, 1, 2]
