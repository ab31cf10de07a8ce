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
    graph: ComputationGraph, alpha: float = 0.1, allow_duplicates: bool = False
) -> list[tuple[str, Variable, Callable[[Any, Any], Any]]]:
    """Population-statistics updates of the training-mode applications of a graph.

    Returns ``(path, minibatch_variable, fn)`` triples with
    ``fn(population, minibatch) = (1 - alpha) * population + alpha * minibatch``;
    hand them to :meth:`ComputationGraph.add_updates` so the training step
    applies them after every update. A graph may also hold inference-mode
    applications (only training-mode ones have minibatch estimates).

    Raises:
        GraphError: (a ``ValueError``) when no batch normalization of the
            graph is in training mode, or, unless ``allow_duplicates``, when
            one is applied more than once in training mode (which of its
            minibatch statistics should update the population is ambiguous;
            with ``allow_duplicates`` each gives an update).
    """
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
    if not updates:
        raise GraphError(
            "get_batch_normalization_updates: no batch normalization of this graph is in "
            "training mode; call apply_batch_normalization(graph) first (or apply the bricks "
            "inside `with batch_normalization(...)`)"
        )
    paths = [path for path, _, _ in updates]
    twice = sorted({p for p in paths if paths.count(p) > 1})
    if twice and not allow_duplicates:
        raise GraphError(
            f"get_batch_normalization_updates: {twice} would be updated more than once (a batch "
            "normalization applied several times in training mode); pass allow_duplicates=True "
            "to update from every application"
        )
    return updates
