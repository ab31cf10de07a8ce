"""Training algorithms: :class:`GradientDescent` and Blocks' step rules on optax."""

from bricks.algorithms.compiles import CompileCounter
from bricks.algorithms.function_graph import FunctionGraph
from bricks.algorithms.gradient_descent import GradientDescent, StateSnapshot
from bricks.algorithms.ragged import example_mean
from bricks.algorithms.rules import (
    AdaDelta,
    AdaGrad,
    Adam,
    BasicMomentum,
    BasicRMSProp,
    CompositeRule,
    Momentum,
    RemoveNotFinite,
    Restrict,
    RMSProp,
    Scale,
    StepClipping,
    VariableClipping,
    l2_norm,
)
from bricks.algorithms.step_rule import Hyperparameter, RuleState, StepRule
from bricks.algorithms.updates import UpdatesAlgorithm

__all__ = [
    "GradientDescent",
    "StateSnapshot",
    "UpdatesAlgorithm",
    "FunctionGraph",
    "StepRule",
    "Hyperparameter",
    "RuleState",
    "Scale",
    "BasicMomentum",
    "Momentum",
    "AdaDelta",
    "BasicRMSProp",
    "RMSProp",
    "Adam",
    "AdaGrad",
    "StepClipping",
    "VariableClipping",
    "CompositeRule",
    "Restrict",
    "RemoveNotFinite",
    "l2_norm",
    "CompileCounter",
    "example_mean",
]
