"""Run the ``>>>`` examples of the training-layer modules."""

import doctest
import importlib

import pytest

MODULES = [
    "bricks.algorithms.step_rule",
    "bricks.algorithms.rules",
    "bricks.algorithms.function_graph",
    "bricks.algorithms.gradient_descent",
    "bricks.log.training_log",
    "bricks.log.follow",
    "bricks.main_loop.main_loop",
    "bricks.extensions.base",
    "bricks.extensions.training",
    "bricks.extensions.printing",
    "bricks.extensions.progress",
    "bricks.extensions.timing",
    "bricks.extensions.aggregation",
    "bricks.extensions.monitoring",
    "bricks.algorithms.updates",
    "bricks.extensions.predicates",
    "bricks.extensions.composite",
    "bricks.extensions.stopping",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
