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

from bricks.core.application import application
from bricks.core.brick import Initializable
from bricks.core.checks import as_input, check_rank, check_size
from bricks.core.initialization import Constant
from bricks.core.roles import (
    BATCH_NORM_MINIBATCH_ESTIMATE,
    BATCH_NORM_POPULATION_MEAN,
    BATCH_NORM_POPULATION_STDEV,
    BATCH_NORM_SCALE_PARAMETER,
    BATCH_NORM_SHIFT_PARAMETER,
)
from bricks.core.sequences import MLP
from bricks.core.simple import _expand_as
from bricks.core.tracing import Frame, current_frame, use_frame

__all__ = ["BatchNormalization", "BatchNormalizedMLP", "batch_normalization", "TRAINING_MODE"]

TRAINING_MODE = "batch_norm_training"


@contextlib.contextmanager
def batch_normalization(training: bool = True) -> Iterator[None]:
    """Run eager code with batch normalization in training (or inference) mode."""
    frame = current_frame()
    extra = {**frame.extra, TRAINING_MODE: training}
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
        epsilon: added to the minibatch variance.
        learn_scale, learn_shift: whether ``scale`` (gamma) and ``shift``
            (beta) exist.
        mean_only: only subtract the mean.

    >>> import jax.numpy as jnp
    >>> bn = BatchNormalization(3)
    >>> bn.initialize()
    >>> x = jnp.arange(6.0).reshape(2, 3)
    >>> bool(jnp.allclose(bn.apply(x), x))  # inference mode, fresh statistics
    True
    """

    allocation_config = ("input_dim", "broadcastable")
    input_dim: Any = None
    broadcastable: Any = None

    def __init__(
        self,
        input_dim: int | Sequence[int] | None = None,
        broadcastable: Sequence[bool] | None = None,
        epsilon: float = 1e-4,
        learn_scale: bool = True,
        learn_shift: bool = True,
        mean_only: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if input_dim is not None:
            self.input_dim = input_dim
        if broadcastable is not None:
            self.broadcastable = tuple(broadcastable)
        self.epsilon = epsilon
        self.learn_scale = learn_scale
        self.learn_shift = learn_shift
        self.mean_only = mean_only

    @property
    def _dims(self) -> tuple[int, ...]:
        d = self.input_dim
        return (int(d),) if isinstance(d, int) else tuple(int(x) for x in d)

    @property
    def _stat_shape(self) -> tuple[int, ...]:
        bc = self.broadcastable or (False,) * len(self._dims)
        return tuple(1 if b else d for d, b in zip(self._dims, bc, strict=True))

    def _allocate(self) -> None:
        self.require("input_dim")
        shape = self._stat_shape
        if self.learn_scale and not self.mean_only:
            self.add_parameter("scale", shape, (BATCH_NORM_SCALE_PARAMETER,), Constant(1.0))
        if self.learn_shift:
            self.add_parameter("shift", shape, (BATCH_NORM_SHIFT_PARAMETER,), Constant(0.0))
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
        if current_frame().extra.get(TRAINING_MODE, False):
            # read the population statistics so a graph lists them as its
            # parameters: the updates after each step write them
            self.parameter("population_mean")
            if not self.mean_only:
                self.parameter("population_stdev")
            axes = self._axes(input_.ndim)
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


class BatchNormalizedMLP(MLP):
    """An :class:`MLP` with batch normalization between each linear map and
    its activation; the linear maps have no bias (the shift replaces it).

    >>> from bricks.core import Tanh, IsotropicGaussian
    >>> mlp = BatchNormalizedMLP([Tanh(), Tanh()], [4, 5, 2], weights_init=IsotropicGaussian(0.1))
    >>> mlp.initialize()
    >>> sorted(p.split("/")[-1] for p in mlp.get_parameter_values())[:2]
    ['batch_norm_0.population_mean', 'batch_norm_0.population_stdev']
    """

    def __init__(
        self, activations: Sequence[Any], dims: Sequence[int] | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("use_bias", False)
        super().__init__(activations, dims, **kwargs)
        self.batch_norms = [
            BatchNormalization(name=f"batch_norm_{i}")
            for i in range(len(self.linear_transformations))
        ]
        for i, bn in enumerate(self.batch_norms):
            self.children.insert(self.children.index(self.linear_transformations[i]) + 1, bn)

    def _push_allocation_config(self) -> None:
        super()._push_allocation_config()
        for bn, d in zip(self.batch_norms, self.dims[1:], strict=True):
            self.push_to(bn, "input_dim", d)

    @application(inputs=["input_"], outputs=["output"])
    def apply(self, input_: jax.Array) -> jax.Array:
        out = self._check_input(input_)
        for lin, bn, act in zip(
            self.linear_transformations, self.batch_norms, self.activations, strict=True
        ):
            out = bn.apply(lin.apply(out))
            if act is not None:
                out = act.apply(out)
        return out
