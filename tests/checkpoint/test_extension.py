"""The Checkpoint and Load extensions in one process: resume, async values,
shape mismatches, locks, signals during a save, exit codes."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

import bricks.checkpoint._format as fmt
import bricks.checkpoint._resume as resume
from bricks.algorithms import Adam, GradientDescent
from bricks.checkpoint import (
    EXIT_INTERRUPTED,
    CheckpointManager,
    exit_status,
    find_checkpoint,
    load_parameters,
    read_checkpoint,
    verify_checkpoint,
)
from bricks.data import DataStream, IndexableDataset, ShuffledScheme
from bricks.errors import CheckpointError, CheckpointLockedError, CheckpointMismatchError
from bricks.extensions import FinishAfter, SimpleExtension, TrainingDataMonitoring
from bricks.extensions.checkpoint import Checkpoint, Load
from bricks.main_loop import MainLoop


def _loop(ckpt: Path, steps: int, extra=(), dim: int = 3, **ckpt_kwargs) -> MainLoop:
    x = np.arange(24 * dim, dtype=np.float32).reshape(24, dim) / 10.0
    stream = DataStream(IndexableDataset({"x": x}), iteration_scheme=ShuffledScheme(24, 4, seed=1))
    algorithm = GradientDescent(
        cost=lambda p, x: ((p["w"][None, :] - x) ** 2).mean(),
        parameters={"w": np.zeros(dim, np.float32)},
        step_rule=Adam(0.1),
    )
    return MainLoop(
        algorithm,
        stream,
        extensions=[
            TrainingDataMonitoring(["cost"], after_batch=True),
            FinishAfter(after_n_batches=steps),
            Checkpoint(ckpt, **ckpt_kwargs),
            *extra,
        ],
    )


def _params(loop: MainLoop) -> np.ndarray:
    return np.asarray(loop.algorithm.parameter_values()["w"])


def test_resume_in_process_equals_a_straight_run(tmp_path: Path) -> None:
    straight = _loop(tmp_path / "a", 20)
    straight.run()
    first = _loop(tmp_path / "b", 7)
    first.run()
    assert find_checkpoint(tmp_path / "b")[0].name == "ckpt-000000007"
    resumed = _loop(tmp_path / "b", 20)
    resumed.run(resume=tmp_path / "b")
    assert resumed.status["resumed_from"] == 7
    np.testing.assert_array_equal(_params(resumed), _params(straight))
    for k in range(8, 21):
        assert resumed.log[k]["train_cost"] == straight.log[k]["train_cost"]
    np.testing.assert_array_equal(load_parameters(tmp_path / "b")["w"], _params(straight))


def test_load_extension_resumes_and_starts_fresh_when_nothing_is_there(tmp_path: Path) -> None:
    straight = _loop(tmp_path / "a", 12)
    straight.run()
    fresh = _loop(tmp_path / "b", 5, extra=[Load(tmp_path / "b")])
    fresh.run()  # nothing to load yet: trains from scratch
    assert fresh.find_extension("Load").loaded_from is None
    again = _loop(tmp_path / "b", 12, extra=[Load(tmp_path / "b")])
    again.extensions.insert(0, again.extensions.pop())  # Load first
    again.run()
    assert again.find_extension("Load").loaded_from.name == "ckpt-000000005"
    np.testing.assert_array_equal(_params(again), _params(straight))


class _Record(SimpleExtension):
    def __init__(self) -> None:
        super().__init__(name="Record", every_n_batches=5)
        self.values: dict[int, np.ndarray] = {}

    def do(self, which_callback: str, *args: object) -> None:
        done = self.main_loop.status["iterations_done"]
        self.values[done] = _params(self.main_loop).copy()


def test_async_saves_hold_the_values_of_the_save_call(tmp_path: Path) -> None:
    record = _Record()
    loop = _loop(tmp_path, 23, extra=[record], every_n_batches=5, async_save=True, if_busy="wait")
    checkpoint = loop.find_extension("Checkpoint")
    loop.run()
    assert checkpoint._thread is None  # after_training waited
    saved = {int(p.name[5:14]): p for p in CheckpointManager(tmp_path, lock=False).checkpoints()}
    assert sorted(saved) == [5, 10, 15, 20, 23]
    for step, value in record.values.items():
        _, arrays, meta = read_checkpoint(saved[step])
        assert meta["iterations_done"] == step
        np.testing.assert_array_equal(arrays["algorithm/params/w"], value)
    assert len(checkpoint.save_times) == 5


class _EveryBatch(SimpleExtension):
    """Records the parameters after every batch; at ``release_at`` sets ``release``."""

    def __init__(self, release_at: int) -> None:
        super().__init__(name="EveryBatch", after_batch=True)
        self.values: dict[int, np.ndarray] = {}
        self.release_at = release_at
        self.release = threading.Event()
        self.live_at_save: dict[int, object] = {}

    def do(self, which_callback: str, *args: object) -> None:
        done = self.main_loop.status["iterations_done"]
        self.values[done] = _params(self.main_loop).copy()
        if done >= self.release_at:
            self.release.set()


def _held_writer(monkeypatch: pytest.MonkeyPatch, release: threading.Event) -> list[int]:
    """Make the writer thread wait for ``release`` before it reads the snapshot."""
    original = resume.PendingPayload.result
    reads: list[int] = []

    def held(self):
        assert release.wait(60), "training did not go on while the save was pending"
        reads.append(self._main_loop_meta["iterations_done"])
        return original(self)

    monkeypatch.setattr(resume.PendingPayload, "result", held)
    return reads


def test_an_async_save_writes_the_values_of_the_save_call_though_training_donated_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer reads the snapshot only after 4 more steps, each of which
    donated (and overwrote) the state buffers of the save call."""
    record = _EveryBatch(release_at=9)
    loop = _loop(tmp_path, 12, extra=[record], every_n_batches=5, async_save=True, if_busy="wait")
    reads = _held_writer(monkeypatch, record.release)
    checkpoint = loop.find_extension("Checkpoint")
    live: list[object] = []
    original_save = checkpoint.save

    def save_and_remember():
        live.append(loop.algorithm._state["params"]["w"])  # the buffer that gets donated
        return original_save()

    monkeypatch.setattr(checkpoint, "save", save_and_remember)
    loop.run()
    assert reads == [5, 10, 12]  # the first write read its snapshot after step 9
    assert live[0].is_deleted()  # a later step donated the state of the save call
    assert not np.array_equal(record.values[5], record.values[9])  # training went on
    saved = {int(p.name[5:14]): p for p in CheckpointManager(tmp_path, lock=False).checkpoints()}
    assert sorted(saved) == [5, 10, 12]
    for step, path in saved.items():
        _, arrays, meta = read_checkpoint(path)
        assert meta["iterations_done"] == step
        np.testing.assert_array_equal(arrays["algorithm/params/w"], record.values[step])
    resumed = _loop(tmp_path / "again", 12)
    resumed.run(resume=saved[5])
    np.testing.assert_array_equal(_params(resumed), record.values[12])


