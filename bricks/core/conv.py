"""Stacks of convolutions: :class:`ConvolutionalSequence` and :class:`Flattener`.

The layers themselves live in :mod:`bricks.core.convolution` (NCHW images,
filters in the Theano layout, applied as a cross-correlation) and
:mod:`bricks.core.pooling`; this module re-exports them, so
``from bricks.core.conv import Convolutional`` keeps working.

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

from bricks.core.application import BoundApplication, application
from bricks.core.brick import Brick, Initializable
from bricks.core.checks import as_input, check_rank, check_size
from bricks.core.convolution import BorderMode, Convolutional, ConvolutionalTranspose, _channels
from bricks.core.pooling import AveragePooling, MaxPooling, Pooling

__all__ = [
    "Convolutional",
    "ConvolutionalTranspose",
    "Pooling",
    "MaxPooling",
    "AveragePooling",
    "ConvolutionalSequence",
    "Flattener",
]



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
