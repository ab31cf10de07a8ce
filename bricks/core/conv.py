"""Convolution and pooling bricks in Blocks' NCHW layout.

Images are ``(batch, channels, height, width)`` and filters
``(num_filters, num_channels, filter_height, filter_width)`` as in
Blocks/Theano, computed by :func:`jax.lax.conv_general_dilated`.

Unlike Theano's ``conv2d`` (which flips filters: a true convolution), the
filters here are applied as a cross-correlation, like every modern framework
(lax, PyTorch, flax). To reuse filters trained with Blocks, flip them:
``W[..., ::-1, ::-1]``.

A LeNet::

    conv = ConvolutionalSequence(
        [Convolutional((5, 5), 20), Rectifier(), MaxPooling((2, 2)),
         Convolutional((5, 5), 50), Rectifier(), MaxPooling((2, 2))],
        num_channels=1, image_size=(28, 28), weights_init=..., biases_init=...)
    flat = int(np.prod(conv.get_dim("output")))      # 50 * 4 * 4
    mlp = MLP([Rectifier(), Softmax()], [flat, 500, 10], ...)
    probs = mlp.apply(Flattener().apply(conv.apply(images)))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence as Seq
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from bricks.core.application import BoundApplication, application
from bricks.core.brick import Brick, Initializable
from bricks.core.checks import as_input, check_rank, check_size
from bricks.core.roles import BIAS, FILTER
from bricks.errors import ConfigurationError, ShapeError

__all__ = [
    "Convolutional",
    "ConvolutionalTranspose",
    "Pooling",
    "MaxPooling",
    "AveragePooling",
    "ConvolutionalSequence",
    "Flattener",
]

BorderMode = str | int | tuple[int, int]


def _pair(value: Any, what: str, brick: Brick) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise ConfigurationError(f"{brick.path}: `{what}` needs 2 entries, got {value}")
    return value  # type: ignore[return-value]


def _channels(n: int | None) -> str:
    """The setting that decides the channels of an image input, for messages."""
    return f"num_channels={n} for (batch, {n}, height, width) images"


def _out_size(n: int | None, lo: int, hi: int, window: int, step: int) -> int | None:
    if n is None:
        return None
    return (n + lo + hi - window) // step + 1


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


class Convolutional(Initializable):
    """A 2-d convolution of ``(batch, num_channels, height, width)`` images.

    Args:
        filter_size: ``(height, width)`` of the filters (lazy).
        num_filters: number of filters, the output channels (lazy).
        num_channels: input channels (lazy; a ``ConvolutionalSequence``
            pushes it).
        image_size: ``(height, width)`` of the input; needed for untied
            biases and for ``get_dim("output")`` (lazy).
        step: strides ``(vertical, horizontal)``; default ``(1, 1)``.
        border_mode: ``"valid"`` (default, no padding), ``"full"`` (pad
            ``filter - 1``), ``"half"`` (pad ``filter // 2``: same size for
            odd filters), or an int / pair of ints of zero padding per side.
        tied_biases: one bias per filter (``True``, the default, as in
            Blocks) or one per filter and output position (``False``; needs
            ``image_size`` and fits that image size only).
        weights_init, biases_init, use_bias: see :class:`Initializable`;
            ``W`` has role ``FILTER``, ``b`` role ``BIAS``.

    >>> import jax.numpy as jnp
    >>> from bricks.core import Constant
    >>> conv = Convolutional((3, 3), 4, num_channels=2, image_size=(5, 5),
    ...                      weights_init=Constant(1.0), biases_init=Constant(0.0))
    >>> conv.initialize()
    >>> conv.apply(jnp.ones((1, 2, 5, 5))).shape, conv.get_dim("output")
    ((1, 4, 3, 3), (4, 3, 3))
    """

    allocation_config = (
        "filter_size",
        "num_filters",
        "num_channels",
        "image_size",
        "step",
        "border_mode",
        "tied_biases",
    )
    _output_size_from = "`image_size`"  # what untied biases need to know their shape
    filter_size: tuple[int, int] | None = None
    num_filters: int | None = None
    num_channels: int | None = None
    image_size: tuple[int, int] | None = None
    step: tuple[int, int] = (1, 1)
    border_mode: BorderMode = "valid"
    tied_biases: bool = True

    def __init__(
        self,
        filter_size: tuple[int, int] | None = None,
        num_filters: int | None = None,
        num_channels: int | None = None,
        image_size: tuple[int, int] | None = None,
        step: tuple[int, int] | None = None,
        border_mode: BorderMode | None = None,
        tied_biases: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for name, value in [
            ("filter_size", filter_size),
            ("num_filters", num_filters),
            ("num_channels", num_channels),
            ("image_size", image_size),
            ("step", step),
            ("border_mode", border_mode),
            ("tied_biases", tied_biases),
        ]:
            if value is not None:
                setattr(self, name, tuple(value) if isinstance(value, list) else value)

    def padding(self) -> list[tuple[int, int]]:
        """Zero padding ``[(top, bottom), (left, right)]`` of the border mode."""
        fh, fw = _pair(self.filter_size, "filter_size", self)
        mode = self.border_mode
        if mode == "valid":
            return [(0, 0), (0, 0)]
        if mode == "full":
            return [(fh - 1, fh - 1), (fw - 1, fw - 1)]
        if mode == "half":
            return [(fh // 2, fh // 2), (fw // 2, fw // 2)]
        if isinstance(mode, str):
            raise ConfigurationError(
                f"{type(self).__name__} {self.path}: border_mode {mode!r} is not 'valid', "
                "'full', 'half' or an int / pair of ints"
            )
        ph, pw = _pair(mode, "border_mode", self)
        return [(ph, ph), (pw, pw)]

    def _allocate(self) -> None:
        self.require("filter_size", "num_filters", "num_channels")
        fh, fw = _pair(self.filter_size, "filter_size", self)
        self.padding()  # validates border_mode
        self.add_parameter("W", (self.num_filters, self.num_channels, fh, fw), (FILTER,))
        if self._use_bias:
            if self.tied_biases:
                self.add_parameter("b", (self.num_filters,), (BIAS,), "biases_init")
            else:
                output = self.get_dim("output")
                if None in output:
                    raise ConfigurationError(
                        f"Cannot infer bias size of {type(self).__name__} {self.path}: untied "
                        f"biases (one per output position) need {self._output_size_from}; set "
                        "it or tied_biases=True"
                    )
                self.add_parameter("b", output, (BIAS,), "biases_init")

    @application(inputs=["input_"], outputs=["output"])
    def apply(self, input_: jax.Array) -> jax.Array:
        """Convolve ``(batch, num_channels, height, width)`` into
        ``(batch, num_filters, out_height, out_width)``."""
        input_ = self._check_images(input_)
        if not self.tied_biases and self._use_bias and self.image_size is not None:
            size = tuple(self.image_size)
            for axis, n in zip((2, 3), size, strict=True):
                check_size(
                    self, "input_", input_, axis, n,
                    f"image_size={size} (untied biases have one value per output position; "
                    "use tied_biases=True for images of any size)",
                    what="pixels",
                )
        W = self.W
        dtype = jnp.result_type(input_, W)
        output = lax.conv_general_dilated(
            input_.astype(dtype),
            W.astype(dtype),
            window_strides=_pair(self.step, "step", self),
            padding=self.padding(),
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
        )
        if self._use_bias:
            b = self.b
            output = output + (b[None, :, None, None] if self.tied_biases else b[None])
        return output

    def _check_images(self, input_: Any) -> jax.Array:
        """``input_`` as ``(batch, num_channels, height, width)`` images."""
        input_ = as_input(self, "input_", input_)
        check_rank(
            self, "input_", input_, 4, f"(batch, {self.num_channels}, height, width) images",
            "for extra leading axes use with_extra_dims",
        )
        check_size(
            self, "input_", input_, 1, self.num_channels, _channels(self.num_channels),
            what="channels",
        )
        return input_

    def get_dim(self, name: str) -> Any:
        size = (None, None) if self.image_size is None else tuple(self.image_size)
        if name == "input_":
            return (self.num_channels, *size)
        if name == "output":
            if self.filter_size is None:
                if size == (None, None):  # only the channels are known
                    return (self.num_filters, None, None)
                self.require("filter_size")
            fh, fw = _pair(self.filter_size, "filter_size", self)
            sh, sw = _pair(self.step, "step", self)
            (t, b), (lft, r) = self.padding()
            return (
                self.num_filters,
                _out_size(size[0], t, b, fh, sh),
                _out_size(size[1], lft, r, fw, sw),
            )
        return super().get_dim(name)

    @property
    def num_output_channels(self) -> int | None:
        return self.num_filters


class ConvolutionalTranspose(Convolutional):
    """The transpose (adjoint) of a 2-d convolution: upsamples
    ``(batch, num_channels, height, width)`` into
    ``(batch, num_filters, *original_image_size)``.

    It is the gradient of :class:`Convolutional` with respect to its input:
    every input pixel adds itself times its filters into the output, the
    pixels ``step`` apart, and the border mode's padding is then cut from
    the edges. ``step`` and ``border_mode`` are those of the corresponding
    convolution, which maps ``num_filters`` channels of
    ``original_image_size`` back to ``num_channels`` channels of
    ``image_size``.

    Args:
        filter_size: ``(height, width)`` of the filters (lazy).
        num_filters: output channels, the input channels of the
            corresponding convolution (lazy).
        num_channels: input channels, the filters of the corresponding
            convolution (lazy; a ``ConvolutionalSequence`` pushes it).
        original_image_size: ``(height, width)`` of the output, the input
            size of the corresponding convolution. Default: inferred per axis
            from the input size ``i`` as ``step * (i - 1) + filter - pad_lo
            - pad_hi + unused_edge``, the smallest image that convolves to
            ``i`` plus ``unused_edge``. Given, it must convolve back to the
            input size: between that smallest image and ``step - 1`` more.
        unused_edge: ``(height, width)`` pixels added at the bottom and right
            of the inferred output, which the corresponding convolution's
            windows leave out; ``0 <= unused_edge < step``. Ignored when
            ``original_image_size`` is set. Default ``(0, 0)``.
        image_size: ``(height, width)`` of the input; needed for untied
            biases without ``original_image_size`` and for
            ``get_dim("output")`` (lazy).
        step, border_mode: the strides and padding of the corresponding
            convolution, as in :class:`Convolutional`.
        tied_biases: one bias per output channel (``True``, the default, as
            in :class:`Convolutional` and Blocks) or one per output channel
            and position (``False``).
        weights_init, biases_init, use_bias: see :class:`Initializable`.

    ``W`` (role ``FILTER``) has Blocks' layout ``(num_filters, num_channels,
    filter_height, filter_width)``: output channels first, like
    :class:`Convolutional`'s ``W``. The corresponding convolution is
    therefore ``Convolutional(filter_size, num_channels, num_filters)`` with
    ``W.transpose(1, 0, 2, 3)``, and ``sum(conv(x) * y) == sum(x * convT(y))``.
    ``b`` (role ``BIAS``) is ``(num_filters,)`` tied or
    ``(num_filters, *original_image_size)`` untied. Filters trained with
    Blocks load as ``W[..., ::-1, ::-1]``, as for :class:`Convolutional`.

    >>> import jax.numpy as jnp
    >>> from bricks.core import Constant
    >>> up = ConvolutionalTranspose((2, 2), 1, num_channels=1, step=(2, 2),
    ...                             tied_biases=True, weights_init=Constant(1.0),
    ...                             biases_init=Constant(0.0))
    >>> up.initialize()
    >>> up.apply(jnp.array([[[[1.0, 2.0]]]])).tolist()
    [[[[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]]]]
    """

    allocation_config = ("original_image_size", "unused_edge")
    _output_size_from = "`original_image_size` or `image_size`"
    original_image_size: tuple[int, int] | None = None
    unused_edge: tuple[int, int] = (0, 0)

    def __init__(
        self,
        filter_size: tuple[int, int] | None = None,
        num_filters: int | None = None,
        num_channels: int | None = None,
        original_image_size: tuple[int, int] | None = None,
        unused_edge: tuple[int, int] | None = None,
        *,
        image_size: tuple[int, int] | None = None,
        step: tuple[int, int] | None = None,
        border_mode: BorderMode | None = None,
        tied_biases: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            filter_size,
            num_filters,
            num_channels,
            image_size,
            step=step,
            border_mode=border_mode,
            tied_biases=tied_biases,
            **kwargs,
        )
        for name, value in [
            ("original_image_size", original_image_size),
            ("unused_edge", unused_edge),
        ]:
            if value is not None:
                setattr(self, name, tuple(value))

    def _allocate(self) -> None:
        d = self.__dict__
        if d.get("_inferred_original_size"):
            d.pop("original_image_size", None)
            d["_inferred_original_size"] = False
        super()._allocate()
        if self.original_image_size is None and self.image_size is not None:
            # as Blocks: the inferred size is filled in (and re-inferred on reallocation)
            d["original_image_size"] = tuple(self._output_size(tuple(self.image_size)))
            d["_inferred_original_size"] = True

    def _output_size(self, image: Seq[int | None]) -> tuple[int | None, int | None]:
        """The output ``(height, width)`` for an input of ``image`` size:
        ``original_image_size``, checked against ``image`` where it is known,
        or inferred from it."""
        # a size inferred at allocation (for image_size) is inferred again per input
        inferred = self.__dict__.get("_inferred_original_size")
        original = None if inferred else self.original_image_size
        if self.filter_size is None and original is None:
            self.require("filter_size")
        filters = _pair(self.filter_size, "filter_size", self)
        steps = _pair(self.step, "step", self)
        pads = self.padding()
        # per axis, the smallest output that the corresponding convolution maps to `image`
        smallest = [
            None if n is None else s * (n - 1) + k - lo - hi
            for n, k, s, (lo, hi) in zip(image, filters, steps, pads, strict=True)
        ]
        if original is not None:
            size = _pair(original, "original_image_size", self)
            for axis, low, s, got in zip(("height", "width"), smallest, steps, size, strict=True):
                if low is not None and not max(low, 1) <= got <= low + s - 1:
                    raise ConfigurationError(
                        f"ConvolutionalTranspose {self.path}: original_image_size {size} cannot "
                        f"be convolved (filter_size {filters}, step {steps}, border_mode "
                        f"{self.border_mode!r}) to the input size {tuple(image)}: expected a "
                        f"{axis} in [{max(low, 1)}, {low + s - 1}], got {got}. Fix "
                        "original_image_size, or leave it unset to infer it from the input"
                    )
            return size
        unused = _pair(self.unused_edge, "unused_edge", self)
        if not all(0 <= u < s for u, s in zip(unused, steps, strict=True)):
            raise ConfigurationError(
                f"ConvolutionalTranspose {self.path}: unused_edge {unused} must be in "
                f"[0, step) per axis, with step {steps}; larger edges are not seen by the "
                "corresponding convolution"
            )
        out = [None if n is None else n + u for n, u in zip(smallest, unused, strict=True)]
        if any(n is not None and n < 1 for n in out):
            raise ConfigurationError(
                f"ConvolutionalTranspose {self.path}: the input size {tuple(image)} gives an "
                f"empty output {tuple(out)} with filter_size {filters}, step {steps} and "
                f"border_mode {self.border_mode!r}; use less padding"
            )
        return out[0], out[1]

    @application(inputs=["input_"], outputs=["output"])
    def apply(self, input_: jax.Array) -> jax.Array:
        """Transpose-convolve ``(batch, num_channels, height, width)`` into
        ``(batch, num_filters, *original_image_size)``."""
        input_ = self._check_images(input_)
        image = input_.shape[2:]
        out = self._output_size(image)
        filters = _pair(self.filter_size, "filter_size", self)
        steps = _pair(self.step, "step", self)
        # Spread the input `step` apart (lhs_dilation) and cross-correlate it with the
        # flipped filters: a full correlation pads `filter - 1` per side, the border mode's
        # padding is cut back off (negative padding crops), and the bottom / right padding
        # grows by what original_image_size or unused_edge adds past the smallest output.
        padding = [
            (k - 1 - lo, k - 1 - hi + o - (s * (n - 1) + k - lo - hi))
            for n, o, k, s, (lo, hi) in zip(image, out, filters, steps, self.padding(), strict=True)
        ]
        W = self.W
        dtype = jnp.result_type(input_, W)
        output = lax.conv_general_dilated(
            input_.astype(dtype),
            W[..., ::-1, ::-1].astype(dtype),
            window_strides=(1, 1),
            padding=padding,
            lhs_dilation=steps,
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
        )
        if self._use_bias:
            b = self.b
            if not self.tied_biases and b.shape[1:] != output.shape[2:]:
                raise ShapeError(
                    f"ConvolutionalTranspose {self.path} has untied biases for outputs of size "
                    f"{b.shape[1:]}, but the input of size {tuple(image)} gives "
                    f"{output.shape[2:]}; feed inputs of image_size {self.image_size} or use "
                    "tied_biases=True"
                )
            output = output + (b[None, :, None, None] if self.tied_biases else b[None])
        return output

    def get_dim(self, name: str) -> Any:
        if name == "output":
            size = (None, None) if self.image_size is None else tuple(self.image_size)
            return (self.num_filters, *self._output_size(size))
        return super().get_dim(name)


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


class ConvolutionalSequence(Initializable):
    """Convolutions, poolings and activations applied in order, with their
    dimensions propagated: each layer gets ``num_channels`` and ``image_size``
    from the output of the previous one (``get_dim("output")``).

    Args:
        layers: bricks (or their applications) to apply in order; element-wise
            bricks such as ``Rectifier()`` pass the dimensions through.
        num_channels: channels of the input images (lazy).
        image_size: ``(height, width)`` of the input images (lazy).
        border_mode, tied_biases: when given, set on every ``Convolutional``
            (and ``ConvolutionalTranspose``), over the layers' own settings
            (as Blocks).
        weights_init, biases_init, use_bias: pushed to the layers.

    Layers whose default names clash are renamed ``f"{name}_{index}"``.

    >>> import jax.numpy as jnp
    >>> from bricks.core import Rectifier, Constant
    >>> seq = ConvolutionalSequence(
    ...     [Convolutional((3, 3), 4), Rectifier(), MaxPooling((2, 2)),
    ...      Convolutional((2, 2), 3, border_mode="half")],
    ...     num_channels=1, image_size=(8, 8),
    ...     weights_init=Constant(0.1), biases_init=Constant(0.0))
    >>> seq.get_dim("output")
    (3, 4, 4)
    >>> seq.initialize()
    >>> seq.apply(jnp.ones((2, 1, 8, 8))).shape
    (2, 3, 4, 4)
    """

    allocation_config = ("num_channels", "image_size", "border_mode", "tied_biases")
    num_channels: int | None = None
    image_size: tuple[int, int] | None = None
    border_mode: BorderMode | None = None
    tied_biases: bool | None = None

    def __init__(
        self,
        layers: Seq[Brick | BoundApplication],
        num_channels: int | None = None,
        image_size: tuple[int, int] | None = None,
        border_mode: BorderMode | None = None,
        tied_biases: bool | None = None,
        **kwargs: Any,
    ) -> None:
        apps = [layer if isinstance(layer, BoundApplication) else layer.apply for layer in layers]
        bricks = []  # a brick applied twice (one activation) is one child
        for app in apps:
            if not any(app.brick is b for b in bricks):
                bricks.append(app.brick)
        counts = Counter(b.name for b in bricks)
        for i, b in enumerate(bricks):
            if counts[b.name] > 1:
                b.name = f"{b.name}_{i}"
        super().__init__(children=bricks, **kwargs)
        self.layers = bricks
        self.application_methods = apps
        for name, value in [
            ("num_channels", num_channels),
            ("image_size", image_size),
            ("border_mode", border_mode),
            ("tied_biases", tied_biases),
        ]:
            if value is not None:
                setattr(self, name, tuple(value) if isinstance(value, list) else value)

    def _push_allocation_config(self) -> None:
        super()._push_allocation_config()
        channels = self.num_channels
        size = None if self.image_size is None else tuple(self.image_size)
        for layer in self.layers:
            config = type(layer)._config_names("allocation_config")
            if "num_channels" not in config:
                continue
            self.push_to(layer, "num_channels", channels)
            self.push_to(layer, "image_size", size)
            if isinstance(layer, Convolutional):
                # as Blocks: settings given to the sequence win over the layers' own
                for name in ("border_mode", "tied_biases"):
                    value = getattr(self, name)
                    if value is not None:
                        with layer._pushed():
                            setattr(layer, name, value)
            out = layer.get_dim("output")
            channels = out[0]
            size = None if None in out[1:] else tuple(out[1:])

    @application(inputs=["input_"], outputs=["output"])
    def apply(self, input_: jax.Array) -> jax.Array:
        out = as_input(self, "input_", input_)
        check_rank(self, "input_", out, 4, f"(batch, {self.num_channels}, height, width) images")
        check_size(
            self, "input_", out, 1, self.num_channels, _channels(self.num_channels),
            what="channels",
        )
        for app in self.application_methods:
            out = app(out)
        return out

    def get_dim(self, name: str) -> Any:
        size = (None, None) if self.image_size is None else tuple(self.image_size)
        if name == "input_":
            return (self.num_channels, *size)
        if name == "output":
            self.push_allocation_config()
            for layer in reversed(self.layers):
                if "num_channels" in type(layer)._config_names("allocation_config"):
                    return tuple(layer.get_dim("output"))
            return (self.num_channels, *size)
        return super().get_dim(name)


class Flattener(Brick):
    """Flattens every axis but the first: ``(batch, ...) -> (batch, features)``.

    >>> import jax.numpy as jnp
    >>> Flattener().apply(jnp.ones((2, 3, 4, 5))).shape
    (2, 60)
    """

    @application(inputs=["input_"], outputs=["output"])
    def apply(self, input_: jax.Array) -> jax.Array:
        input_ = as_input(self, "input_", input_)
        check_rank(self, "input_", input_, (1, None), "(batch, ...)")
        features = 1
        for n in input_.shape[1:]:
            features *= n
        return input_.reshape(input_.shape[0], features)  # not -1: the batch may be empty
