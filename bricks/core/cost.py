"""Cost bricks: ``apply(y, y_hat)`` returns the mean cost over the batch.

As in Blocks, ``y`` is the target and ``y_hat`` the prediction; the first
axis is the batch. The output is annotated with roles ``OUTPUT`` and
``COST`` so a computation graph finds it. ``cost_per_example`` gives the
un-averaged ``(batch,)`` costs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from bricks.core._logits import logits_of
from bricks.core.application import application
from bricks.core.brick import Brick
from bricks.core.roles import COST
from bricks.errors import ShapeError

__all__ = [
    "Cost",
    "SquaredError",
    "CategoricalCrossEntropy",
    "BinaryCrossEntropy",
    "MisclassificationRate",
]


def _sum_but_first(x: jax.Array) -> jax.Array:
    return jnp.sum(x, axis=tuple(range(1, x.ndim))) if x.ndim > 1 else x


def _check_same_shape(brick: Brick, y: jax.Array, y_hat: jax.Array) -> None:
    if jnp.shape(y) != jnp.shape(y_hat):
        raise ShapeError(
            f"{type(brick).__name__} {brick.path}: y has shape {jnp.shape(y)} but y_hat has "
            f"shape {jnp.shape(y_hat)}; they must match"
        )


def _check_class_axis(brick: Brick, y_hat: jax.Array) -> None:
    if jnp.ndim(y_hat) == 0:
        raise ShapeError(
            f"{type(brick).__name__} {brick.path}: y_hat has shape (); it needs a last axis of "
            "classes, (batch, classes)"
        )


def _floor(dtype: Any) -> float:
    """The smallest probability whose log is taken (``finfo(dtype).eps``)."""
    return float(jnp.finfo(dtype).eps)


class Cost(Brick):
    """Base of cost bricks: subclasses define :meth:`cost_per_example`."""

    def cost_per_example(self, y: jax.Array, y_hat: jax.Array) -> jax.Array:
        """Costs of shape ``(batch,)`` (or the leading axes of the input)."""
        raise NotImplementedError

    @application(inputs=["y", "y_hat"], outputs=["cost"], roles=[COST])
    def apply(self, y: jax.Array, y_hat: jax.Array) -> jax.Array:
        y_hat = jnp.asarray(y_hat)
        if not jnp.issubdtype(y_hat.dtype, jnp.inexact):  # integer predictions cost as float32
            y_hat = y_hat.astype(jnp.float32)
        return jnp.mean(self.cost_per_example(jnp.asarray(y), y_hat))


class SquaredError(Cost):
    """``sum((y - y_hat) ** 2)`` over the features, averaged over the batch.

    >>> import jax.numpy as jnp
    >>> SquaredError().apply(jnp.zeros((2, 3)), jnp.ones((2, 3))).item()
    3.0
    """

    def cost_per_example(self, y: jax.Array, y_hat: jax.Array) -> jax.Array:
        _check_same_shape(self, y, y_hat)
        return _sum_but_first(jnp.square(y - y_hat))


class CategoricalCrossEntropy(Cost):
    """``-log p(y)`` averaged over the batch.

    ``y`` holds integer class indices of shape ``y_hat.shape[:-1]``, or
    target distributions (one-hot rows) of ``y_hat``'s shape. ``y_hat``
    holds probabilities (the output of a ``Softmax``), as in Blocks. When
    ``y_hat`` is the very array a ``Softmax`` brick returned (in the same eager
    computation or the same trace, with no graph replacement in between), the
    cost is computed from that softmax's input with a stable ``log_softmax``,
    as Theano's rewrite made Blocks' ``log(softmax(x))`` exact: the value and
    gradient stay right for saturated logits. Other probabilities are floored
    at ``finfo(dtype).eps`` before the log so a zero probability gives a large
    finite cost rather than ``inf``. With ``from_logits=True`` ``y_hat`` holds
    pre-softmax scores and the log-probabilities come from ``log_softmax``.

    >>> import jax.numpy as jnp
    >>> probs = jnp.array([[0.5, 0.5], [0.25, 0.75]])
    >>> round(CategoricalCrossEntropy().apply(jnp.array([0, 1]), probs).item(), 4)
    0.4904
    >>> logits = jnp.log(probs)
    >>> round(CategoricalCrossEntropy(from_logits=True).apply(jnp.array([0, 1]), logits).item(), 4)
    0.4904
    """

    def __init__(self, from_logits: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.from_logits = from_logits

    def cost_per_example(self, y: jax.Array, y_hat: jax.Array) -> jax.Array:
        _check_class_axis(self, y_hat)
        logits = y_hat if self.from_logits else logits_of(y_hat)
        if logits is not None and jnp.shape(logits) == y_hat.shape:
            log_probs = jax.nn.log_softmax(jnp.asarray(logits, y_hat.dtype), axis=-1)
        else:
            log_probs = jnp.log(jnp.maximum(y_hat, _floor(y_hat.dtype)))
        if y.ndim == y_hat.ndim:
            _check_same_shape(self, y, y_hat)
            return -jnp.sum(y * log_probs, axis=-1)
        if y.shape != y_hat.shape[:-1]:
            raise ShapeError(
                f"CategoricalCrossEntropy {self.path}: integer targets y of shape {y.shape} need "
                f"the shape of y_hat {y_hat.shape} without its last axis"
            )
        picked = jnp.take_along_axis(log_probs, y.astype(jnp.int32)[..., None], axis=-1)
        return -picked[..., 0]


class BinaryCrossEntropy(Cost):
    """``-(y log p + (1 - y) log(1 - p))`` summed over features, averaged over the batch.

    ``y_hat`` holds probabilities (clipped to ``[eps, 1 - eps]`` before the
    logs), or logits with ``from_logits=True`` (computed with
    ``log_sigmoid``, stable for any score).

    >>> import jax.numpy as jnp
    >>> round(BinaryCrossEntropy().apply(jnp.array([[1.0]]), jnp.array([[0.5]])).item(), 4)
    0.6931
    """

    def __init__(self, from_logits: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.from_logits = from_logits

    def cost_per_example(self, y: jax.Array, y_hat: jax.Array) -> jax.Array:
        _check_same_shape(self, y, y_hat)
        if self.from_logits:
            log_p, log_not_p = jax.nn.log_sigmoid(y_hat), jax.nn.log_sigmoid(-y_hat)
        else:
            eps = _floor(y_hat.dtype)
            p = jnp.clip(y_hat, eps, 1.0 - eps)
            log_p, log_not_p = jnp.log(p), jnp.log1p(-p)
        return _sum_but_first(-(y * log_p + (1.0 - y) * log_not_p))


class MisclassificationRate(Cost):
    """The fraction of examples whose target is not among the ``top_k`` best scores.

    ``y`` holds integer targets of shape ``y_hat.shape[:-1]``; ``y_hat``
    holds scores or probabilities. Ties count against the prediction: an
    example is correct only when fewer than ``top_k`` other classes score at
    least as high as the target (so a uniform ``y_hat`` is always an error).

    >>> import jax.numpy as jnp
    >>> scores = jnp.array([[0.1, 0.9], [0.8, 0.2], [0.5, 0.5]])
    >>> round(MisclassificationRate().apply(jnp.array([1, 1, 0]), scores).item(), 4)
    0.6667
    """

    def __init__(self, top_k: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.top_k = int(top_k)

    def cost_per_example(self, y: jax.Array, y_hat: jax.Array) -> jax.Array:
        _check_class_axis(self, y_hat)
        if y.shape != y_hat.shape[:-1]:
            raise ShapeError(
                f"MisclassificationRate {self.path}: targets y of shape {y.shape} need the shape "
                f"of y_hat {y_hat.shape} without its last axis"
            )
        target = jnp.take_along_axis(y_hat, y.astype(jnp.int32)[..., None], axis=-1)
        # classes other than the target scoring at least as high (the target counts itself once)
        rivals = jnp.sum(y_hat >= target, axis=-1) - 1
        dtype = y_hat.dtype if jnp.issubdtype(y_hat.dtype, jnp.floating) else jnp.float32
        return (rivals >= self.top_k).astype(dtype)

    @application(inputs=["y", "y_hat"], outputs=["error_rate"], roles=[COST])
    def apply(self, y: jax.Array, y_hat: jax.Array) -> jax.Array:
        return jnp.mean(self.cost_per_example(jnp.asarray(y), jnp.asarray(y_hat)))
