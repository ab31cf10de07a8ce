"""Core bricks: the Brick lifecycle, applications, parameters and roles.

Everything public in the core layer is re-exported here; the work lives in
the modules beside this file.
"""

from bricks.core import roles
from bricks.core.application import Application, BoundApplication, application
from bricks.core.batch_norm import BatchNormalization, BatchNormalizedMLP, batch_normalization
from bricks.core.brick import Brick, Initializable, ParameterSpec
from bricks.core.conv import (
    AveragePooling,
    Convolutional,
    ConvolutionalSequence,
    ConvolutionalTranspose,
    Flattener,
    MaxPooling,
    Pooling,
)
from bricks.core.cost import (
    BinaryCrossEntropy,
    CategoricalCrossEntropy,
    Cost,
    MisclassificationRate,
    SquaredError,
)
from bricks.core.initialization import (
    Constant,
    IsotropicGaussian,
    Orthogonal,
    Sparse,
    Uniform,
)
from bricks.core.initialization import Identity as IdentityInit
from bricks.core.lookup import LookupTable
from bricks.core.maxout import LeakyRectifier, LinearMaxout
from bricks.core.parallel import Fork, Merge, Parallel
from bricks.core.roles import (
    AUXILIARY,
    BIAS,
    COST,
    FILTER,
    INITIAL_STATE,
    INPUT,
    OUTPUT,
    PARAMETER,
    WEIGHT,
    VariableRole,
    has_role,
)
from bricks.core.selection import Selector
from bricks.core.sequences import MLP, Sequence
from bricks.core.simple import (
    Activation,
    Bias,
    Identity,
    Linear,
    Logistic,
    Maxout,
    Rectifier,
    Softmax,
    Softplus,
    Tanh,
)
from bricks.core.spatial_bn import SpatialBatchNormalization
from bricks.core.tracing import Frame, Recorder, Variable, annotate, apply_with, scan
from bricks.core.values import ValueSource, ValueStore, bind_values, unbind_values
from bricks.core.wrappers import WithExtraDims, with_extra_dims

__all__ = [
    "Selector",
    "roles",
    "BatchNormalization",
    "BatchNormalizedMLP",
    "batch_normalization",
    "Application",
    "BoundApplication",
    "application",
    "Brick",
    "Initializable",
    "ParameterSpec",
    "Constant",
    "IsotropicGaussian",
    "Orthogonal",
    "Sparse",
    "Uniform",
    "IdentityInit",
    "AUXILIARY",
    "BIAS",
    "COST",
    "FILTER",
    "INITIAL_STATE",
    "INPUT",
    "OUTPUT",
    "PARAMETER",
    "WEIGHT",
    "VariableRole",
    "has_role",
    "MLP",
    "Sequence",
    "Activation",
    "Bias",
    "Identity",
    "Linear",
    "Logistic",
    "Rectifier",
    "Softmax",
    "Softplus",
    "Tanh",
    "Frame",
    "Recorder",
    "Variable",
    "annotate",
    "apply_with",
    "scan",
    "Maxout",
    "LinearMaxout",
    "LeakyRectifier",
    "SpatialBatchNormalization",
    "LookupTable",
    "Parallel",
    "Fork",
    "Merge",
    "WithExtraDims",
    "with_extra_dims",
    "Cost",
    "SquaredError",
    "CategoricalCrossEntropy",
    "BinaryCrossEntropy",
    "MisclassificationRate",
    "Convolutional",
    "ConvolutionalTranspose",
    "Pooling",
    "MaxPooling",
    "AveragePooling",
    "ConvolutionalSequence",
    "Flattener",
    "ValueSource",
    "ValueStore",
    "bind_values",
    "unbind_values",
]
