"""steps_per_call=K over epochs whose length is not a multiple of K: the short chunks run
in one masked scan (no single steps), logs and parameters those of K=1."""

from __future__ import annotations

import numpy as np
import pytest

from bricks.algorithms import Momentum
from bricks.errors import AlgorithmError
from bricks.extensions import FinishAfter, TrainingDataMonitoring
from bricks.main_loop import MainLoop
from tests.training.helpers import ListStream, make_algorithm


def _run(k: int, n: int, every: int):
    algorithm = make_algorithm(Momentum(0.05, 0.9))
    loop = MainLoop(
        algorithm,
        ListStream(n=n, batch_size=2),
        extensions=[
            TrainingDataMonitoring(["cost"], every_n_batches=every),
            TrainingDataMonitoring(["cost"], prefix="epoch", name="per_epoch"),
            FinishAfter(after_n_epochs=2),
        ],
        steps_per_call=k,
    )
    loop.run()
    return loop, algorithm


@pytest.mark.parametrize(("k", "n", "every"), [(4, 22, 4), (4, 18, 3), (3, 14, 5)])
def test_short_chunks_run_masked_in_one_scan(k, n, every):
    one, one_alg = _run(1, n, every)
    fused, fused_alg = _run(k, n, every)
    rows = fused.log.get_state()["rows"]
    assert rows.keys() == one.log.get_state()["rows"].keys()
    for i, row in one.log.get_state()["rows"].items():
        for name, value in row.items():
            np.testing.assert_allclose(
                rows[i][name], value, rtol=1e-4, atol=1e-7, err_msg=f"{i} {name}"
            )
    # a scan and single steps are different XLA programs: their float rounding differs
    # (2e-7 on these ~1e-3 parameters after 22 momentum steps), hence atol
    for path, value in one_alg.parameter_values().items():
        np.testing.assert_allclose(fused_alg.parameter_values()[path], value, rtol=1e-5, atol=1e-6)
    assert fused.status["iterations_done"] == one.status["iterations_done"]
    # the K-step scan and the masked scan of the short chunks: no single-step program
    assert fused_alg.compilations <= 2
    assert fused_alg._step_fn._cache_size() == 0
    assert int(fused_alg._state["step"]) == one.status["iterations_done"]


def test_process_batches_refuses_more_batches_than_the_scan_length():
    algorithm = make_algorithm()
    batches = list(ListStream(n=6, batch_size=2).get_epoch_iterator())
    with pytest.raises(AlgorithmError, match="3 batches do not fit a scan of length 2"):
        algorithm.process_batches(batches, length=2)
