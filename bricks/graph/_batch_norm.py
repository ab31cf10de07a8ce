"""Batch normalization on graphs: training mode and population updates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bricks.core.batch_norm import TRAINING_MODE, BatchNormalization
from bricks.core.roles import BATCH_NORM_MINIBATCH_ESTIMATE
from bricks.core.tracing import Variable
from bricks.errors import GraphError

from ._graph import ComputationGraph

__all__ = ["apply_batch_normalization", "get_batch_normalization_updates"]


def apply_batch_normalization(graph: ComputationGraph) -> ComputationGraph:
    """A new graph whose :class:`BatchNormalization` bricks use minibatch
    statistics (training mode); the original graph stays in inference mode."""
    if not any(isinstance(b, BatchNormalization) for b in graph.bricks):
        raise GraphError("apply_batch_normalization: the graph has no BatchNormalization brick")
    return graph.with_modes(**{TRAINING_MODE: True})


def get_batch_normalization_updates(
    graph: ComputationGraph, alpha: float = 0.1
) -> list[tuple[str, Variable, Callable[[Any, Any], Any]]]:
    """Population-statistics updates of a training-mode graph.

    Returns ``(path, minibatch_variable, fn)`` triples with
    ``fn(population, minibatch) = (1 - alpha) * population + alpha * minibatch``;
    hand them to :meth:`ComputationGraph.add_updates` so the training step
    applies them after every update.
    """
    if not graph._modes.get(TRAINING_MODE):
        raise GraphError(
            "get_batch_normalization_updates needs a graph in training mode; call "
            "apply_batch_normalization(graph) first"
        )
    targets = {"batch_mean": "population_mean", "batch_stdev": "population_stdev"}
    updates = []
    for var in graph.variables:
        if (
            var.has_role(BATCH_NORM_MINIBATCH_ESTIMATE)
            and isinstance(var.brick, BatchNormalization)
            and var.scan_scope is None
            and var.name in targets
        ):
            path = f"{var.brick.path}.{targets[var.name]}"
            updates.append((path, var, lambda old, new, a=alpha: (1 - a) * old + a * new))
    return updates
