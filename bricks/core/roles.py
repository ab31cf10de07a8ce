"""Roles of variables: a small hierarchy in which a sub-role *is a* role.

A role is an instance of a :class:`VariableRole` subclass; ``WEIGHT`` is a
``PARAMETER`` because ``WeightRole`` subclasses ``ParameterRole``. Selection
(:class:`bricks.graph.VariableFilter`) uses :func:`has_role`, so asking for
``PARAMETER`` finds weights, biases, filters and learned initial states.

>>> has_role([WEIGHT], PARAMETER), has_role([BIAS], WEIGHT)
(True, False)
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "VariableRole",
    "has_role",
    "INPUT",
    "OUTPUT",
    "COST",
    "PARAMETER",
    "WEIGHT",
    "BIAS",
    "FILTER",
    "INITIAL_STATE",
    "AUXILIARY",
    "PERSISTENT",
    "BATCH_NORM_POPULATION_MEAN",
    "BATCH_NORM_POPULATION_STDEV",
    "BATCH_NORM_MINIBATCH_ESTIMATE",
    "BATCH_NORM_SHIFT_PARAMETER",
    "BATCH_NORM_SCALE_PARAMETER",
    "COLLECTED",
    "COLLECTOR",
    "DROPOUT",
    "NOISE",
]


class VariableRole:
    """Base class of all roles; one instance of each subclass is exported."""

    def __repr__(self) -> str:
        name = type(self).__name__
        if name.endswith("Role"):
            name = name[: -len("Role")]
        # CamelCase -> UPPER_SNAKE, matching the exported constant's name
        out = "".join("_" + c if c.isupper() and i else c for i, c in enumerate(name))
        return out.upper()

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))

    def is_a(self, other: VariableRole) -> bool:
        """Whether this role is ``other`` or one of its sub-roles."""
        return isinstance(self, type(other))


def has_role(roles: Iterable[VariableRole], role: VariableRole) -> bool:
    """Whether any of ``roles`` is ``role`` or a sub-role of it."""
    return any(r.is_a(role) for r in roles)


class InputRole(VariableRole):
    """An input of an application."""


class OutputRole(VariableRole):
    """An output of an application."""


class CostRole(OutputRole):
    """The output of a cost brick: a quantity to minimize or monitor."""


class ParameterRole(VariableRole):
    """A trainable parameter of a brick."""


class WeightRole(ParameterRole):
    """A weight matrix (or tensor) of a brick; the usual target of L2."""


class FilterRole(WeightRole):
    """The filters of a convolution."""


class BiasRole(ParameterRole):
    """An additive offset of a brick."""


class InitialStateRole(ParameterRole):
    """A learned initial state of a recurrent brick."""


class BatchNormShiftParameterRole(BiasRole):
    """The learned shift (beta) of batch normalization."""


class BatchNormScaleParameterRole(ParameterRole):
    """The learned scale (gamma) of batch normalization."""


class AuxiliaryRole(VariableRole):
    """A quantity a brick adds beside its outputs (e.g. a regularization term)."""


class PersistentRole(VariableRole):
    """State kept across steps that is not trained by gradients."""


class BatchNormPopulationMeanRole(PersistentRole):
    """The running (population) mean of batch normalization."""


class BatchNormPopulationStdevRole(PersistentRole):
    """The running (population) standard deviation of batch normalization."""


class BatchNormMinibatchEstimateRole(AuxiliaryRole):
    """A minibatch mean or standard deviation computed in training mode."""


class CollectedRole(VariableRole):
    """A parameter replaced by a slice of a collector (``collect_parameters``)."""


class CollectorRole(ParameterRole):
    """The one flat parameter that ``collect_parameters`` gathers others into."""


class DropoutRole(VariableRole):
    """A variable that had dropout applied to it."""


class NoiseRole(VariableRole):
    """A variable that had noise added to it."""


INPUT = InputRole()
OUTPUT = OutputRole()
COST = CostRole()
PARAMETER = ParameterRole()
WEIGHT = WeightRole()
BIAS = BiasRole()
FILTER = FilterRole()
INITIAL_STATE = InitialStateRole()
AUXILIARY = AuxiliaryRole()
PERSISTENT = PersistentRole()
BATCH_NORM_POPULATION_MEAN = BatchNormPopulationMeanRole()
BATCH_NORM_POPULATION_STDEV = BatchNormPopulationStdevRole()
BATCH_NORM_MINIBATCH_ESTIMATE = BatchNormMinibatchEstimateRole()
BATCH_NORM_SHIFT_PARAMETER = BatchNormShiftParameterRole()
BATCH_NORM_SCALE_PARAMETER = BatchNormScaleParameterRole()
COLLECTED = CollectedRole()
COLLECTOR = CollectorRole()
DROPOUT = DropoutRole()
NOISE = NoiseRole()
