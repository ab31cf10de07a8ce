"""Conditions a user gives replace an extension's defaults of their kind (issue 14, item 16).

Blocks added them to the defaults: ``Timing(every_n_epochs=2)`` fired twice at
even epochs (the second time overwriting its records with about 0) and
``Printing(every_n_epochs=10)`` printed after every epoch.
"""

from __future__ import annotations

import io
import time

import pytest

from bricks.errors import ExtensionError
from bricks.extensions import (
    Checkpoint,
    DataStreamMonitoring,
    EarlyStopping,
    FinishAfter,
    FinishIfNoImprovement,
    FinishIfNoImprovementAfter,
    Load,
    Printing,
    SharedVariableModifier,
    SimpleExtension,
    Timestamp,
    Timing,
    TrackTheBest,
    TrainingDataMonitoring,
    TrainingExtension,
)
from bricks.extensions.base import merge_conditions
from bricks.main_loop import MainLoop

from .helpers import ListStream, make_algorithm


def events(ext: SimpleExtension) -> list[str]:
    """The callbacks ``ext`` runs on, one entry per condition."""
    return sorted(name for name, _, _ in ext.conditions)


def test_merge_replaces_defaults_of_the_same_kind_only():
    defaults = {"before_first_epoch": True, "after_epoch": True, "after_training": True}
    assert merge_conditions(defaults, {}) == defaults
    assert merge_conditions(defaults, {"every_n_epochs": 10}) == {
        "before_first_epoch": True,
        "after_training": True,
        "every_n_epochs": 10,
    }
    # a batch schedule leaves the epoch default, unless the extension has one schedule
    assert merge_conditions(defaults, {"every_n_batches": 5})["after_epoch"] is True
    assert "after_epoch" not in merge_conditions(defaults, {"every_n_batches": 5}, True)
    assert "after_epoch" not in merge_conditions(defaults, {"after_n_epochs": 5})
    # before_epoch and before_first_epoch are one kind; False removes; None is not given
    assert merge_conditions(defaults, {"before_epoch": True, "after_training": False}) == {
        "after_epoch": True,
        "before_epoch": True,
        "after_training": False,
    }
    assert merge_conditions(defaults, {"after_epoch": None}) == defaults


class SlowBatches(TrainingExtension):
    """Sleeps before each batch so that epochs take a measurable time."""

    def __init__(self, seconds: float) -> None:
        super().__init__("slow")
        self.seconds = seconds

    def before_batch(self, batch) -> None:
        time.sleep(self.seconds)


def _run(*extensions, epochs: int, batches: int = 2) -> MainLoop:
    loop = MainLoop(
        make_algorithm(),
        ListStream(batches, batch_size=1),
        extensions=[*extensions, FinishAfter(after_n_epochs=epochs)],
    )
    loop.run()
    return loop


def test_timing_every_n_batches_keeps_its_epoch_records():
    loop = _run(Timing(every_n_batches=2), epochs=2, batches=2)
    assert [it for it, row in loop.log if "time_train_this_batch" in row] == [2, 4]
    assert [it for it, row in loop.log if "time_train_this_epoch" in row] == [2, 4]


def test_timing_every_two_epochs_fires_once_per_two_epochs():
    every = Timing(prefix="two", every_n_epochs=2, name="two")
    each = Timing(prefix="one", name="one")
    assert events(every) == ["after_epoch", "before_epoch"]
    assert events(each) == ["after_epoch", "before_epoch"]
    loop = _run(SlowBatches(0.02), each, every, epochs=4, batches=2)
    rows = {it: row for it, row in loop.log if "one_time_this_epoch" in row}
    assert sorted(rows) == [2, 4, 6, 8]
    two = {it: r["two_time_this_epoch"] for it, r in rows.items() if "two_time_this_epoch" in r}
    assert sorted(two) == [4, 8]  # epochs 2 and 4 only
    for it in (4, 8):
        # it covers two epochs of 2 batches of >= 20 ms (not the ~0 of a second firing)
        assert two[it] >= 0.075
        both = rows[it - 2]["one_time_this_epoch"] + rows[it]["one_time_this_epoch"]
        assert two[it] == pytest.approx(both, abs=0.05)


