"""Graph transforms that add randomness: dropout and noise.

Each returns a new :class:`ComputationGraph`; the original is unchanged.
The masks and noise are drawn from the key passed to
:meth:`ComputationGraph.evaluate` (folded with the variable's tag, and with
the time step inside a scan), so they are fresh at every training step yet
exactly reproducible given the key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from bricks.core.tracing import Intervention, Variable
from bricks.errors import GraphError

from ._graph import ComputationGraph

__all__ = ["apply_dropout", "apply_noise"]


def _salted(key: Any, salt: int) -> Any:
    return jax.random.fold_in(key, salt) if salt else key


def apply_dropout(
    graph: ComputationGraph,
    variables: Sequence[Variable],
    drop_prob: float,
    seed: int = 0,
    custom_divisor: float | None = None,
) -> ComputationGraph:
    """Inverted dropout on ``variables``.

    Each entry is zeroed with probability ``drop_prob`` and the survivors are
    divided by ``1 - drop_prob`` (or ``custom_divisor``), so expectations are
    unchanged.

    Args:
        graph: the graph to transform (left intact).
        variables: variables of ``graph`` (e.g. from a ``VariableFilter``).
        drop_prob: probability of zeroing, in ``[0, 1)``.
        seed: mixed into the evaluation key, to tell several dropouts apart.
        custom_divisor: divide by this instead of ``1 - drop_prob``.
    """
    if not 0 <= drop_prob < 1:
        raise GraphError(f"apply_dropout: drop_prob must be in [0, 1), got {drop_prob}")
    divisor = (1.0 - drop_prob) if custom_divisor is None else float(custom_divisor)

    def drop(value: Any, key: Any) -> Any:
        keep = jax.random.bernoulli(_salted(key, seed), 1.0 - drop_prob, jnp.shape(value))
        return jnp.where(keep, value / jnp.asarray(divisor, value.dtype), jnp.zeros_like(value))

    iv = Intervention(drop, stochastic=True, per_step=True)
    return graph._with_interventions({graph.get_variable(v).tag: iv for v in variables})


def apply_noise(
    graph: ComputationGraph,
    variables: Sequence[Variable],
    std: float,
    seed: int = 0,
) -> ComputationGraph:
    """Add Gaussian noise of deviation ``std`` to ``variables``.

    On parameters (weight noise) the same noise is used for every read of a
    parameter within one evaluation, also inside scans; on other variables
    it is fresh at every step of a scan.
    """
    if std < 0:
        raise GraphError(f"apply_noise: std must be non-negative, got {std}")
    new = {}
    for v in variables:
        var = graph.get_variable(v)

        def noise(value: Any, key: Any) -> Any:
            eps = jax.random.normal(_salted(key, seed), jnp.shape(value), value.dtype)
            return value + jnp.asarray(std, value.dtype) * eps

        new[var.tag] = Intervention(noise, stochastic=True, per_step=var.path is None)
    return graph._with_interventions(new)