def test_a_snapshot_does_not_share_buffers_with_the_training_state(tmp_path: Path) -> None:
    loop = _loop(tmp_path, 6)
    loop.run()
    live = loop.algorithm._state
    pending = resume.main_loop_snapshot(loop)
    assert pending is not None
    snapshot = pending._snapshot._tree
    for a, b in zip(jax_leaves(live), jax_leaves(snapshot), strict=True):
        assert a.unsafe_buffer_pointer() != b.unsafe_buffer_pointer()
    state, arrays, meta = pending.result()
    sync_state, sync_arrays, sync_meta = resume.main_loop_payload(loop)
    assert state == sync_state  # the same layout as MainLoop.get_state
    assert sorted(arrays) == sorted(sync_arrays)
    for name, value in sync_arrays.items():
        np.testing.assert_array_equal(arrays[name], value)
    assert meta["config_hash"] == sync_meta["config_hash"]
    assert meta["iterations_done"] == 6 and pending.nonfinite_at is None


def test_a_snapshot_taken_after_a_nonfinite_cost_is_not_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loop = _loop(tmp_path, 3)
    loop.run()
    checkpoint = loop.find_extension("Checkpoint")
    pending = resume.main_loop_snapshot(loop)
    assert pending is not None
    snapshot = pending._snapshot
    # as if step 2's cost was NaN: the guard's counters are (bad, skipped, consecutive)
    snapshot._tree = dict(snapshot._tree, counters=np.array([2, 0, 0], np.int32))
    before = CheckpointManager(tmp_path, lock=False).checkpoints()
    with caplog.at_level("WARNING"):
        checkpoint._write_pending(3, pending, {})
    assert pending.nonfinite_at == 2 and "non-finite" in caplog.text
    assert CheckpointManager(tmp_path, lock=False).checkpoints() == before
    assert checkpoint._error is None


