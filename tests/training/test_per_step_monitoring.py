"""Per-batch monitoring keeps each step's values on the device and reads many steps
back at once (``add_monitor(per_step=True)``): the log is the one of a read after
every step, also across resumes, rollbacks of conditions and log readers."""

from __future__ import annotations

import numpy as np
import pytest

import bricks.algorithms.monitor_slots as monitor_slots
from bricks.algorithms import Momentum
from bricks.errors import AlgorithmError
from bricks.extensions import FinishAfter, TrainingDataMonitoring, TrainingExtension
from bricks.main_loop import MainLoop
from tests.training.helpers import ListStream, linear_cost, make_algorithm


def _numpy_costs(n: int, batch: int, epochs: int, lr=0.05, mom=0.9) -> list[float]:
    """Each step's cost of the linear model under momentum, in numpy (independent)."""
    data = ListStream(n=n, batch_size=batch).data
    w, b = np.full(3, 0.1, np.float64), 0.0
    vw, vb = np.zeros(3), 0.0
    costs = []
    for _ in range(epochs):
        for lo in range(0, n, batch):
            x, y = data["x"][lo : lo + batch].astype(np.float64), data["y"][lo : lo + batch]
            err = x @ w + b - y
            costs.append(float((err**2).mean()))
            gw, gb = 2 * x.T @ err / len(y), 2 * err.mean()
            vw, vb = mom * vw + gw, mom * vb + gb
            w, b = w - lr * vw, b - lr * vb
    return costs


class Reader(TrainingExtension):
    """Reads the log every ``every`` batches (so pending rows must be complete then)."""

    def __init__(self, every: int) -> None:
        super().__init__("reader")
        self.every, self.seen = every, {}

    def after_batch(self, batch) -> None:
        done = self.main_loop.status["iterations_done"]
        if done % self.every == 0:
            self.seen[done] = self.main_loop.log[done].get("train_cost")

    def batches_until_needed(self, iterations_done: int) -> int:
        return self.every - iterations_done % self.every


def _run(n=300, batch=2, epochs=1, extra=(), **monitor):
    algorithm = make_algorithm(Momentum(0.05, 0.9))
    monitor = monitor or {"after_batch": True}
    loop = MainLoop(
        algorithm,
        ListStream(n=n, batch_size=batch),
        extensions=[
            TrainingDataMonitoring(["cost", algorithm.total_gradient_norm], **monitor),
            *extra,
            FinishAfter(after_n_epochs=epochs),
        ],
    )
    loop.run()
    return loop, algorithm


def _per_batch_loop(n, k=1, before=(), **finish):
    """A MainLoop over ``n`` examples in batches of 2 reporting the cost after every batch
    (``before``: extensions placed ahead of the monitor)."""
    algorithm = make_algorithm(Momentum(0.05, 0.9))
    loop = MainLoop(
        algorithm,
        ListStream(n=n, batch_size=2),
        extensions=[
            *before,
            TrainingDataMonitoring(["cost"], after_batch=True),
            FinishAfter(**finish),
        ],
        steps_per_call=k,
    )
    return loop, algorithm


def test_every_row_has_its_own_step_value_across_many_read_backs():
    loop, algorithm = _run(n=300, batch=2)  # 150 steps: more than two sets of 64
    assert algorithm.steps_kept(0) == monitor_slots.RING_STEPS
    assert algorithm._state["acc"][0].shape == (monitor_slots.RING_STEPS + 1, 3)
    want = _numpy_costs(300, 2, 1)
    got = [loop.log[i]["train_cost"] for i in range(1, 151)]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert all("train_total_gradient_norm" in loop.log[i] for i in range(1, 151))


