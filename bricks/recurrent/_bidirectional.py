""":class:`Bidirectional`: a forward and a backward copy of a recurrent brick."""

from __future__ import annotations

import copy
from typing import Any

import jax.numpy as jnp

from bricks.core.application import application
from bricks.core.brick import Brick, Initializable
from bricks.errors import BrickTreeError, RecurrentError

__all__ = ["Bidirectional"]


def _as_list(result: Any) -> list[Any]:
    return list(result) if isinstance(result, (tuple, list)) else [result]


class Bidirectional(Initializable):
    """Runs two copies of a recurrent brick, one forward and one backward in
    time, and concatenates their outputs on the feature axis.

    The backward copy runs with ``reverse=True``, so its output at time
    ``t`` has read the inputs ``t, t+1, ..., T-1`` and is aligned with the
    forward output at ``t``. A mask is respected in both directions: with
    right-padded sequences the backward copy carries its initial state
    through the padding before reading the data.

    Args:
        prototype: a recurrent brick (without a parent); it is deep-copied
            into the children ``forward`` and ``backward``.
        weights_init, biases_init: pushed to both copies.

    Applications:
        ``apply(...)`` takes what the prototype's ``apply`` takes (``mask``
        included) and returns each of its outputs with twice the features,
        forward half first.

    >>> import jax.numpy as jnp
    >>> from bricks.core import Orthogonal, Tanh
    >>> from bricks.recurrent import SimpleRecurrent
    >>> birnn = Bidirectional(SimpleRecurrent(dim=3, activation=Tanh()),
    ...                       weights_init=Orthogonal())
    >>> birnn.initialize(seed=0)
    >>> birnn.apply(jnp.ones((5, 2, 3)), mask=jnp.ones((5, 2))).shape
    (5, 2, 6)
    >>> [child.name for child in birnn.children]
    ['forward', 'backward']
    """

    def __init__(self, prototype: Brick, **kwargs: Any) -> None:
        if prototype.parent is not None:
            raise BrickTreeError(
                f"the prototype {prototype.path} of Bidirectional already has a parent; pass a "
                "fresh brick (it is copied into the forward and backward children)"
            )
        self.prototype = prototype
        forward, backward = copy.deepcopy(prototype), copy.deepcopy(prototype)
        forward.name = "forward"  # explicit names: never renumbered among siblings
        backward.name = "backward"
        super().__init__(children=[forward, backward], **kwargs)

    @property
    def forward(self) -> Brick:
        return self.children[0]

    @property
    def backward(self) -> Brick:
        return self.children[1]

    @application
    def apply(self, *args: Any, **kwargs: Any) -> Any:
        """Forward and backward outputs concatenated on the last axis."""
        for name in ("reverse", "iterate"):
            if name in kwargs:
                raise RecurrentError(
                    f"{self.path}.apply runs both directions over whole sequences; it takes no "
                    f"{name!r} (call {self.forward.path}.apply or {self.backward.path}.apply "
                    "for one direction or one step)"
                )
        forward = _as_list(self.forward.apply(*args, **kwargs))
        backward = _as_list(self.backward.apply(*args, reverse=True, **kwargs))
        out = [jnp.concatenate([f, b], axis=-1) for f, b in zip(forward, backward, strict=True)]
        return out[0] if len(out) == 1 else tuple(out)

    @apply.delegate
    def _apply_delegate(self) -> Any:
        return self.forward.apply

    @apply.property("inputs")
    def _apply_inputs(self) -> list[str]:
        return self.forward.apply.inputs

    @apply.property("outputs")
    def _apply_outputs(self) -> list[str]:
        return self.forward.apply.outputs

    def dim_setting(self, name: str) -> str | None:
        """The setting that decides the features of input ``name`` (the prototype's)."""
        setting = getattr(self.forward, "dim_setting", None)
        return setting(name) if callable(setting) else None

    def get_dim(self, name: str) -> int:
        if name in self.apply.outputs:
            return self.forward.get_dim(name) * 2
        return self.forward.get_dim(name)
