"""The patience count shared by FinishIfNoImprovement and FinishIfNoImprovementAfter."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bricks.errors import ExtensionError
from bricks.extensions import FinishIfNoImprovement, FinishIfNoImprovementAfter


@pytest.mark.parametrize("cls", [FinishIfNoImprovement, FinishIfNoImprovementAfter])
@pytest.mark.parametrize("given", [{}, {"iterations": 2, "epochs": 1}])
def test_exactly_one_patience_unit_is_required(cls, given):
    with pytest.raises(ExtensionError) as info:
        cls("valid_cost_best_so_far", **given)
    message = str(info.value)
    assert cls.__name__ in message and "exactly one of iterations= or epochs=" in message
    assert f"iterations={given.get('iterations')!r}" in message


def _run(ext, bests):
    """Call ``ext.do`` once an epoch; ``bests`` says at which epochs a new best is noted."""
    log = SimpleNamespace(status={}, current_row={})
    ext.main_loop = SimpleNamespace(log=log)
    rows = []
    for epoch, best in enumerate(bests, start=1):
        log.status.update(iterations_done=10 * epoch, epochs_done=epoch)
        log.current_row = {"valid_cost_best_so_far": True} if best else {}
        ext.do("after_epoch")
        rows.append(dict(log.current_row))
        if log.status.get("training_finish_requested"):
            break
    return rows


@pytest.mark.parametrize("cls", [FinishIfNoImprovement, FinishIfNoImprovementAfter])
def test_both_count_epochs_since_the_last_best_and_finish_when_none_is_left(cls):
    ext = cls("valid_cost_best_so_far", epochs=2)
    rows = _run(ext, [True, False, True, False, False, False])
    patience = [row.get("valid_cost_best_so_far_patience_epochs") for row in rows]
    assert patience == [2, 1, 2, 1, 0]  # finishes at epoch 5, two epochs after the best of 3
    assert rows[-1]["training_finish_requested"] is True
    assert (ext.last_best_iter, ext.last_best_epoch) == (30, 3)
    restored = cls("valid_cost_best_so_far", epochs=2)
    restored.set_state(ext.get_state())
    assert (restored.last_best_iter, restored.last_best_epoch) == (30, 3)


@pytest.mark.parametrize("cls", [FinishIfNoImprovement, FinishIfNoImprovementAfter])
def test_iterations_patience_counts_iterations(cls):
    ext = cls("valid_cost_best_so_far", iterations=15)
    rows = _run(ext, [True, False, False])
    patience = [row.get("valid_cost_best_so_far_patience_iterations") for row in rows]
    assert patience == [15, 5, -5]
