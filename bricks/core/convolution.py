"""Convolution bricks in Blocks' NCHW layout: :class:`Convolutional` and
:class:`ConvolutionalTranspose`, and the window arithmetic pooling shares.

Images are ``(batch, channels, height, width)`` and filters
``(num_filters, num_channels, filter_height, filter_width)`` as in
Blocks/Theano, computed by :func:`jax.lax.conv_general_dilated`.

Unlike Theano's ``conv2d`` (which flips filters: a true convolution), the
filters here are applied as a cross-correlation, like every modern framework
(lax, PyTorch, flax). To reuse filters trained with Blocks, flip them:
``W[..., ::-1, ::-1]``.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from bricks.core.application import application
from bricks.core.brick import Brick, Initializable
from bricks.core.checks import as_input, check_rank, check_size
from bricks.core.roles import BIAS, FILTER
from bricks.errors import ConfigurationError, ShapeError

__all__ = ["Convolutional", "ConvolutionalTranspose"]

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
