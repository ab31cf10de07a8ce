"""Simple bricks: affine maps and element-wise activations.

Every brick here acts on the last axis and broadcasts over any leading
axes, so ``(time, batch, features)`` inputs need no reshaping.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from bricks.core._logits import remember_logits
from bricks.core.application import application
from bricks.core.brick import Brick, Initializable
from bricks.core.checks import as_input, check_rank, check_same_shape, check_size
from bricks.core.roles import BIAS, WEIGHT
from bricks.core.tracing import current_frame
from bricks.errors import ShapeError

__all__ = [
    "Linear",
    "Bias",
    "Identity",
    "Activation",
    "Tanh",
    "Logistic",
    "Rectifier",
    "Softplus",
    "Softmax",
    "Maxout",
]


def _expand_as(b: jax.Array, x: jax.Array) -> jax.Array:
    """``b`` with leading axes added to match ``x``'s rank (explicit broadcasting,
    so code runs under ``jax_numpy_rank_promotion="raise"``)."""
    return jnp.reshape(b, (1,) * (x.ndim - b.ndim) + b.shape)


class Linear(Initializable):
    """An affine map ``y = x W + b``.

    Args:
        input_dim: size of the last axis of the input (lazy).
        output_dim: size of the output's last axis (lazy).
        weights_init, biases_init: schemes for ``W`` ``(input_dim, output_dim)``
            and ``b`` ``(output_dim,)``.
        use_bias: whether there is a ``b`` (default ``True``).

    >>> import jax.numpy as jnp
    >>> from bricks.core import Constant
    >>> lin = Linear(3, 2, weights_init=Constant(1.0), biases_init=Constant(0.5))
    >>> lin.initialize()
    >>> lin.apply(jnp.ones((4, 3))).shape
    (4, 2)
    """

    allocation_config = ("input_dim", "output_dim")
    input_dim: int | None = None
    output_dim: int | None = None

    def __init__(self, input_dim: int | None = None, output_dim: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if input_dim is not None:
            self.input_dim = input_dim
        if output_dim is not None:
            self.output_dim = output_dim

    def _allocate(self) -> None:
        self.require("input_dim", "output_dim")
        self.add_parameter("W", (self.input_dim, self.output_dim), (WEIGHT,), "weights_init")
        if self._use_bias:
            self.add_parameter("b", (self.output_dim,), (BIAS,), "biases_init")

    @application(inputs=["input_"], outputs=["output"])
    def apply(self, input_: jax.Array) -> jax.Array:
        """``(..., input_dim)`` to ``(..., output_dim)``; integer inputs are promoted
        to float as in numpy."""
        input_ = as_input(self, "input_", input_)
        check_rank(self, "input_", input_, (1, None), f"(..., {self.input_dim})")
        check_size(self, "input_", input_, -1, self.input_dim, f"input_dim={self.input_dim}")
        self._add_norms()
        output = jnp.dot(input_, self.W)
        if self._use_bias:
            output = output + _expand_as(self.b, output)
        return output

    def _add_norms(self) -> None:
        """As Blocks: the L2 norms of ``W`` and ``b`` are auxiliary variables
        ``W_norm`` and ``b_norm`` of the brick (only computed for a graph)."""
        if current_frame().recorder is None:
            return
        self.add_auxiliary_variable(jnp.sqrt(jnp.sum(jnp.square(self.W))), name="W_norm")
        if self._use_bias:
            self.add_auxiliary_variable(jnp.sqrt(jnp.sum(jnp.square(self.b))), name="b_norm")

    def get_dim(self, name: str) -> int:
        if name == "input_":
            return self.input_dim
        if name == "output":
            return self.output_dim
        return super().get_dim(name)


class Bias(Initializable):
    """Adds a learned bias ``b`` of shape ``(dim,)``."""

    allocation_config = ("dim",)
    dim: int | None = None

    def __init__(self, dim: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if dim is not None:
            self.dim = dim

    def _allocate(self) -> None:
        self.require("dim")
        self.add_parameter("b", (self.dim,), (BIAS,), "biases_init")

    @application(inputs=["input_"], outputs=["output"])
    def apply(self, input_: jax.Array) -> jax.Array:
        input_ = as_input(self, "input_", input_)
        check_rank(self, "input_", input_, (1, None), f"(..., {self.dim})")
        check_size(self, "input_", input_, -1, self.dim, f"dim={self.dim}")
        return input_ + _expand_as(self.b, input_)

    def get_dim(self, name: str) -> int:
        if name in ("input_", "output"):
            return self.dim
        return super().get_dim(name)


class Activation(Brick):
    """Base of element-wise bricks: subclasses define :meth:`function`."""

    #: whether integer and bool inputs are cast to float32 before :meth:`function`
    promotes_integers: bool = True

    @staticmethod
    def function(x: jax.Array) -> jax.Array:
        raise NotImplementedError

    @application(inputs=["input_"], outputs=["output"])
    def apply(self, input_: jax.Array) -> jax.Array:
        """Element-wise on any shape; integer and bool inputs are computed as
        float32 (except by :class:`Identity`, which returns its input)."""
        input_ = self._checked("input_", as_input(self, "input_", input_))
        if self.promotes_integers and not jnp.issubdtype(input_.dtype, jnp.inexact):
            input_ = input_.astype(jnp.float32)
        return self.function(input_)

    def _checked(self, name: str, x: jax.Array) -> jax.Array:
        """Hook: check an input the function cannot take (any shape by default)."""
        return x


class Identity(Activation):
    """Returns its input."""

    promotes_integers = False

    @staticmethod
    def function(x: jax.Array) -> jax.Array:
        return x


class Tanh(Activation):
    """Hyperbolic tangent."""

    function = staticmethod(jnp.tanh)


class Logistic(Activation):
    """The logistic sigmoid ``1 / (1 + exp(-x))``."""

    function = staticmethod(jax.nn.sigmoid)


class Rectifier(Activation):
    """``max(0, x)``."""

    function = staticmethod(jax.nn.relu)


class Softplus(Activation):
    """``log(1 + exp(x))``, computed stably."""

    function = staticmethod(jax.nn.softplus)


class Softmax(Activation):
    """Softmax over the last axis, with a stable log-probability and
    categorical cross-entropy computed from the pre-softmax input."""

    @staticmethod
    def function(x: jax.Array) -> jax.Array:
        return jax.nn.softmax(x, axis=-1)

    def _checked(self, name: str, x: jax.Array) -> jax.Array:
        check_rank(self, name, x, (1, None), "(..., classes)")
        return x

    def _check_scores(self, name: str, x: Any) -> jax.Array:
        return self._checked(name, as_input(self, name, x))

    @application(inputs=["input_"], outputs=["output"])
    def apply(self, input_: jax.Array) -> jax.Array:
        # remembered so CategoricalCrossEntropy can use the logits (exact when saturated)
        return remember_logits(Activation.apply.fn(self, input_), input_)

    @application(inputs=["input_"], outputs=["output"])
    def log_probabilities(self, input_: jax.Array) -> jax.Array:
        return jax.nn.log_softmax(self._check_scores("input_", input_), axis=-1)

    @application(inputs=["y", "x"], outputs=["output"])
    def categorical_cross_entropy(self, y: jax.Array, x: jax.Array) -> jax.Array:
        """Per-example cross-entropy of targets ``y`` given pre-softmax ``x``.

        ``y`` holds integer class indices (shape of ``x`` without the last
        axis) or a distribution of the same shape as ``x``.
        """
        x = self._check_scores("x", x)
        y = as_input(self, "y", y)
        log_probs = jax.nn.log_softmax(x, axis=-1)
        if y.ndim == x.ndim:
            check_same_shape(self, ("y", y), ("x", x))
            return -jnp.sum(y * log_probs, axis=-1)
        if y.ndim != x.ndim - 1:
            raise ShapeError(
                f"Softmax {self.path}: targets 'y' of shape {y.shape} must be class indices of "
                f"shape {x.shape[:-1]} (x without its last axis) or distributions of x's shape "
                f"{x.shape}"
            )
        if y.shape != x.shape[:-1]:
            raise ShapeError(
                f"Softmax {self.path}: class indices 'y' of shape {y.shape} need the shape of "
                f"'x' {x.shape} without its last axis, {x.shape[:-1]} (nothing is broadcast)"
            )
        idx = y.astype(jnp.int32)[..., None]
        return -jnp.take_along_axis(log_probs, idx, axis=-1)[..., 0]


class Maxout(Brick):
    """Maxout: the maximum over groups of ``num_pieces`` consecutive features.

    The last axis (size ``d``, a multiple of ``num_pieces``) is split into
    ``d // num_pieces`` groups of ``num_pieces`` neighbours, as in Blocks.

    >>> import jax.numpy as jnp
    >>> Maxout(2).apply(jnp.array([[1.0, 3.0, 5.0, 2.0]])).tolist()
    [[3.0, 5.0]]
    """

    allocation_config = ("num_pieces",)
    num_pieces: int | None = None

    def __init__(self, num_pieces: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_pieces is not None:
            self.num_pieces = num_pieces

    def _allocate(self) -> None:
        self.require("num_pieces")

    @application(inputs=["input_"], outputs=["output"])
    def apply(self, input_: jax.Array) -> jax.Array:
        input_ = as_input(self, "input_", input_)
        check_rank(self, "input_", input_, (1, None), "(..., features)")
        last = input_.shape[-1]
        if last % self.num_pieces:
            raise ShapeError(
                f"Maxout {self.path}: input 'input_' has shape {input_.shape}: its last axis "
                f"must be a multiple of num_pieces={self.num_pieces}"
            )
        pieces = input_.reshape(*input_.shape[:-1], last // self.num_pieces, self.num_pieces)
        return jnp.max(pieces, axis=-1)
