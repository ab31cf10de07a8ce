"""Blocks' :class:`SpatialBatchNormalization`: per-channel batch norm of images."""

from __future__ import annotations

from bricks.core.batch_norm import BatchNormalization
from bricks.errors import ConfigurationError

__all__ = ["SpatialBatchNormalization"]


class SpatialBatchNormalization(BatchNormalization):
    """Batch normalization of ``(batch, channels, *spatial)`` inputs with one
    statistic per channel: ``broadcastable`` is ``(False, True, ...)`` (all
    spatial axes shared) unless given.

    Args:
        input_dim: ``(channels, *spatial)``, at least two entries (lazy; a
            ``ConvolutionalSequence`` pushes ``num_channels`` and
            ``image_size``).
        **kwargs: as for :class:`BatchNormalization`.

    >>> import jax.numpy as jnp
    >>> sbn = SpatialBatchNormalization((3, 4, 4))
    >>> sbn.initialize()
    >>> sbn.population_mean.shape
    (3, 1, 1)
    """

    def _allocate(self) -> None:
        self.require("input_dim")
        dims = self.input_dim
        if isinstance(dims, int) or len(tuple(dims)) < 2:
            raise ConfigurationError(
                f"SpatialBatchNormalization {self.path} needs input_dim (channels, *spatial) "
                f"with at least two entries, got {dims!r}; use BatchNormalization for features"
            )
        if self.broadcastable is None:
            self.__dict__["broadcastable"] = (False,) + (True,) * (len(tuple(dims)) - 1)
        super()._allocate()
