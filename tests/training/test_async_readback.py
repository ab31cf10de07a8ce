"""Per-batch monitoring reads back one step later (no device sync per batch), same log."""

from __future__ import annotations

from bricks.algorithms import Momentum
from bricks.extensions import FinishAfter, TrainingDataMonitoring, TrainingExtension
from bricks.log import read_log
from bricks.main_loop import MainLoop
from tests.training.helpers import ListStream, make_algorithm


class Peek(TrainingExtension):
    """After every batch: is the batch's ``train_cost`` in the log yet, and what is pending."""

    def __init__(self, reads_log: bool, name: str) -> None:
        super().__init__(name)
        self.reads_log = reads_log
        self.seen: list[tuple[int, object, int]] = []

    def after_batch(self, batch) -> None:
        loop = self.main_loop
        row = loop.log.current_row
        self.seen.append((loop.status["iterations_done"], row.get("train_cost"),
                          len(loop._readbacks)))


def _run(deferred: bool, extra=(), epochs: int = 2, log_path=None) -> MainLoop:
    algorithm = make_algorithm(Momentum(0.05, 0.9))
    extensions = [
        TrainingDataMonitoring(["cost", algorithm.total_gradient_norm], after_batch=True),
        TrainingDataMonitoring(["cost"], prefix="epoch", after_epoch=True, name="per_epoch"),
        *extra,
        FinishAfter(after_n_epochs=epochs),
    ]
    loop = MainLoop(algorithm, ListStream(n=7, batch_size=2), extensions=extensions,
                    log_path=log_path)
    if not deferred:
        loop.defer_readback = None  # the synchronous read in the extension
    loop.run()
    return loop


def test_deferred_rows_equal_synchronous_rows(tmp_path):
    sync = _run(False)
    deferred = _run(True, log_path=tmp_path / "log.jsonl")
    rows = deferred.log.get_state()["rows"]
    assert rows == sync.log.get_state()["rows"]
    assert sum("train_cost" in r for r in rows.values()) == 8  # every batch of 2 epochs
    on_file = read_log(tmp_path / "log.jsonl")
    assert {str(i): r for i, r in on_file.items() if r} == rows


def test_no_sync_per_batch_when_nothing_reads_the_log():
    peek = Peek(reads_log=False, name="peek")
    _run(True, extra=[peek], epochs=1)
    # the batch's values are still on their way (earlier ones are completed once arrived)
    assert [(i, cost) for i, cost, _ in peek.seen] == [(i, None) for i in range(1, 5)]
    assert all(pending >= 1 for _, _, pending in peek.seen)


def test_an_extension_that_reads_the_log_sees_complete_rows():
    peek = Peek(reads_log=True, name="peek")
    sync = _run(False, epochs=1)
    _run(True, extra=[peek], epochs=1)
    expected = [(i, sync.log[i]["train_cost"], 0) for i in range(1, 5)]
    assert peek.seen == expected


def test_checkpoint_state_and_epoch_end_see_complete_rows():
    class Saver(TrainingExtension):
        reads_log = False

        def __init__(self) -> None:
            super().__init__("saver")
            self.rows = []

        def after_batch(self, batch) -> None:
            state, _ = self.main_loop.get_state()
            i = str(self.main_loop.status["iterations_done"])
            self.rows.append(state["log"]["rows"][i]["train_cost"]
                             if "rows" in state["log"] else None)

        def after_epoch(self) -> None:
            self.rows.append(self.main_loop.log.current_row["train_cost"])

    saver = Saver()
    sync = _run(False, epochs=1)
    _run(True, extra=[saver], epochs=1)
    costs = [sync.log[i]["train_cost"] for i in range(1, 5)]
    assert saver.rows == [*costs, costs[-1]]