def test_printing_every_n_epochs_prints_only_then():
    out = io.StringIO()
    printing = Printing(file=out, every_n_epochs=2)
    assert events(printing) == [
        "after_epoch", "after_training", "before_epoch", "on_interrupt", "on_resumption"
    ]
    _run(printing, epochs=4)
    text = out.getvalue()
    assert text.count("AFTER ANOTHER EPOCH") == 2
    assert text.count("BEFORE EPOCH") == 1 and text.count("AFTER TRAINING") == 1


def test_printing_defaults_and_batch_schedule():
    assert events(Printing()) == [
        "after_epoch", "after_training", "before_epoch", "on_interrupt", "on_resumption"
    ]
    # printing more often (as in Blocks), or only then
    out = io.StringIO()
    _run(Printing(file=out, every_n_batches=3), epochs=2, batches=3)
    text = out.getvalue()
    assert text.count("AFTER BATCH") == 2 and text.count("AFTER ANOTHER EPOCH") == 2
    out = io.StringIO()
    _run(Printing(file=out, every_n_batches=3, after_epoch=False), epochs=2, batches=3)
    text = out.getvalue()
    assert text.count("AFTER BATCH") == 2 and "AFTER ANOTHER EPOCH" not in text
    out = io.StringIO()
    _run(Printing(file=out, after_training=False, before_first_epoch=False), epochs=1)
    assert "AFTER TRAINING" not in out.getvalue() and "BEFORE EPOCH" not in out.getvalue()


def test_timestamp_keeps_the_defaults_a_condition_does_not_replace():
    assert events(Timestamp()) == sorted(Timestamp.DEFAULT_TRIGGERS)
    stamped = Timestamp(every_n_epochs=2, on_error=False)
    assert events(stamped) == sorted(
        ["before_training", "after_epoch", "on_interrupt", "on_resumption", "after_training"]
    )
    loop = _run(stamped, epochs=3, batches=2)
    assert [it for it, row in loop.log if "timestamp" in row] == [0, 4, 6]
    # one schedule: stamping after batches replaces the after_epoch default
    assert "after_epoch" not in events(Timestamp(every_n_batches=2))


def test_tracking_and_stopping_extensions_take_the_schedule_given():
    assert events(TrackTheBest("cost")) == ["after_epoch"]
    assert events(TrackTheBest("cost", every_n_batches=5)) == ["after_batch"]
    assert events(TrackTheBest("cost", after_n_epochs=3)) == ["after_epoch"]
    assert events(FinishIfNoImprovement("cost", epochs=2)) == ["after_epoch"]
    assert events(FinishIfNoImprovement("cost", iterations=5)) == ["after_batch"]
    assert events(FinishIfNoImprovement("cost", epochs=2, every_n_epochs=2)) == ["after_epoch"]
    assert events(FinishIfNoImprovementAfter("c_best_so_far", epochs=2)) == ["after_epoch"]
    assert events(FinishIfNoImprovementAfter("c_best_so_far", epochs=2, every_n_batches=4)) == [
        "after_batch"
    ]
    stopping = EarlyStopping("cost", epochs=2, every_n_batches=4)
    for part in stopping.sub_extensions:
        assert events(part) == ["after_batch"], part
    for part in EarlyStopping("cost", epochs=2).sub_extensions:
        assert events(part) == ["after_epoch"], part


def test_other_extensions_with_defaults(tmp_path):
    checkpoint = Checkpoint(tmp_path / "ckpt", every_n_epochs=2)
    assert events(checkpoint) == ["after_epoch", "after_training", "on_interrupt"]
    assert events(Checkpoint(tmp_path / "c2", after_training=False)) == ["on_interrupt"]
    assert events(Load(tmp_path)) == ["before_training"]
    assert events(Load(tmp_path, on_resumption=True)) == ["before_training", "on_resumption"]
    assert events(SharedVariableModifier("learning_rate", lambda n: 0.1)) == ["after_batch"]
    assert events(SharedVariableModifier("learning_rate", lambda n: 0.1, every_n_epochs=1)) == [
        "after_epoch"
    ]
    assert events(TrainingDataMonitoring(["cost"])) == ["after_epoch"]
    assert events(TrainingDataMonitoring(["cost"], every_n_batches=3)) == ["after_batch"]
    assert events(DataStreamMonitoring(["cost"], ListStream(2))) == ["after_epoch", "before_epoch"]
    assert events(DataStreamMonitoring(["cost"], ListStream(2), every_n_batches=3)) == [
        "after_batch"
    ]


def test_unknown_conditions_are_still_refused():
    with pytest.raises(ExtensionError, match="every_n_epoch"):
        Printing(every_n_epoch=2)
