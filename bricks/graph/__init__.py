"""The computation graph: select variables by role, brick and name, and
transform traced functions (replace, dropout, noise, batch normalization)."""

from ._batch_norm import apply_batch_normalization, get_batch_normalization_updates
from ._extras import collect_parameters
from ._filter import VariableFilter
from ._graph import ComputationGraph
from ._transforms import apply_dropout, apply_noise

__all__ = [
    "ComputationGraph",
    "VariableFilter",
    "apply_dropout",
    "apply_noise",
    "apply_batch_normalization",
    "get_batch_normalization_updates",
    "collect_parameters",
]
