"""Tiny models, streams and recording extensions shared by the training tests."""

from __future__ import annotations

import numpy as np

from bricks.algorithms import GradientDescent, Scale
from bricks.extensions import TrainingExtension


class ListStream:
    """A resumable stream over in-memory arrays, in fixed order (a tiny fake of bricks.data)."""

    def __init__(
        self, n: int = 10, batch_size: int = 1, dim: int = 3, seed: int = 0, sources=("x", "y")
    ) -> None:
        rng = np.random.RandomState(seed)
        self.data = {
            "x": rng.randn(n, dim).astype(np.float32),
            "y": rng.randn(n).astype(np.float32),
        }
        self.data = {k: v for k, v in self.data.items() if k in sources}
        self.n, self.batch_size = n, batch_size
        self.position = 0  # where the next epoch iterator begins

    def get_epoch_iterator(self, as_dict: bool = True):
        start = self.position
        for lo in range(start, self.n, self.batch_size):
            hi = min(lo + self.batch_size, self.n)
            self.position = hi if hi < self.n else 0
            yield {k: v[lo:hi] for k, v in self.data.items()}
        self.position = 0

    def get_state(self):
        return {"position": self.position}

    def set_state(self, state):
        self.position = state["position"]


def linear_cost(params, x, y):
    pred = x @ params["w"] + params["b"]
    return ((pred - y) ** 2).mean()


def make_algorithm(step_rule=None, dim: int = 3, **kwargs) -> GradientDescent:
    params = {"w": np.full((dim,), 0.1, np.float32), "b": np.zeros((), np.float32)}
    return GradientDescent(
        cost=linear_cost, parameters=params, step_rule=step_rule or Scale(0.1), **kwargs
    )


class Recorder(TrainingExtension):
    """Records every event with iterations_done / epochs_done."""

    def __init__(self, name: str = "Recorder") -> None:
        super().__init__(name)
        self.events: list[tuple[str, int, int]] = []

    def dispatch(self, callback_name, *args):
        status = self.main_loop.log.status
        self.events.append((callback_name, status["iterations_done"], status["epochs_done"]))
