"""Blocks' tests/extensions/test_stopping.py in bricks' idiom."""

import logging
from collections import defaultdict
from unittest.mock import Mock

import pytest

from bricks.extensions import EarlyStopping, FinishIfNoImprovementAfter, OnLogRecord

ported = pytest.mark.ported
ORIG = "tests/extensions/test_stopping.py::"
NO_IMPROVEMENT = ORIG + "FinishIfNoImprovementAfterTester::"
EARLY = ORIG + "EarlyStoppingTester::"


class FakeLog(defaultdict):
    epoch_length = 4

    def __init__(self):
        super().__init__(dict)
        self.status = {"iterations_done": 0, "epochs_done": 0}

    def advance(self, epochs):
        self.status["iterations_done"] += self.epoch_length if epochs else 1
        self.status["epochs_done"] += (
            epochs if epochs else self.status["iterations_done"] // self.epoch_length
        )

    @property
    def current_row(self):
        return self[self.status["iterations_done"]]


class FakeMainLoop:
    def __init__(self, extensions=()):
        self.log = FakeLog()
        self.extensions = list(extensions)

    @property
    def status(self):
        return self.log.status


def _check_no_improvement(ext, notification_name, log_entry=None, epochs=False):
    main_loop = FakeMainLoop()
    ext.main_loop = main_loop
    log = main_loop.log
    which = "after_epoch" if epochs else "after_batch"
    if log_entry is None:
        log_entry = notification_name + "_patience_" + ("epochs" if epochs else "iterations")

    def step(patience, stopping=False, best=False):
        if best:
            log.current_row[notification_name] = True
        ext.do(which)
        assert log.current_row[log_entry] == patience
        assert log.current_row.get("training_finish_requested", False) is stopping
        log.advance(epochs)

    step(3, best=True)
    step(2)
    step(1)
    step(3, best=True)
    step(2)
    step(1)
    step(0, stopping=True)


@ported(NO_IMPROVEMENT + "test_finish_if_no_improvement_after_iterations")
def test_finish_if_no_improvement_after_iterations():
    _check_no_improvement(FinishIfNoImprovementAfter("bananas", iterations=3), "bananas")


@ported(NO_IMPROVEMENT + "test_finish_if_no_improvement_after_epochs")
def test_finish_if_no_improvement_after_epochs():
    ext = FinishIfNoImprovementAfter("mangos", epochs=3)
    _check_no_improvement(ext, "mangos", epochs=True)


@ported(NO_IMPROVEMENT + "test_finish_if_no_improvement_after_epochs_log_record_specified")
def test_finish_if_no_improvement_after_epochs_log_record_specified():
    ext = FinishIfNoImprovementAfter("melons", patience_log_record="blueberries", iterations=3)
    _check_no_improvement(ext, "melons", "blueberries")


@ported(NO_IMPROVEMENT + "test_finish_if_no_improvement_after_specify_both")
def test_finish_if_no_improvement_after_specify_both():
    with pytest.raises(ValueError):
        FinishIfNoImprovementAfter("boo", epochs=4, iterations=5)


def _fake_training_run(main_loop, loss_values, ext, epochs, key):
    ext.main_loop = main_loop
    main_loop.log.current_row[key] = loss_values[0]
    for value in loss_values[1:]:
        main_loop.log.advance(epochs)
        main_loop.log.current_row[key] = value
        ext.dispatch("after_epoch" if epochs else "after_batch")
        yield dict(main_loop.log.current_row)


def _check_run(ext, epochs, record_name):
    patience = record_name + "_best_so_far_patience_" + ("epochs" if epochs else "iterations")
    notification = record_name + "_best_so_far"
    entries = list(
        _fake_training_run(FakeMainLoop(), [9, 8, 7, 8, 7, 6, 7, 7, 7], ext, epochs, record_name)
    )
    expected = [(True, 3), (True, 3), (False, 2), (False, 1), (True, 3), (False, 2), (False, 1)]
    expected.append((False, 0))
    for entry, (best, left) in zip(entries, expected, strict=True):
        assert (notification in entry) is best
        assert entry[patience] == left
    assert entries[7]["training_finish_requested"]
    assert not any(e.get("training_finish_requested") for e in entries[:7])


@ported(EARLY + "test_epochs")
def test_epochs():
    _check_run(EarlyStopping("foo", epochs=3, after_epoch=True), epochs=True, record_name="foo")


@ported(EARLY + "test_iterations")
def test_iterations():
    ext = EarlyStopping("bar", iterations=3, after_batch=True)
    _check_run(ext, epochs=False, record_name="bar")


def _checkpoint_mock():
    chkpt = Mock()
    chkpt.add_condition = Mock()
    return chkpt


@ported(EARLY + "test_checkpoint_setup")
def test_checkpoint_setup():
    chkpt = _checkpoint_mock()
    EarlyStopping(
        "foo",
        iterations=3,
        notification_name="notified",
        checkpoint_extension=chkpt,
        checkpoint_filename="abcdefg",
    )
    chkpt.add_condition.assert_called_with(["after_batch"], OnLogRecord("notified"), ("abcdefg",))
    with pytest.raises(ValueError, match="checkpoint_filename"):
        EarlyStopping("foo", iterations=3, checkpoint_extension=chkpt)


@ported(EARLY + "test_add_checkpoint_to_self_if_not_in_main_loop")
def test_add_checkpoint_to_self_if_not_in_main_loop():
    main_loop = FakeMainLoop()
    chkpt = _checkpoint_mock()
    ext = EarlyStopping(
        "foo",
        iterations=3,
        notification_name="notified",
        checkpoint_extension=chkpt,
        checkpoint_filename="abcdefg",
    )
    ext.main_loop = main_loop
    ext.dispatch("before_training")
    assert chkpt in ext.sub_extensions
    assert chkpt.main_loop == main_loop


@ported(EARLY + "test_add_checkpoint_to_self_if_in_main_loop")
def test_add_checkpoint_to_self_if_in_main_loop(caplog):
    main_loop = FakeMainLoop()
    chkpt = _checkpoint_mock()
    main_loop.extensions.append(chkpt)
    ext = EarlyStopping(
        "foo",
        iterations=3,
        notification_name="notified",
        checkpoint_extension=chkpt,
        checkpoint_filename="abcdefg",
    )
    main_loop.extensions.append(ext)
    ext.main_loop = main_loop
    with caplog.at_level(logging.WARNING):
        ext.dispatch("before_training")
    assert chkpt not in ext.sub_extensions
    assert "after EarlyStopping" in caplog.text  # the checkpoint runs first: one event late
