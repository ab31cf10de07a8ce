"""After the first step, GradientDescent.process_batch is the jitted call and nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from bricks.errors import AlgorithmError
from tests.training.helpers import ListStream, make_algorithm


def _batches():
    return list(ListStream(n=8, batch_size=2).get_epoch_iterator())


def test_later_calls_skip_every_check_and_lookup(monkeypatch):
    reference = make_algorithm()
    for b in _batches():
        reference._process_batch(b)  # the checked path every time
    algorithm = make_algorithm()
    first, *rest = _batches()
    algorithm.process_batch(first)

    def forbidden(*args, **kwargs):
        raise AssertionError("per-call Python work on the fast path")

    for name in ("_inputs", "_discover", "_require_state", "_compile", "_process_batch"):
        monkeypatch.setattr(algorithm, name, forbidden)
    for b in rest:
        algorithm.process_batch(b)
    monkeypatch.undo()
    for k, v in reference.parameter_values().items():
        np.testing.assert_array_equal(algorithm.parameter_values()[k], v)
    assert algorithm.compilations == 1


def test_other_sources_and_a_recompile_go_through_the_checks():
    algorithm = make_algorithm()
    batch = _batches()[0]
    algorithm.process_batch(batch)
    with pytest.raises(AlgorithmError, match="not read by the cost"):
        algorithm.process_batch({**batch, "extra": np.zeros(2, np.float32)})
    slot = algorithm.add_monitor(["cost"])  # drops the compiled step
    algorithm.process_batch({"y": batch["y"], "x": batch["x"]})  # other key order
    algorithm.process_batch(batch)
    assert algorithm.compilations == 2
    assert algorithm.read_monitor(slot)["cost"] > 0
