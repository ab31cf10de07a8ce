"""Pooling bricks over the last two axes: :class:`MaxPooling` and
:class:`AveragePooling`, with Theano's ``ignore_border`` arithmetic."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from bricks.core.application import application
from bricks.core.brick import Brick
from bricks.core.checks import as_input, check_rank
from bricks.core.convolution import _out_size, _pair
from bricks.errors import ConfigurationError

__all__ = ["Pooling", "MaxPooling", "AveragePooling"]


def _pool_out_size(
    n: int | None, window: int, step: int, pad: int, ignore_border: bool
) -> int | None:
    """Pooled length of an axis of length ``n``, as Theano's ``Pool.out_shape``.

    With ``ignore_border`` only whole windows of the padded axis count. Without
    it (padding is then zero), a step at least the window size keeps every
    window that starts inside the axis, ``ceil(n / step)``; a smaller step
    keeps windows until the first one that reaches the end,
    ``max(0, ceil((n - window) / step)) + 1``.
    """
    if n is None:
        return None
    if ignore_border:
        return _out_size(n, pad, pad, window, step)
    if step >= window:
        return (n - 1) // step + 1
    return max(0, (n - 1 - window) // step + 1) + 1


class Pooling(Brick):
    """Base of pooling bricks: acts on the last two axes of any input of rank >= 2.

    Args:
        pooling_size: ``(height, width)`` of the pooling window (lazy).
        step: strides; default the pooling size (non-overlapping windows).
        padding: zero padding ``(vertical, horizontal)`` on each side.
        num_channels, image_size: the input's dimensions, only for
            :meth:`get_dim` (a ``ConvolutionalSequence`` pushes them).
        ignore_border: Theano's flag (default ``True``). ``True`` drops the
            bottom rows and right columns that do not fill a whole window;
            ``False`` keeps them as partial windows, pooled over the pixels
            that exist: a ``(5, 5)`` image with ``(2, 2)`` windows gives
            ``(2, 2)`` with ``True`` and ``(3, 3)`` with ``False``. As in
            Theano, ``False`` cannot be combined with nonzero ``padding``.
    """

    allocation_config = (
        "pooling_size",
        "step",
        "padding",
        "num_channels",
        "image_size",
        "ignore_border",
    )
    pooling_size: tuple[int, int] | None = None
    step: tuple[int, int] | None = None
    padding: tuple[int, int] = (0, 0)
    num_channels: int | None = None
    image_size: tuple[int, int] | None = None
    ignore_border: bool = True

    def __init__(
        self,
        pooling_size: tuple[int, int] | None = None,
        step: tuple[int, int] | None = None,
        padding: tuple[int, int] | None = None,
        num_channels: int | None = None,
        image_size: tuple[int, int] | None = None,
        ignore_border: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for name, value in [
            ("pooling_size", pooling_size),
            ("step", step),
            ("padding", padding),
            ("num_channels", num_channels),
            ("image_size", image_size),
            ("ignore_border", ignore_border),
        ]:
            if value is not None:
                setattr(self, name, tuple(value) if isinstance(value, list) else value)

    def _allocate(self) -> None:
        self.require("pooling_size")
        self._geometry()

    def _geometry(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """The checked ``(pooling_size, step, padding)``."""
        size = _pair(self.pooling_size, "pooling_size", self)
        step = size if self.step is None else _pair(self.step, "step", self)
        padding = _pair(self.padding, "padding", self)
        if not self.ignore_border and padding != (0, 0):
            raise ConfigurationError(
                f"{type(self).__name__} {self.path}: ignore_border=False cannot be combined with "
                f"padding={padding} (Theano's pool_2d refuses it too); set padding=(0, 0) to keep "
                "partial border windows, or ignore_border=True to pad"
            )
        return size, step, padding

    def _output_size(self, image: Seq[int | None]) -> tuple[int | None, int | None]:
        size, step, padding = self._geometry()
        h, w = (
            _pool_out_size(n, k, s, p, self.ignore_border)
            for n, k, s, p in zip(image, size, step, padding, strict=True)
        )
        return h, w

    def _checked(self, input_: Any) -> jax.Array:
        """``input_`` as a float array of rank >= 2 (integer and bool images are
        pooled as float32)."""
        input_ = as_input(self, "input_", input_)
        check_rank(self, "input_", input_, (2, None), "(..., height, width)")
        if not jnp.issubdtype(input_.dtype, jnp.floating):
            input_ = input_.astype(jnp.float32)
        return input_

    def _window(self, shape: tuple[int, ...]) -> tuple[tuple, tuple, tuple]:
        """``reduce_window`` arguments for an input of ``shape``: the padding
        is the zero padding on both sides, plus (``ignore_border=False``) what
        the partial windows at the bottom and right need."""
        size, step, padding = self._geometry()
        pads = []
        for n, k, s, p, out in zip(
            shape[-2:], size, step, padding, self._output_size(shape[-2:]), strict=True
        ):
            # the last window spans [(out - 1) * s, (out - 1) * s + k) of the padded axis
            pads.append((p, p if self.ignore_border else max(0, (out - 1) * s + k - n)))
        lead = len(shape) - 2
        return (1,) * lead + size, (1,) * lead + step, ((0, 0),) * lead + tuple(pads)

    def get_dim(self, name: str) -> Any:
        size = (None, None) if self.image_size is None else tuple(self.image_size)
        if name == "input_":
            return (self.num_channels, *size)
        if name == "output":
            return (self.num_channels, *self._output_size(size))
        return super().get_dim(name)


class MaxPooling(Pooling):
    """The maximum over each pooling window; padding and the missing part of a
    partial window (``ignore_border=False``) never win it.

    >>> import jax.numpy as jnp
    >>> MaxPooling((2, 2)).apply(jnp.arange(16.0).reshape(1, 1, 4, 4)).tolist()
    [[[[5.0, 7.0], [13.0, 15.0]]]]
    >>> MaxPooling((2, 2), ignore_border=False).apply(jnp.arange(9.0).reshape(3, 3)).tolist()
    [[4.0, 5.0], [7.0, 8.0]]
    """

    mode = "max"  # Blocks' name of the pooling operation

    @application(inputs=["input_"], outputs=["output"])
    def apply(self, input_: jax.Array) -> jax.Array:
        input_ = self._checked(input_)
        window, steps, pads = self._window(input_.shape)
        # a Python scalar init lets lax recognise the max monoid (differentiable under jit);
        # padded cells hold the init value, so -inf
        return lax.reduce_window(input_, -jnp.inf, lax.max, window, steps, pads)


class AveragePooling(Pooling):
    """The mean over each pooling window.

    Args:
        include_padding: whether padded zeros count in the mean (default
            ``False``: divide by the number of real pixels in the window).
            A partial window of ``ignore_border=False`` holds no padding, so
            it is always divided by the pixels it covers (Theano's
            ``average_inc_pad`` and ``average_exc_pad`` agree there).

    >>> import jax.numpy as jnp
    >>> AveragePooling((2, 2)).apply(jnp.arange(16.0).reshape(1, 1, 4, 4)).tolist()
    [[[[2.5, 4.5], [10.5, 12.5]]]]
    >>> AveragePooling((2, 2), ignore_border=False).apply(jnp.arange(9.0).reshape(3, 3)).tolist()
    [[2.0, 3.5], [6.5, 8.0]]
    """

    def __init__(
        self,
        pooling_size: tuple[int, int] | None = None,
        *args: Any,
        include_padding: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(pooling_size, *args, **kwargs)
        self.include_padding = include_padding

    @application(inputs=["input_"], outputs=["output"])
    def apply(self, input_: jax.Array) -> jax.Array:
        input_ = self._checked(input_)
        window, steps, pads = self._window(input_.shape)
        zero = 0.0
        total = lax.reduce_window(input_, zero, lax.add, window, steps, pads)
        if self.include_padding and self.ignore_border:
            return total / (window[-2] * window[-1])
        # the real pixels of each window: padded cells of `ones` hold the init value 0
        ones = jnp.ones(input_.shape[-2:], input_.dtype)
        counts = lax.reduce_window(ones, zero, lax.add, window[-2:], steps[-2:], pads[-2:])
        return total / counts.reshape((1,) * (input_.ndim - 2) + counts.shape)
