"""Feedback of a sequence generator: outputs to the vectors the next step reads."""

from __future__ import annotations

from typing import Any

import jax

from bricks.core.application import application
from bricks.core.brick import Brick, Initializable
from bricks.core.checks import (
    as_input,
    check_integer,
    check_rank,
    check_size,
)
from bricks.core.lookup import LookupTable

__all__ = ["AbstractFeedback", "TrivialFeedback", "LookupFeedback"]


class AbstractFeedback(Brick):
    """Turns outputs into the ``feedback`` vectors read by the next step."""

    def feedback(self, outputs: jax.Array) -> jax.Array:
        raise NotImplementedError


class TrivialFeedback(AbstractFeedback):
    """The outputs themselves are the feedback (``output_dim`` features)."""

    allocation_config = ("output_dim",)
    output_dim: int | None = None

    def __init__(self, output_dim: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if output_dim is not None:
            self.output_dim = output_dim

    @application(inputs=["outputs"], outputs=["feedback"])
    def feedback(self, outputs: jax.Array) -> jax.Array:
        outputs = as_input(self, "outputs", outputs)
        check_rank(self, "outputs", outputs, (1, None), f"(..., {self.output_dim})")
        check_size(self, "outputs", outputs, -1, self.output_dim, f"output_dim={self.output_dim}")
        return outputs

    def get_dim(self, name: str) -> int:
        if name == "feedback":
            return self.output_dim
        return super().get_dim(name)


class LookupFeedback(AbstractFeedback, Initializable):
    """Embeds integer outputs with a :class:`~bricks.core.LookupTable`.

    Args:
        num_outputs: the number of symbols (lazy).
        feedback_dim: the embedding size (lazy).
    """

    allocation_config = ("num_outputs", "feedback_dim")
    num_outputs: int | None = None
    feedback_dim: int | None = None

    def __init__(
        self, num_outputs: int | None = None, feedback_dim: int | None = None, **kwargs: Any
    ) -> None:
        self.lookup = LookupTable(name="lookuptable")
        super().__init__(children=[self.lookup], **kwargs)
        if num_outputs is not None:
            self.num_outputs = num_outputs
        if feedback_dim is not None:
            self.feedback_dim = feedback_dim

    def _push_allocation_config(self) -> None:
        super()._push_allocation_config()
        self.push_to(self.lookup, "length", self.num_outputs)
        self.push_to(self.lookup, "dim", self.feedback_dim)

    @application(inputs=["outputs"], outputs=["feedback"])
    def feedback(self, outputs: jax.Array) -> jax.Array:
        outputs = as_input(self, "outputs", outputs)
        check_integer(self, "outputs", outputs, "feedback embeds symbols", what="symbols")
        return self.lookup.apply(outputs)

    def get_dim(self, name: str) -> int:
        if name == "feedback":
            return self.feedback_dim
        return super().get_dim(name)
