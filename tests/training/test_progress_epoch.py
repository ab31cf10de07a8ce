"""ProgressBar learns the epoch length from the iteration scheme and shows a total,
an ETA and the right epoch numbers (issue 14, item 15)."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import numpy as np
import pytest

from bricks.algorithms import GradientDescent, Scale
from bricks.data import (
    Batch,
    ConstantScheme,
    DataStream,
    Filter,
    ForceFloatX,
    IndexableDataset,
    Mapping,
    Prefetch,
    Rename,
    SequentialExampleScheme,
    SequentialScheme,
    ShuffledScheme,
    Unpack,
)
from bricks.extensions import FinishAfter, ProgressBar
from bricks.extensions.progress import epoch_length
from bricks.main_loop import MainLoop

N = 10


def _dataset() -> IndexableDataset:
    rng = np.random.RandomState(0)
    return IndexableDataset(
        {"x": rng.randn(N, 3).astype(np.float32), "y": rng.randn(N).astype(np.float32)}
    )


def _batches(batch_size: int = 3) -> DataStream:
    return DataStream(_dataset(), iteration_scheme=SequentialScheme(N, batch_size))


def _count(stream) -> int:
    return sum(1 for _ in stream.get_epoch_iterator())


@pytest.mark.parametrize(
    "make",
    [
        lambda: _batches(),
        lambda: DataStream(_dataset(), iteration_scheme=ShuffledScheme(N, 4, seed=1)),
        lambda: DataStream(_dataset(), iteration_scheme=SequentialExampleScheme(N)),
        lambda: ForceFloatX(Mapping(_batches(), lambda data: data)),
        lambda: Rename(_batches(), {"x": "features"}),
        lambda: Batch(
            DataStream(_dataset(), iteration_scheme=SequentialExampleScheme(N)),
            ConstantScheme(4),
        ),
        lambda: Batch(
            DataStream(_dataset(), iteration_scheme=SequentialExampleScheme(N)),
            ConstantScheme(4, num_examples=8),
        ),
        lambda: Prefetch(_batches(4)),
    ],
    ids=["batches", "shuffled", "examples", "mapped", "renamed", "batch", "batch_n", "prefetch"],
)
def test_epoch_length_is_the_number_of_batches(make):
    stream = make()
    try:
        assert epoch_length(stream) == _count(stream)
    finally:
        stream.close()


@pytest.mark.parametrize(
    "make",
    [
        lambda: Filter(_batches(), lambda data: data[0].shape[0] == 3),
        lambda: Unpack(_batches()),
        lambda: DataStream(_dataset(), iteration_scheme=ConstantScheme(2)),
    ],
    ids=["filter", "unpack", "infinite"],
)
def test_epoch_length_unknown_ahead(make):
    assert epoch_length(make()) is None


def _run(stream, epochs: int = 2) -> str:
    out = io.StringIO()
    params = {"w": np.zeros(3, np.float32)}

    def cost(params, x, y):
        return ((x @ params["w"] - y) ** 2).mean()

    algorithm = GradientDescent(cost=cost, parameters=params, step_rule=Scale(0.01))
    loop = MainLoop(
        algorithm,
        stream,
        extensions=[ProgressBar(file=out, interval=0.0), FinishAfter(after_n_epochs=epochs)],
    )
    loop.run()
    return out.getvalue()


def test_bar_shows_total_eta_and_epoch_numbers():
    text = _run(ForceFloatX(_batches(3)))
    lines = [line for line in re.split(r"[\r\n]", text) if line]
    assert all("/4 " in line and "ETA" in line for line in lines), lines
    # a draw after each batch and a final one per epoch
    assert [line.split(" [")[0] for line in lines] == ["epoch 1"] * 5 + ["epoch 2"] * 5
    # the final draw of each epoch is complete and says so
    assert "epoch 1 [##############################] 4/4" in text
    assert "epoch 2 [##############################] 4/4" in text
    assert "epoch 3" not in text


def test_unknown_length_is_learned_from_the_first_epoch():
    stream = Filter(_batches(3), lambda data: data[0].shape[0] == 3)  # 3 of the 4 batches
    text = _run(stream)
    first, second = text.split("\n")[:2]
    assert "epoch 1 3 batches" in first and "ETA" not in first
    assert "epoch 2 [##############################] 3/3" in second and "ETA" in second


def test_resumed_mid_epoch_counts_from_the_epoch_start():
    out = io.StringIO()
    bar = ProgressBar(file=out)
    status = {"iterations_done": 6, "epochs_done": 1, "epoch_ends": [4]}
    bar.main_loop = SimpleNamespace(log=SimpleNamespace(status=status), data_stream=_batches(3))
    assert bar.get_iter_per_epoch() == 4
    bar.on_resumption()
    status["iterations_done"] = 7
    bar._draw(force=True)
    assert out.getvalue().startswith("\repoch 2 [") and " 3/4 " in out.getvalue()
