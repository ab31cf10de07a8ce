"""Blocks' tests/extensions/test_extensions.py in bricks' idiom."""

import re
from unittest.mock import Mock

import pytest

from bricks.extensions import (
    Checkpoint,
    CompositeExtension,
    OnLogRecord,
    SimpleExtension,
    Timestamp,
)

ported = pytest.mark.ported
ORIG = "tests/extensions/test_extensions.py::"


@ported(ORIG + "test_parse_args")
def test_parse_args():
    assert SimpleExtension.parse_args("before_batch", ("a", "b")) == (("a",), ("b",))
    assert SimpleExtension.parse_args("before_epoch", ("a", "b")) == ((), ("a", "b"))


@ported(ORIG + "test_add_list_condition")
def test_add_list_condition(tmp_path):
    extension_list = Checkpoint(tmp_path / "extension_list").add_condition(
        ["before_first_epoch", "after_epoch"],
        OnLogRecord("notification_name"),
        (str(tmp_path / "dest_path"),),
    )
    extension_iter = Checkpoint(tmp_path / "extension_iter")
    extension_iter.add_condition(
        ["before_first_epoch"], OnLogRecord("notification_name"), (str(tmp_path / "dest_path"),)
    )
    extension_iter.add_condition(
        ["after_epoch"], OnLogRecord("notification_name"), (str(tmp_path / "dest_path"),)
    )
    assert len(extension_list.conditions) == len(extension_iter.conditions)
    with pytest.raises(ValueError, match=r"\['after_epoch'\]"):
        extension_iter.add_condition(
            callbacks_names="after_epoch",
            predicate=OnLogRecord("notification_name"),
            arguments=(str(tmp_path / "dest_path"),),
        )


@ported(ORIG + "test_composite_extension_main_loop_assignment")
def test_composite_extension_main_loop_assignment():
    ext1, ext2 = Mock(), Mock()
    comp = CompositeExtension([ext1, ext2])
    comp.main_loop = object()
    assert ext1.main_loop == comp.main_loop
    assert ext2.main_loop == comp.main_loop


@ported(ORIG + "test_composite_extension_dispatches")
def test_composite_extension_dispatches():
    ext1, ext2 = Mock(), Mock()
    comp = CompositeExtension([ext1, ext2])
    comp.main_loop = object()
    comp.dispatch("before_training")
    ext1.dispatch.assert_called_once_with("before_training")
    ext2.dispatch.assert_called_once_with("before_training")
    comp.dispatch("after_batch", 5)
    ext1.dispatch.assert_called_with("after_batch", 5)
    ext2.dispatch.assert_called_with("after_batch", 5)


class _Foo(SimpleExtension):
    def __init__(self, num, **kwargs):
        self.num = num
        super().__init__(**kwargs)

    def do(self, which_callback, *args):
        self.num += 1


class _Bar(CompositeExtension):
    def do(self, which_callback, *args):
        self.num = 0
        for sub in self.sub_extensions:
            self.num += sub.num


@ported(ORIG + "test_composite_extension_run_before")
def test_composite_extension_run_before():
    comp = _Bar(
        [_Foo(1, before_training=True), _Foo(2, before_training=True)], before_training=True
    )
    comp.main_loop = Mock()
    comp.dispatch("before_training")
    assert comp.num == 3


@ported(ORIG + "test_composite_extension_run_after")
def test_composite_extension_run_after():
    comp = _Bar(
        [_Foo(1, before_training=True), _Foo(2, before_training=True)],
        before_training=True,
        run_before_children=False,
    )
    comp.main_loop = Mock()
    comp.dispatch("before_training")
    assert comp.num == 5


class _Spy(SimpleExtension):
    def __init__(self, **kwargs):
        self.do = Mock()
        super().__init__(**kwargs)

    def do(self, *args):
        pass


@ported(ORIG + "test_composite_extension_different_schedules")
def test_composite_extension_different_schedules():
    a = _Spy(after_batch=False, after_training=True, name="a")
    b = _Spy(after_batch=True, name="b")
    comp = CompositeExtension([a, b], before_training=True)
    comp.main_loop = Mock()
    comp.do = Mock()
    comp.dispatch("before_training")
    comp.dispatch("after_batch")
    comp.dispatch("after_training")
    comp.do.assert_called_once_with("before_training")
    a.do.assert_called_once_with("after_training")
    b.do.assert_called_once_with("after_batch")


@ported(ORIG + "test_simple_extension_before_batch_callback")
def test_simple_extension_before_batch_callback():
    ext = _Spy(before_batch=True)
    ext.main_loop = Mock()
    ext.dispatch("before_batch")
    ext.do.assert_called_once_with("before_batch")


class InjectedTimestamp(Timestamp):
    def __init__(self, **kwargs):
        self.returns = ["foo", "bar", "baz"]
        super().__init__(**kwargs)

    def get_timestamp(self):
        if self.returns:
            return self.returns.pop()
        return super().get_timestamp()


@ported(ORIG + "test_timestamp")
@pytest.mark.parametrize("kwargs", [{}, {"log_record": "loggy mclogpants"}, {"separator": "T"}])
def test_timestamp(kwargs):
    log_record = kwargs.get("log_record", Timestamp.DEFAULT_LOG_RECORD)
    ext = InjectedTimestamp(**kwargs)
    ext.main_loop = Mock()
    ext.main_loop.log.current_row = {}
    for expected in ("baz", "bar", "foo"):
        ext.do("after_epoch")
        assert ext.main_loop.log.current_row[log_record] == expected
    ext.do("after_epoch")  # the original get_timestamp
    sep = kwargs.get("separator", " ")
    pattern = "[0-9]{4}-[0-9]{2}-[0-9]{2}" + sep + "[0-9]{2}(\\:[0-9]{2}){2}\\.[0-9]+"
    assert re.match(pattern, ext.main_loop.log.current_row[log_record])


@ported(ORIG + "test_timestamp_default_triggers")
@pytest.mark.parametrize("callback", Timestamp.DEFAULT_TRIGGERS)
def test_timestamp_default_triggers(callback):
    ext = InjectedTimestamp()
    ext.main_loop = Mock()
    ext.main_loop.log.current_row = {}
    ext.dispatch(callback)
    assert ext.main_loop.log.current_row.get("timestamp") == "baz"


def test_timestamp_user_conditions_replace_the_defaults():
    ext = InjectedTimestamp(after_batch=True)
    ext.main_loop = Mock()
    ext.main_loop.log.current_row = {}
    ext.dispatch("after_epoch")
    assert "timestamp" not in ext.main_loop.log.current_row
    ext.dispatch("after_batch", {})
    assert ext.main_loop.log.current_row["timestamp"] == "baz"
