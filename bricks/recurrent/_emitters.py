"""Emitters of a sequence generator: readouts to outputs (``emit``) and their
scores (``cost``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from bricks.core.application import application
from bricks.core.brick import Brick
from bricks.core.checks import (
    as_input,
    check_integer,
    check_rank,
    check_same_shape,
    check_size,
)
from bricks.errors import ShapeError

__all__ = ["AbstractEmitter", "SoftmaxEmitter", "TrivialEmitter"]


class AbstractEmitter(Brick):
    """Turns readouts into outputs (``emit``) and scores outputs (``cost``).

    Subclasses define ``emit(readouts, key=None)`` (``key=None``: the most
    likely output), ``cost(readouts, outputs)`` (per position, the readouts'
    leading axes), ``initial_outputs(batch_size)`` and ``get_dim("outputs")``
    (0 for integer symbols).
    """

    allocation_config = ("readout_dim",)
    readout_dim: int | None = None

    def emit(self, readouts: jax.Array, key: Any = None) -> jax.Array:
        raise NotImplementedError

    def cost(self, readouts: jax.Array, outputs: jax.Array) -> jax.Array:
        raise NotImplementedError

    def initial_outputs(self, batch_size: int) -> jax.Array:
        raise NotImplementedError


class SoftmaxEmitter(AbstractEmitter):
    """Emits integer symbols from a softmax over the readouts (the logits).

    Args:
        initial_output: the symbol fed back before the first step (default 0).

    ``emit(readouts, key)`` samples (``key=None``: the argmax);
    ``cost(readouts, outputs)`` is the negative log-probability of
    ``outputs``; ``log_probabilities(readouts)`` the log-softmax.

    >>> import jax, jax.numpy as jnp
    >>> emitter = SoftmaxEmitter()
    >>> emitter.emit(jnp.array([[0.0, 5.0, 1.0]])).tolist()
    [1]
    >>> round(float(emitter.cost(jnp.zeros((1, 4)), jnp.array([2]))[0]), 4)
    1.3863
    """

    def __init__(self, initial_output: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.initial_output = int(initial_output)

    def _readouts(self, readouts: Any) -> jax.Array:
        readouts = as_input(self, "readouts", readouts)
        check_rank(self, "readouts", readouts, (1, None), "(..., classes)")
        if not jnp.issubdtype(readouts.dtype, jnp.inexact):  # integer logits count as float32
            readouts = readouts.astype(jnp.float32)
        return readouts

    @application(inputs=["readouts"], outputs=["probs"])
    def probs(self, readouts: jax.Array) -> jax.Array:
        return jax.nn.softmax(self._readouts(readouts), axis=-1)

    @application(inputs=["readouts"], outputs=["log_probs"])
    def log_probabilities(self, readouts: jax.Array) -> jax.Array:
        return jax.nn.log_softmax(self._readouts(readouts), axis=-1)

    @application(inputs=["readouts"], outputs=["outputs"])
    def emit(self, readouts: jax.Array, key: Any = None) -> jax.Array:
        readouts = self._readouts(readouts)
        if key is None:
            return jnp.argmax(readouts, axis=-1).astype(jnp.int32)
        return jax.random.categorical(key, readouts, axis=-1).astype(jnp.int32)

    @application(inputs=["readouts", "outputs"], outputs=["costs"])
    def cost(self, readouts: jax.Array, outputs: jax.Array) -> jax.Array:
        readouts, outputs = self._readouts(readouts), as_input(self, "outputs", outputs)
        check_integer(self, "outputs", outputs, what="symbols")
        if tuple(outputs.shape) != tuple(readouts.shape[:-1]):
            raise ShapeError(
                f"SoftmaxEmitter {self.path}: symbols 'outputs' of shape {outputs.shape} need the "
                f"shape of 'readouts' {readouts.shape} without its last axis (nothing is broadcast)"
            )
        log_probs = jax.nn.log_softmax(readouts, axis=-1)
        idx = outputs.astype(jnp.int32)[..., None]
        return -jnp.take_along_axis(log_probs, idx, axis=-1)[..., 0]

    @application(outputs=["outputs"])
    def initial_outputs(self, batch_size: int) -> jax.Array:
        return jnp.full((batch_size,), self.initial_output, jnp.int32)

    def get_dim(self, name: str) -> int:
        if name == "outputs":
            return 0
        return super().get_dim(name)


class TrivialEmitter(AbstractEmitter):
    """Emits the readouts themselves; the cost is the squared error summed
    over the features (real-valued outputs, e.g. a regression).

    Args:
        readout_dim: features of the readouts and outputs (lazy; a
            :class:`Readout` pushes its own).
    """

    def __init__(self, readout_dim: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if readout_dim is not None:
            self.readout_dim = readout_dim

    @application(inputs=["readouts"], outputs=["outputs"])
    def emit(self, readouts: jax.Array, key: Any = None) -> jax.Array:
        return readouts

    @application(inputs=["readouts", "outputs"], outputs=["costs"])
    def cost(self, readouts: jax.Array, outputs: jax.Array) -> jax.Array:
        readouts, outputs = as_input(self, "readouts", readouts), as_input(self, "outputs", outputs)
        check_rank(self, "readouts", readouts, (1, None), f"(..., {self.readout_dim})")
        check_size(
            self, "readouts", readouts, -1, self.readout_dim, f"readout_dim={self.readout_dim}"
        )
        check_same_shape(self, ("readouts", readouts), ("outputs", outputs))
        return jnp.sum((readouts - outputs) ** 2, axis=-1)

    @application(outputs=["outputs"])
    def initial_outputs(self, batch_size: int) -> jax.Array:
        self.require("readout_dim")
        return jnp.zeros((batch_size, self.readout_dim), jnp.float32)

    def get_dim(self, name: str) -> int:
        if name == "outputs":
            return self.readout_dim
        return super().get_dim(name)
