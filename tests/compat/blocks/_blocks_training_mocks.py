"""Blocks' ``blocks.utils.testing`` mocks for the training-side compat tests."""

from __future__ import annotations

import time
from typing import Any

from bricks.data import IterableDataset
from bricks.main_loop import MainLoop


class MockAlgorithm:
    """Blocks' MockAlgorithm: remembers the last batch, optionally sleeps."""

    def __init__(self, delay_time: float = 0.0) -> None:
        self.delay_time = delay_time
        self.batch: Any = None
        self.initialized = 0

    def initialize(self) -> None:
        self.initialized += 1

    def process_batch(self, batch: Any) -> None:
        self.batch = batch
        time.sleep(self.delay_time)


def mock_main_loop(delay_time: float = 0.0, **kwargs: Any) -> MainLoop:
    """Blocks' MockMainLoop: a MockAlgorithm over the example stream of range(10)."""
    kwargs.setdefault("data_stream", IterableDataset(range(10)).get_example_stream())
    kwargs.setdefault("algorithm", MockAlgorithm(delay_time))
    return MainLoop(**kwargs)
