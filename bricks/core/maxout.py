"""Blocks' :class:`LinearMaxout` and :class:`LeakyRectifier`.

``LinearMaxout`` is a :class:`~bricks.core.Linear` to
``output_dim * num_pieces`` features followed by a
:class:`~bricks.core.Maxout` over groups of ``num_pieces`` neighbours;
``LeakyRectifier`` is ``max(x, leak * x)``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from bricks.core.application import application
from bricks.core.brick import Initializable
from bricks.core.simple import Activation, Linear, Maxout

__all__ = ["LinearMaxout", "LeakyRectifier"]


class LinearMaxout(Initializable):
    """Maxout over a linear map: ``maxout(x W + b)``.

    Args:
        input_dim: features of the input (lazy).
        output_dim: features of the output (lazy).
        num_pieces: linear pieces per output feature (lazy); the linear
            child maps to ``output_dim * num_pieces`` features.
        weights_init, biases_init, use_bias: pushed to the linear child.

    >>> import jax.numpy as jnp
    >>> from bricks.core import Constant
    >>> lm = LinearMaxout(3, 2, 4, weights_init=Constant(1.0), biases_init=Constant(0.0))
    >>> lm.initialize()
    >>> lm.apply(jnp.ones((5, 3))).shape
    (5, 2)
    """

    allocation_config = ("input_dim", "output_dim", "num_pieces")
    input_dim: int | None = None
    output_dim: int | None = None
    num_pieces: int | None = None

    def __init__(
        self,
        input_dim: int | None = None,
        output_dim: int | None = None,
        num_pieces: int | None = None,
        **kwargs: Any,
    ) -> None:
        linear = Linear()
        maxout = Maxout()
        super().__init__(children=[linear, maxout], **kwargs)
        self.__dict__["linear"] = linear
        self.__dict__["maxout"] = maxout
        for name, value in (
            ("input_dim", input_dim),
            ("output_dim", output_dim),
            ("num_pieces", num_pieces),
        ):
            if value is not None:
                setattr(self, name, value)

    def _push_allocation_config(self) -> None:
        super()._push_allocation_config()
        self.require("input_dim", "output_dim", "num_pieces")
        self.push_to(self.linear, "input_dim", self.input_dim)
        self.push_to(self.linear, "output_dim", self.output_dim * self.num_pieces)
        self.push_to(self.maxout, "num_pieces", self.num_pieces)

    @application(inputs=["input_"], outputs=["output"])
    def apply(self, input_: jax.Array) -> jax.Array:
        return self.maxout.apply(self.linear.apply(input_))

    def get_dim(self, name: str) -> int:
        if name == "input_":
            return self.input_dim
        if name == "output":
            return self.output_dim
        return super().get_dim(name)


class LeakyRectifier(Activation):
    """``x`` where positive, ``leak * x`` elsewhere (Blocks' default leak 0.01).

    >>> import jax.numpy as jnp
    >>> LeakyRectifier(leak=0.1).apply(jnp.array([-2.0, 3.0])).tolist()
    [-0.2..., 3.0]
    """

    def __init__(self, leak: float = 0.01, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.leak = float(leak)

    def function(self, x: jax.Array) -> jax.Array:  # type: ignore[override]
        return jnp.where(x > 0, x, jnp.asarray(self.leak, x.dtype) * x)