def test_the_log_equals_the_one_read_after_every_step(monkeypatch):
    reader = Reader(every=10)
    ring, _ = _run(n=260, batch=2, epochs=2, extra=[reader])
    monkeypatch.setattr(monitor_slots, "ring_rows", lambda size: 0)  # sums only
    reader_sums = Reader(every=10)
    sums, algorithm = _run(n=260, batch=2, epochs=2, extra=[reader_sums])
    assert algorithm.steps_kept(0) == 0
    assert ring.log.get_state()["rows"] == sums.log.get_state()["rows"]
    # a reader of the log every 10 batches sees the row complete (a partial read-back)
    assert reader.seen == reader_sums.seen and len(reader.seen) == 26
    assert all(value is not None for value in reader.seen.values())


def test_conditions_other_than_every_batch_keep_sums():
    loop, algorithm = _run(n=40, batch=2, every_n_batches=4)
    assert algorithm.steps_kept(0) == 0
    want = _numpy_costs(40, 2, 1)
    np.testing.assert_allclose(loop.log[8]["train_cost"], np.mean(want[4:8]), rtol=1e-5)


def test_read_monitor_of_a_per_step_slot_is_the_mean_since_the_last_read():
    algorithm = make_algorithm(Momentum(0.05, 0.9))
    slot = algorithm.add_monitor(["cost"], per_step=True)
    for batch in list(ListStream(n=10, batch_size=2).get_epoch_iterator()):
        algorithm.process_batch(batch)
    want = _numpy_costs(10, 2, 1)
    np.testing.assert_allclose(algorithm.read_monitor(slot)["cost"], np.mean(want), rtol=1e-5)
    algorithm.process_batch({"x": np.ones((2, 3), np.float32), "y": np.zeros(2, np.float32)})
    values = algorithm.start_read_steps(slot, 1)()
    assert len(values) == 1 and values[0]["cost"] > 0


def test_reading_other_than_the_steps_run_is_an_error():
    algorithm = make_algorithm()
    slot = algorithm.add_monitor(["cost"], per_step=True)
    batches = list(ListStream(n=6, batch_size=2).get_epoch_iterator())
    for batch in batches:
        algorithm.process_batch(batch)
    assert len(algorithm.start_read_steps(slot, 2)()) == 2  # the last 2 of 3 steps
    algorithm.process_batch(batches[0])
    with pytest.raises(AlgorithmError, match="ran 1 steps since its last read, fewer than the 2"):
        algorithm.start_read_steps(slot, 2)()
    with pytest.raises(AlgorithmError, match="65 steps asked of monitoring slot 0, which keeps 64"):
        algorithm.start_read_steps(slot, 65)
    sums = algorithm.add_monitor(["cost"])
    with pytest.raises(AlgorithmError, match="keeps 0 steps' own values"):
        algorithm.start_read_steps(sums, 1)


def test_a_large_slot_keeps_sums_only():
    params = {"w": np.full((64,), 0.1, np.float32), "b": np.zeros((), np.float32)}
    from bricks.algorithms import GradientDescent, Scale

    algorithm = GradientDescent(cost=linear_cost, parameters=params, step_rule=Scale(0.1))
    slot = algorithm.add_monitor([algorithm.gradients["w"]], per_step=True)
    algorithm.process_batch({"x": np.ones((2, 64), np.float32), "y": np.zeros(2, np.float32)})
    assert algorithm.steps_kept(slot) == 0  # 65 floats x 65 rows is over RING_FLOATS
    assert algorithm._state["acc"][slot].ndim == 1


def test_resume_in_the_middle_of_a_set_of_steps_gives_the_same_log():
    whole, _ = _run(n=200, batch=2, epochs=2)
    first, _ = _per_batch_loop(200, after_n_batches=130)
    first.run()
    state = first.get_state()
    second, algorithm = _per_batch_loop(200, after_n_epochs=2)
    second.run(resume=state)
    assert algorithm.steps_kept(0) == monitor_slots.RING_STEPS
    for i in range(1, 201):
        np.testing.assert_allclose(
            second.log[i]["train_cost"], whole.log[i]["train_cost"], rtol=1e-6, err_msg=str(i)
        )


