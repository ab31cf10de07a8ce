"""Bricks that chain other bricks: :class:`Sequence` and :class:`MLP`."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from typing import Any

import jax

from bricks.core.application import BoundApplication, application
from bricks.core.brick import Brick, Initializable
from bricks.core.checks import as_input, check_rank, check_size
from bricks.core.parallel import _copies, _push_dims
from bricks.core.simple import Linear
from bricks.errors import BrickTreeError, ConfigurationError

__all__ = ["Sequence", "MLP"]


class Sequence(Brick):
    """Applies a list of applications one after the other.

    Args:
        application_methods: bound applications (``brick.apply``) or bricks
            (standing for their ``apply``); their bricks become this brick's
            children. Unnamed bricks of one class are numbered in order
            (``linear_0``, ``linear_1``).

    >>> import jax.numpy as jnp
    >>> from bricks.core import Tanh, Identity
    >>> seq = Sequence([Identity().apply, Tanh().apply])
    >>> seq.apply.inputs, seq.apply.outputs
    (['input_'], ['output'])
    """

    def __init__(self, application_methods: Seq[BoundApplication | Brick], **kwargs: Any) -> None:
        # a brick stands for its ``apply``, as in Blocks
        application_methods = [
            app.apply if isinstance(app, Brick) else app for app in application_methods
        ]
        bricks = []
        for app in application_methods:
            if app.brick not in bricks:
                bricks.append(app.brick)
        super().__init__(children=bricks, **kwargs)
        self.application_methods = list(application_methods)

    @application
    def apply(self, *args: Any) -> Any:
        out = args
        for app in self.application_methods:
            out = app(*out)
            if not isinstance(out, (tuple, list)):
                out = (out,)
        return out[0] if len(out) == 1 else tuple(out)

    @apply.property("inputs")
    def apply_inputs(self) -> list[str]:
        return self.application_methods[0].inputs

    @apply.property("outputs")
    def apply_outputs(self) -> list[str]:
        return self.application_methods[-1].outputs

    # Blocks' FeedforwardSequence interface: the first brick's input_dim and the
    # last brick's output_dim
    @property
    def input_dim(self) -> Any:
        """``input_dim`` of the first brick (settable, as Blocks' ``FeedforwardSequence``)."""
        return getattr(self.application_methods[0].brick, "input_dim", None)

    @input_dim.setter
    def input_dim(self, value: Any) -> None:
        self.application_methods[0].brick.input_dim = value

    @property
    def output_dim(self) -> Any:
        """``output_dim`` of the last brick (settable)."""
        return getattr(self.application_methods[-1].brick, "output_dim", None)

    @output_dim.setter
    def output_dim(self, value: Any) -> None:
        self.application_methods[-1].brick.output_dim = value


class MLP(Initializable):
    """A multi-layer perceptron: ``Linear`` then activation, layer after layer.

    Args:
        activations: one activation brick per layer (``None`` for none).
        dims: ``[input_dim, hidden..., output_dim]``; may be set later
            (``mlp.dims = [...]``) or left to a parent.
        prototype: the transformation each layer copies (default
            ``Linear()``), as in Blocks: layer ``i`` is a deep copy named
            ``"<class name in lower case>_<i>"`` (``linear_0``, ...) that gets
            its ``input_dim``/``output_dim`` (or first and last ``dims``)
            pushed. Settings given on the prototype (``use_bias=False``, a
            ``weights_init``) are the layers' defaults: those given to the
            MLP overwrite them, as in Blocks. It must not have a parent.
        weights_init, biases_init, use_bias: pushed to the linear layers
            (``use_bias`` only when given).

    >>> import jax.numpy as jnp
    >>> from bricks.core import Tanh, Softmax, IsotropicGaussian, Constant
    >>> mlp = MLP([Tanh(), Softmax()], [4, 3, 2],
    ...           weights_init=IsotropicGaussian(0.1), biases_init=Constant(0.0))
    >>> mlp.initialize(seed=1)
    >>> sorted(mlp.get_parameter_values())
    ['/mlp/linear_0.W', '/mlp/linear_0.b', '/mlp/linear_1.W', '/mlp/linear_1.b']
    >>> mlp.apply(jnp.ones((5, 4))).shape
    (5, 2)
    """

    allocation_config = ("dims",)
    dims: list[int] | None = None

    def __init__(
        self,
        activations: Seq[Brick | None],
        dims: Seq[int] | None = None,
        prototype: Brick | None = None,
        **kwargs: Any,
    ) -> None:
        # an activation may be a brick or one of its applications (``Tanh().apply``)
        self._activation_apps = [
            a if isinstance(a, BoundApplication) or a is None else a.apply for a in activations
        ]
        self.activations = [a.brick if isinstance(a, BoundApplication) else a for a in activations]
        # as in Blocks: each layer is a copy of the prototype, named after its class
        self.prototype = Linear() if prototype is None else prototype
        if not isinstance(self.prototype, Brick):
            raise BrickTreeError(
                f"MLP prototype must be a brick (e.g. Linear(use_bias=False)), got "
                f"{type(self.prototype).__name__}"
            )
        prefix = type(self.prototype).__name__.lower()
        self.linear_transformations = _copies(
            self.prototype, [str(i) for i in range(len(activations))], prefix
        )
        for layer in self.linear_transformations:
            # the prototype's settings are defaults: what the MLP pushes (dims, use_bias,
            # weights_init, ...) overwrites them, as Blocks' MLP does
            layer.__dict__["_explicit"] = set()
        acts = [a for a in self.activations if a is not None]
        names = [a.name for a in acts]
        if len(set(names)) != len(names):
            for i, act in enumerate(self.activations):
                if act is not None:
                    act.__dict__["name"] = f"{act.name}_{i}"
        children = [b for pair in zip(self.linear_transformations, self.activations, strict=True)
                    for b in pair if b is not None]
        super().__init__(children=children, **kwargs)
        if dims is not None:
            self.dims = list(dims)

    def _push_allocation_config(self) -> None:
        super()._push_allocation_config()
        self.require("dims")
        if len(self.dims) != len(self.linear_transformations) + 1:
            raise ConfigurationError(
                f"MLP {self.path} has {len(self.activations)} activations, so it needs "
                f"{len(self.activations) + 1} dims, got {len(self.dims)}: {list(self.dims)}"
            )
        for lin, d_in, d_out in zip(
            self.linear_transformations, self.dims[:-1], self.dims[1:], strict=True
        ):
            _push_dims(self, lin, d_in, d_out)

    @application(inputs=["input_"], outputs=["output"])
    def apply(self, input_: jax.Array) -> jax.Array:
        out = self._check_input(input_)
        for lin, act in zip(self.linear_transformations, self._activation_apps, strict=True):
            out = lin.apply(out)
            if act is not None:
                out = act(out)
        return out

    def _check_input(self, input_: jax.Array) -> jax.Array:
        """The input as an array whose last axis is ``dims[0]``."""
        input_ = as_input(self, "input_", input_)
        first = self.dims[0]
        check_rank(self, "input_", input_, (1, None), f"(..., {first})")
        check_size(self, "input_", input_, -1, first, f"dims[0]={first}")
        return input_

    def get_dim(self, name: str) -> int:
        if name == "input_":
            return self.dims[0]
        if name == "output":
            return self.dims[-1]
        return super().get_dim(name)
