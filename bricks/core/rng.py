"""Blocks' per-brick random state: ``brick.seed`` and ``brick.rng``.

Parameter values in bricks come from the JAX key of
:meth:`~bricks.core.Brick.initialize`; this mixin keeps Blocks' host-side
``numpy.random.RandomState`` for ported code that draws its own numbers, and
a ``seed`` given to a constructor is also the default seed of
``initialize()``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from bricks.errors import ConfigurationConflict

__all__ = ["RNGMixin"]


class RNGMixin:
    """``seed`` and ``rng`` as in Blocks' ``RNGMixin``."""

    #: draws the default seed of each new brick, as Blocks' ``RNGMixin.seed_rng``
    seed_rng: ClassVar[np.random.RandomState] = np.random.RandomState(1)

    @property
    def seed(self) -> int:
        """The seed of :attr:`rng` and, when given to the constructor, the
        default seed of ``initialize()``. Drawn from :attr:`seed_rng` when
        not given, so two bricks get different seeds (as in Blocks)."""
        d = self.__dict__
        if d.get("_seed") is None:
            d["_seed"] = int(self.seed_rng.randint(np.iinfo(np.int32).max))
        return d["_seed"]

    @seed.setter
    def seed(self, value: int) -> None:
        d = self.__dict__
        if d.get("_seed") is not None and d.get("_seed") != value:
            raise ConfigurationConflict(
                f"{getattr(self, 'path', self)}: seed is already {d['_seed']}; it can be set "
                "only once"
            )
        d["_seed"] = int(value)
        d.setdefault("_explicit", set()).add("seed")

    @property
    def rng(self) -> np.random.RandomState:
        """A ``numpy.random.RandomState`` for host-side randomness of ported
        code (Blocks' ``brick.rng``); a parent pushes its own to its children
        at ``push_initialization_config()``. Parameter values do not use it:
        they come from the JAX key of ``initialize()``."""
        d = self.__dict__
        if d.get("_rng") is None:
            d["_rng"] = np.random.RandomState(self.seed)
        return d["_rng"]

    @rng.setter
    def rng(self, value: np.random.RandomState) -> None:
        self.__dict__["_rng"] = value

    def _push_rng(self, children: Any) -> None:
        """Give children that take an ``rng`` (and have no seed of their own) this one."""
        for child in children:
            if isinstance(child, RNGMixin) and "seed" not in child.__dict__.get("_explicit", ()):
                child.rng = self.rng