def jax_leaves(tree: object) -> list:
    import jax

    return [leaf for leaf in jax.tree_util.tree_leaves(tree) if isinstance(leaf, jax.Array)]


def test_periodic_async_saves_are_skipped_while_one_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = _EveryBatch(release_at=17)
    loop = _loop(tmp_path, 21, extra=[record], every_n_batches=4, async_save=True)
    _held_writer(monkeypatch, record.release)
    loop.run()
    checkpoint = loop.find_extension("Checkpoint")
    assert checkpoint.skipped[:3] == [8, 12, 16]  # the step-4 write was held until step 17
    saved = {int(p.name[5:14]): p for p in CheckpointManager(tmp_path, lock=False).checkpoints()}
    assert 4 in saved and 21 in saved  # after_training is never skipped
    assert not set(checkpoint.skipped) & set(saved)
    for step, path in saved.items():
        np.testing.assert_array_equal(
            read_checkpoint(path)[1]["algorithm/params/w"], record.values[step]
        )
    with pytest.raises(CheckpointError, match="if_busy"):
        Checkpoint(tmp_path, async_save=True, if_busy="queue")


def test_resuming_a_model_of_another_shape_names_the_parameter_and_shapes(tmp_path: Path) -> None:
    _loop(tmp_path, 3).run()
    other = _loop(tmp_path, 6, dim=4)
    with pytest.raises(CheckpointMismatchError, match=r"'w'.*\(4,\).*\(3,\)"):
        other.run(resume=tmp_path)


def test_a_second_run_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    holder = CheckpointManager(tmp_path)
    holder.acquire()
    with pytest.raises(CheckpointLockedError, match=f"pid {os.getpid()}"):
        _loop(tmp_path, 3).run()
    holder.release()
    _loop(tmp_path, 3).run()


def test_keep_last_through_the_extension(tmp_path: Path) -> None:
    _loop(tmp_path, 20, every_n_batches=3, keep_last=2).run()
    names = [p.name for p in CheckpointManager(tmp_path, lock=False).checkpoints()]
    assert names == ["ckpt-000000018", "ckpt-000000020"]


class _Terminate(SimpleExtension):
    def __init__(self, at: int) -> None:
        super().__init__(name="Terminate", before_batch=True)
        self.at = at

    def do(self, which_callback: str, *args: object) -> None:
        if self.main_loop.status["iterations_done"] == self.at - 1:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_finishes_the_batch_saves_and_gives_the_exit_code(tmp_path: Path) -> None:
    loop = _loop(tmp_path, 50, extra=[_Terminate(4)])
    loop.run()
    assert loop.status["iterations_done"] == 4
    assert exit_status(loop) == EXIT_INTERRUPTED == 75
    path, _ = find_checkpoint(tmp_path)
    assert path.name == "ckpt-000000004"  # one save: after_training did not repeat it
    assert len(CheckpointManager(tmp_path, lock=False).checkpoints()) == 1
    finished = _loop(tmp_path, 6)
    finished.run(resume=tmp_path)
    assert finished.status["iterations_done"] == 6 and exit_status(finished) == 0


def test_a_second_signal_during_the_save_waits_for_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = _loop(tmp_path, 2)
    loop.run()
    checkpoint = loop.find_extension("Checkpoint")
    received: list[int] = []
    original_fault = fmt._fault

    def interrupt_midway(step: str) -> None:
        if step == "arrays":
            os.kill(os.getpid(), signal.SIGINT)  # arrives while the save is being written
        original_fault(step)

    monkeypatch.setattr(fmt, "_fault", interrupt_midway)
    old = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        path = checkpoint.save()
        assert received == [signal.SIGINT]  # delivered, but only after the commit
    finally:
        signal.signal(signal.SIGINT, old)
    assert path is not None and verify_checkpoint(path) == []
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