@pytest.mark.parametrize(("k", "n"), [(8, 300), (5, 46)])
def test_steps_per_call_with_a_report_after_every_batch(k, n):
    """Per-batch reports no longer force one step a call: K steps run in one scan and
    each of their rows gets its own step's values (those of K=1)."""

    def run(steps_per_call):
        loop, algorithm = _per_batch_loop(n, steps_per_call, after_n_epochs=2)
        loop.run()
        return loop, algorithm

    one, _ = run(1)
    fused, algorithm = run(k)
    assert algorithm._step_fn._cache_size() == 0  # never a single step
    assert algorithm.compilations <= 2  # the K-step scan and the masked one
    steps = n // 2 * 2
    got = [fused.log[i]["train_cost"] for i in range(1, steps + 1)]
    want = [one.log[i]["train_cost"] for i in range(1, steps + 1)]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(want[: n // 2], _numpy_costs(n, 2, 1), rtol=1e-5)


@pytest.mark.parametrize(("every", "k"), [(1, 1), (3, 1), (3, 4), (5, 8)])
def test_a_log_reader_before_the_monitor_sees_and_leaves_the_right_rows(every, k):
    """A reader placed before the monitor settles the rows after a step call but before
    the monitor adds that call's rows: the read-back then covers that call's steps too
    (regression: row i once got step i+1's value and the last read-back failed)."""
    reader = Reader(every=every)
    loop, _ = _per_batch_loop(60, k, before=[reader], after_n_epochs=2)
    loop.run()
    want = _numpy_costs(60, 2, 2)
    got = [loop.log[i]["train_cost"] for i in range(1, 61)]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # what the reader saw: the previous reports' values, complete (its own batch's
    # row comes with the monitor's turn, after it)
    for done, value in reader.seen.items():
        assert value is None or value == pytest.approx(want[done - 1], rel=1e-5)


@pytest.mark.parametrize("k", [1, 4])
def test_a_read_forced_between_a_step_call_and_its_count(monkeypatch, k):
    """More than the allowed pending read-backs make the loop complete them right after a
    step call is dispatched, before its batches are counted: the read then covers that
    call's steps, and their rows are not added twice."""
    import bricks.main_loop.main_loop as main_loop_module

    monkeypatch.setattr(main_loop_module, "_MAX_PENDING", 0)  # every pending read, at once
    loop, _ = _per_batch_loop(40, k, after_n_epochs=2)
    loop.run()
    want = _numpy_costs(40, 2, 2)
    np.testing.assert_allclose([loop.log[i]["train_cost"] for i in range(1, 41)], want, rtol=1e-5)


def test_conditions_changed_in_the_middle_of_a_block_keep_every_row():
    """Per-batch rows waiting for their read-back are completed before a report of another
    schedule reads the sums (which resets the block)."""

    class Switch(TrainingExtension):
        def after_batch(self, batch) -> None:
            if self.main_loop.status["iterations_done"] == 10:
                monitor.set_conditions(every_n_batches=5)

    loop, _ = _per_batch_loop(40, before=[Switch("switch")], after_n_epochs=1)
    monitor = loop.extensions[1]
    loop.run()
    want = _numpy_costs(40, 2, 1)
    np.testing.assert_allclose([loop.log[i]["train_cost"] for i in range(1, 11)], want[:10],
                               rtol=1e-5)
    np.testing.assert_allclose(loop.log[15]["train_cost"], np.mean(want[10:15]), rtol=1e-5)
    np.testing.assert_allclose(loop.log[20]["train_cost"], np.mean(want[15:20]), rtol=1e-5)


def test_a_second_report_at_the_same_iteration_keeps_the_value():
    """after_batch and after_epoch on one extension: the epoch's report comes right after
    the last batch's, with no step between; it has no mean to report and must not write
    one (it used to write 0.0 over the last batch's value)."""
    loop, _ = _run(n=8, batch=2, after_batch=True, after_epoch=True)
    want = _numpy_costs(8, 2, 1)
    np.testing.assert_allclose([loop.log[i]["train_cost"] for i in range(1, 5)], want, rtol=1e-5)
