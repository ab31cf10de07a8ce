"""Applying fixed-rank applications to inputs with extra leading axes.

Some applications need inputs of a fixed rank (a convolution wants
``(batch, channels, height, width)``). :func:`with_extra_dims` folds extra
leading axes into the first one, applies, and unfolds them in every output;
:class:`WithExtraDims` is the same as a brick, so that it sits in a brick
tree (Blocks' ``WithExtraDims`` wrapper).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from bricks.core.application import BoundApplication, application
from bricks.core.brick import Brick
from bricks.core.checks import describe, is_non_numeric
from bricks.errors import InputTypeError, ShapeError

__all__ = ["with_extra_dims", "WithExtraDims"]


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "ndim")


def with_extra_dims(
    fn: Callable[..., Any], extra_ndim: int, where: str | None = None
) -> Callable[..., Any]:
    """Wrap ``fn`` so its array inputs may carry ``extra_ndim`` extra leading axes.

    The first ``extra_ndim + 1`` axes of every array argument are merged
    into one before calling ``fn``; the first axis of every array output is
    split back into them. All array arguments must share those leading axes.
    ``where`` (e.g. ``"WithExtraDims /wrapper"``) starts the error messages.

    >>> import jax.numpy as jnp
    >>> flat_only = lambda x: x.reshape(x.shape[0], -1)   # needs rank 3 in, gives rank 2
    >>> with_extra_dims(flat_only, 1)(jnp.ones((4, 5, 2, 3))).shape
    (4, 5, 6)
    """
    prefix = f"{where}: " if where else ""
    if extra_ndim < 0:
        raise ShapeError(f"{prefix}extra_ndim must be >= 0, got {extra_ndim}")

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if extra_ndim == 0:
            return fn(*args, **kwargs)
        leading: tuple[int, ...] | None = None

        def fold(x: Any) -> Any:
            nonlocal leading
            if is_non_numeric(x):
                raise InputTypeError(f"{prefix}an input is {x!r:.40}, not an array of numbers")
            if not _is_array(x):
                return x
            if x.ndim <= extra_ndim:
                raise ShapeError(
                    f"{prefix}with_extra_dims({extra_ndim}) got an input of shape {x.shape}: it "
                    f"needs more than {extra_ndim} axes"
                )
            lead = tuple(x.shape[: extra_ndim + 1])
            if leading is None:
                leading = lead
            elif lead != leading:
                raise ShapeError(
                    f"{prefix}with_extra_dims({extra_ndim}): inputs disagree on the leading axes: "
                    f"{leading} and {lead} (nothing is broadcast)"
                )
            return x.reshape(-1, *x.shape[extra_ndim + 1 :])

        args = tuple(fold(a) for a in args)
        kwargs = {k: fold(v) for k, v in kwargs.items()}
        out = fn(*args, **kwargs)
        if leading is None:
            return out

        def unfold(y: Any) -> Any:
            return y.reshape(*leading, *y.shape[1:]) if _is_array(y) and y.ndim else y

        return jax.tree_util.tree_map(unfold, out)

    return wrapped


class WithExtraDims(Brick):
    """A brick applying ``application_method`` to inputs with extra leading axes.

    Args:
        application_method: a bound application (``conv.apply``); its brick
            becomes this brick's child.
        extra_ndim: number of extra leading axes (lazy).

    >>> import jax.numpy as jnp
    >>> from bricks.core import Softmax
    >>> wrapped = WithExtraDims(Softmax().apply, extra_ndim=2)
    >>> wrapped.apply(jnp.zeros((2, 3, 4, 5))).shape
    (2, 3, 4, 5)
    """

    allocation_config = ("extra_ndim",)
    extra_ndim: int | None = None

    def __init__(
        self, application_method: BoundApplication, extra_ndim: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(children=[application_method.brick], **kwargs)
        self.application_method = application_method
        if extra_ndim is not None:
            self.extra_ndim = extra_ndim

    def _allocate(self) -> None:
        self.require("extra_ndim")

    @application
    def apply(self, *args: Any, **kwargs: Any) -> Any:
        wrapped = with_extra_dims(self.application_method, self.extra_ndim, describe(self))
        return wrapped(*args, **kwargs)

    @apply.delegate
    def _apply_delegate(self) -> BoundApplication:
        return self.application_method

    def get_dim(self, name: str) -> Any:
        return self.application_method.brick.get_dim(name)
