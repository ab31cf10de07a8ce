"""The :class:`LookupTable`: embeddings of integer indices."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from bricks.core.application import application
from bricks.core.brick import Initializable
from bricks.core.checks import as_input, check_integer
from bricks.core.roles import WEIGHT
from bricks.errors import ConfigurationConflict

__all__ = ["LookupTable"]


class LookupTable(Initializable):
    """Rows of a learned table ``W`` of shape ``(length, dim)``, one per index.

    Args:
        length: number of rows (the vocabulary size) (lazy).
        dim: size of each embedding (lazy).
        weights_init: scheme for ``W`` (role ``WEIGHT``).

    ``apply(indices)`` accepts integer indices of any shape and returns
    embeddings of shape ``indices.shape + (dim,)``. Indices outside
    ``[0, length)`` give NaN rows (``jnp.take``'s ``"fill"`` mode) rather
    than silently reading another row: the range cannot be checked under
    ``jit``, but the dtype is (float or bool indices are an
    :class:`~bricks.errors.InputTypeError`).

    >>> import jax.numpy as jnp
    >>> from bricks.core import Constant
    >>> table = LookupTable(5, 3, weights_init=Constant(1.0))
    >>> table.initialize()
    >>> table.apply(jnp.array([[0, 4], [2, 2]])).shape
    (2, 2, 3)
    """

    allocation_config = ("length", "dim")
    length: int | None = None
    dim: int | None = None

    def __init__(self, length: int | None = None, dim: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if length is not None:
            self.length = length
        if dim is not None:
            self.dim = dim

    def _allocate(self) -> None:
        self.require("length", "dim")
        self.add_parameter("W", (self.length, self.dim), (WEIGHT,), "weights_init")

    @application(inputs=["indices"], outputs=["output"])
    def apply(self, indices: jax.Array) -> jax.Array:
        indices = as_input(self, "indices", indices)
        check_integer(
            self, "indices", indices, "cast with indices.astype(jnp.int32)", what="indices"
        )
        return jnp.take(self.W, indices, axis=0, mode="fill", fill_value=jnp.nan)

    def get_dim(self, name: str) -> int:
        if name == "output":
            return self.dim
        if name == "indices":
            return 0
        return super().get_dim(name)

    # Blocks' feedforward interface: the input is a (0-dimensional) index, the
    # output an embedding of size ``dim``
    @property
    def input_dim(self) -> int:
        """``0``: an index has no feature axis (Blocks' feedforward interface)."""
        return 0

    @input_dim.setter
    def input_dim(self, value: int) -> None:
        if value != 0:
            raise ConfigurationConflict(
                f"LookupTable {self.path}: input_dim is 0 (it reads integer indices), got "
                f"{value!r}; set `length` for the number of rows"
            )

    @property
    def output_dim(self) -> int | None:
        """The same as ``dim``."""
        return self.dim

    @output_dim.setter
    def output_dim(self, value: int) -> None:
        self.dim = value
