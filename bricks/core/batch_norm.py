"""Batch normalization bricks.

:class:`BatchNormalization` is in *inference mode* by default: it
normalizes with its population statistics (mean 0 and deviation 1 at
initialization, so it starts as the identity). In *training mode* it
normalizes with the minibatch mean and deviation and annotates both (role
``BATCH_NORM_MINIBATCH_ESTIMATE``) so that
:func:`bricks.graph.get_batch_normalization_updates` can move the population
statistics towards them after each step. Training mode is switched on for a
graph by :func:`bricks.graph.apply_batch_normalization`, or for eager code
by the :func:`batch_normalization` context.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from bricks.core.application import BoundApplication, application
from bricks.core.brick import Initializable
from bricks.core.checks import as_input, check_rank, check_size, describe
from bricks.core.initialization import Constant
from bricks.core.roles import (
    BATCH_NORM_MINIBATCH_ESTIMATE,
    BATCH_NORM_POPULATION_MEAN,
    BATCH_NORM_POPULATION_STDEV,
    BATCH_NORM_SCALE_PARAMETER,
    BATCH_NORM_SHIFT_PARAMETER,
)
from bricks.core.sequences import MLP
from bricks.core.sequences import Sequence as Seq_
from bricks.core.simple import _expand_as
from bricks.core.tracing import Frame, current_frame, use_frame
from bricks.errors import ConfigurationError, ShapeError

__all__ = ["BatchNormalization", "BatchNormalizedMLP", "batch_normalization", "TRAINING_MODE"]

TRAINING_MODE = "batch_norm_training"


@contextlib.contextmanager
def batch_normalization(*bricks: Any, training: bool = True) -> Iterator[None]:
    """Run code with batch normalization in training (or inference) mode.

    ``batch_normalization()`` (or ``batch_normalization(True)``) switches
    every :class:`BatchNormalization`; ``batch_normalization(mlp, ...)``, as
    Blocks spelled it, only those in the given bricks' subtrees. It works in
    eager code and inside a graph function (a graph may then apply a brick
    in both modes).
    """
    if bricks and all(isinstance(b, bool) for b in bricks) and len(bricks) == 1:
        training, bricks = bricks[0], ()
    frame = current_frame()
    mode: Any = training
    if bricks and training:
        ids = {id(b) for brick in bricks for b in brick.iter_bricks()}
        outer = frame.extra.get(TRAINING_MODE)
        mode = True if outer is True else ids | (outer if isinstance(outer, set) else set())
    extra = {**frame.extra, TRAINING_MODE: mode}
    with use_frame(Frame(params=frame.params, recorder=frame.recorder, extra=extra)):
        yield


class BatchNormalization(Initializable):
    """Normalizes its input over the batch (and broadcastable) axes.

    Args:
        input_dim: the trailing shape of an example: an int for ``(batch,
            features)`` inputs, a tuple such as ``(channels, height, width)``
            for images. Leading axes beyond it are all normalized over.
        broadcastable: per axis of ``input_dim``, whether the statistics are
            shared along it (``(False, True, True)`` for per-channel
            normalization of NCHW images).
        conserve_memory: Blocks' choice between two Theano implementations
            of the same computation; kept (and pushed by
            :class:`BatchNormalizedMLP`) so ported code runs, but XLA plans
            memory itself, so both values compute the same thing.
        epsilon: added to the minibatch variance.
        scale_init, shift_init: schemes of ``scale`` and ``shift``
            (default ``Constant(1)`` and ``Constant(0)``).
        mean_only: only subtract the mean (lazy; no scale, no stdev).
        learn_scale, learn_shift: whether ``scale`` (gamma) and ``shift``
            (beta) exist (lazy; a parent may push them).

    For images in a :class:`~bricks.core.ConvolutionalSequence`,
    ``num_channels`` and ``image_size`` are views of ``input_dim``
    (``(num_channels, *image_size)``), so the sequence pushes them.

    >>> import jax.numpy as jnp
    >>> bn = BatchNormalization(3)
    >>> bn.initialize()
    >>> x = jnp.arange(6.0).reshape(2, 3)
    >>> bool(jnp.allclose(bn.apply(x), x))  # inference mode, fresh statistics
    True
    """

    allocation_config = (
        "input_dim",
        "broadcastable",
        "num_channels",
        "image_size",
        "mean_only",
        "learn_scale",
        "learn_shift",
    )
    _not_lazy = ("num_channels", "image_size", "mean_only", "learn_scale", "learn_shift")
    input_dim: Any = None
    broadcastable: Any = None
    mean_only: bool = False
    learn_scale: bool = True
    learn_shift: bool = True
    conserve_memory: bool = True

    def __init__(
        self,
        input_dim: int | Sequence[int] | None = None,
        broadcastable: Sequence[bool] | None = None,
        conserve_memory: bool = True,
        epsilon: float = 1e-4,
        scale_init: Any = None,
        shift_init: Any = None,
        mean_only: bool | None = None,
        learn_scale: bool | None = None,
        learn_shift: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if input_dim is not None:
            self.input_dim = tuple(input_dim) if isinstance(input_dim, list) else input_dim
        if broadcastable is not None:
            self.broadcastable = tuple(broadcastable)
        self.conserve_memory = bool(conserve_memory)
        self.epsilon = epsilon
        self.scale_init = Constant(1.0) if scale_init is None else scale_init
        self.shift_init = Constant(0.0) if shift_init is None else shift_init
        for name, value in (
            ("mean_only", mean_only),
            ("learn_scale", learn_scale),
            ("learn_shift", learn_shift),
        ):
            if value is not None:
                setattr(self, name, bool(value))

    def _image_dims(self) -> list[Any]:
        d = self.input_dim
        if d is None:
            return [None, None, None]
        return [d] if isinstance(d, int) else list(d)

    @property
    def num_channels(self) -> int | None:
        """The first entry of a tuple ``input_dim`` (images' channels)."""
        d = self.input_dim
        return None if d is None or isinstance(d, int) else d[0]

    @num_channels.setter
    def num_channels(self, value: int | None) -> None:
        dims = self._image_dims()
        dims[0] = value
        self.__dict__["input_dim"] = tuple(dims)

    @property
    def image_size(self) -> tuple[Any, ...] | None:
        """The entries of ``input_dim`` after the first (images' size)."""
        d = self.input_dim
        return None if d is None or isinstance(d, int) else tuple(d[1:])

    @image_size.setter
    def image_size(self, value: Sequence[int] | None) -> None:
        if value is None:
            return
        self.__dict__["input_dim"] = (self._image_dims()[0], *tuple(value))

    @property
    def _dims(self) -> tuple[int, ...]:
        d = self.input_dim
        if not isinstance(d, int) and None in tuple(d):
            raise ConfigurationError(
                f"{type(self).__name__} {self.path} needs every entry of input_dim, got "
                f"{tuple(d)}; set input_dim (or num_channels and image_size)"
            )
        return (int(d),) if isinstance(d, int) else tuple(int(x) for x in d)

    @property
    def _stat_shape(self) -> tuple[int, ...]:
        bc = self.broadcastable or (False,) * len(self._dims)
        return tuple(1 if b else d for d, b in zip(self._dims, bc, strict=True))

    def _allocate(self) -> None:
        self.require("input_dim")
        shape = self._stat_shape
        if self.broadcastable is not None and len(self.broadcastable) != len(self._dims):
            raise ConfigurationError(
                f"{type(self).__name__} {self.path}: broadcastable {self.broadcastable} needs "
                f"one entry per axis of input_dim {self.input_dim}"
            )
        if self.learn_scale and not self.mean_only:
            self.add_parameter("scale", shape, (BATCH_NORM_SCALE_PARAMETER,), self.scale_init)
        if self.learn_shift:
            self.add_parameter("shift", shape, (BATCH_NORM_SHIFT_PARAMETER,), self.shift_init)
        self.add_parameter("population_mean", shape, (BATCH_NORM_POPULATION_MEAN,), Constant(0.0))
        if not self.mean_only:
            self.add_parameter(
                "population_stdev", shape, (BATCH_NORM_POPULATION_STDEV,), Constant(1.0)
            )

    def _axes(self, ndim: int) -> tuple[int, ...]:
        n = len(self._dims)
        lead = tuple(range(ndim - n))
        bc = self.broadcastable or (False,) * n
        return lead + tuple(ndim - n + i for i, b in enumerate(bc) if b)

    @application(inputs=["input_"], outputs=["output"])
    def apply(self, input_: jax.Array) -> jax.Array:
        """Normalize ``(batch..., *input_dim)``; integer inputs are promoted to float."""
        input_ = as_input(self, "input_", input_)
        dims = self._dims
        layout = f"(batch, {', '.join(str(d) for d in dims)})"
        check_rank(self, "input_", input_, (len(dims) + 1, None), layout)
        for i, d in enumerate(dims):
            axis = i - len(dims)
            check_size(self, "input_", input_, axis, d, f"input_dim={self.input_dim}")
        if not jnp.issubdtype(input_.dtype, jnp.floating):
            input_ = input_.astype(jnp.float32)
        mode = current_frame().extra.get(TRAINING_MODE, False)
        if mode is True or (isinstance(mode, set) and id(self) in mode):
            # read the population statistics so a graph lists them as its
            # parameters: the updates after each step write them
            self.parameter("population_mean")
            if not self.mean_only:
                self.parameter("population_stdev")
            axes = self._axes(input_.ndim)
            if any(isinstance(input_.shape[a], int) and input_.shape[a] == 0 for a in axes):
                raise ShapeError(
                    f"{describe(self)}: input 'input_' has shape {input_.shape}: an empty batch "
                    "has no statistics to normalize with in training mode"
                )
            mean = jnp.mean(input_, axis=axes, keepdims=True)
            mean = self.add_auxiliary_variable(
                mean.reshape(self._stat_shape), (BATCH_NORM_MINIBATCH_ESTIMATE,), "batch_mean"
            )
            centered = input_ - _expand_as(mean, input_)
            if self.mean_only:
                out = centered
            else:
                var = jnp.mean(jnp.square(centered), axis=axes, keepdims=True)
                stdev = jnp.sqrt(var.reshape(self._stat_shape) + self.epsilon)
                stdev = self.add_auxiliary_variable(
                    stdev, (BATCH_NORM_MINIBATCH_ESTIMATE,), "batch_stdev"
                )
                out = centered / _expand_as(stdev, input_)
        else:
            out = input_ - _expand_as(self.population_mean, input_)
            if not self.mean_only:
                out = out / _expand_as(self.population_stdev, input_)
        if self.learn_scale and not self.mean_only:
            out = out * _expand_as(self.scale, input_)
        if self.learn_shift:
            out = out + _expand_as(self.shift, input_)
        return out

    def get_dim(self, name: str) -> Any:
        if name in ("input_", "output"):
            return self.input_dim
        return super().get_dim(name)

    def __enter__(self) -> BatchNormalization:
        """Blocks' ``with bn:``: this brick in training mode inside the block."""
        stack = contextlib.ExitStack()
        stack.enter_context(batch_normalization(self))
        self.__dict__.setdefault("_training_contexts", []).append(stack)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.__dict__["_training_contexts"].pop().close()


class BatchNormalizedMLP(MLP):
    """An :class:`MLP` with batch normalization between each linear map and
    its activation; the linear maps have no bias (the shift replaces it).

    As in Blocks, each activation is wrapped in a :class:`Sequence`
    (``activation_<i>``) of a :class:`BatchNormalization` (``batch_norm``) and
    the activation, so ``mlp.activations[i].children[0]`` is the batch norm.

    Args:
        activations, dims: as for :class:`MLP` (``None`` for no activation).
        conserve_memory: set on every batch norm now and whenever it is set
            on the MLP.
        mean_only, learn_scale, learn_shift: pushed to the batch norms at
            allocation when given.

    >>> from bricks.core import Tanh, IsotropicGaussian
    >>> mlp = BatchNormalizedMLP([Tanh(), Tanh()], [4, 5, 2], weights_init=IsotropicGaussian(0.1))
    >>> mlp.initialize()
    >>> sorted(p.split("/", 2)[-1] for p in mlp.get_parameter_values())[:2]
    ['activation_0/batch_norm.population_mean', 'activation_0/batch_norm.population_stdev']
    """

    def __init__(
        self,
        activations: Sequence[Any],
        dims: Sequence[int] | None = None,
        conserve_memory: bool = True,
        mean_only: bool | None = None,
        learn_scale: bool | None = None,
        learn_shift: bool | None = None,
        **kwargs: Any,
    ) -> None:
        batch_norms = [
            BatchNormalization(conserve_memory=conserve_memory, name="batch_norm")
            for _ in activations
        ]
        wrapped = []
        for i, (bn, act) in enumerate(zip(batch_norms, activations, strict=True)):
            apps = [bn.apply]
            if act is not None:
                apps.append(act if isinstance(act, BoundApplication) else act.apply)
            wrapped.append(Seq_(apps, name=f"activation_{i}"))
        kwargs.setdefault("use_bias", False)
        super().__init__(wrapped, dims, **kwargs)
        d = self.__dict__
        d["batch_norms"] = batch_norms
        d["_conserve_memory"] = bool(conserve_memory)
        d["_pushed_bn_settings"] = {}
        for name, value in (
            ("mean_only", mean_only),
            ("learn_scale", learn_scale),
            ("learn_shift", learn_shift),
        ):
            d[name] = getattr(BatchNormalization, name) if value is None else bool(value)
            if value is not None:
                d["_pushed_bn_settings"][name] = bool(value)

    @property
    def conserve_memory(self) -> bool:
        return self.__dict__["_conserve_memory"]

    @conserve_memory.setter
    def conserve_memory(self, value: bool) -> None:
        self.__dict__["_conserve_memory"] = bool(value)
        for bn in self.batch_norms:
            bn.conserve_memory = bool(value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("mean_only", "learn_scale", "learn_shift"):
            self.__dict__.setdefault("_pushed_bn_settings", {})[name] = bool(value)
            self.__dict__["allocated"] = False
        super().__setattr__(name, value)

    def _push_allocation_config(self) -> None:
        super()._push_allocation_config()
        for bn, d in zip(self.batch_norms, self.dims[1:], strict=True):
            self.push_to(bn, "input_dim", d)
            for name, value in self._pushed_bn_settings.items():
                self.push_to(bn, name, value)

