"""Initialization schemes: ``(key, shape, dtype) -> array`` callables.

Blocks' names are kept as small classes; any optax/flax-style callable with
the same signature works wherever a scheme is expected
(``weights_init=jax.nn.initializers.glorot_uniform()``).

>>> import jax
>>> IsotropicGaussian(0.01)(jax.random.key(0), (3, 2)).shape
(3, 2)
>>> Constant(2.0)(jax.random.key(0), (2,)).tolist()
[2.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bricks.errors import BricksError

__all__ = [
    "Constant",
    "IsotropicGaussian",
    "Uniform",
    "Orthogonal",
    "Identity",
    "Sparse",
    "SparseND",
    "InitializationError",
]

Scheme = Callable[[Any, Sequence[int], Any], jax.Array]


class InitializationError(BricksError, ValueError):
    """A scheme cannot produce a value of the requested shape."""


class _Scheme:
    """Blocks' spelling on top of the ``(key, shape, dtype)`` call.

    ``scheme.generate(rng, shape)`` returns a float32 numpy array, drawing a
    JAX key from ``rng`` (a ``numpy.random.RandomState``, a JAX key, an int
    seed, or ``None`` for seed 0); ``repr`` shows the settings as Blocks did
    (``<Constant at 0x...: constant=1.0>``).
    """

    _repr_fields: tuple[str, ...] = ()

    def generate(self, rng: Any, shape: Sequence[int]) -> np.ndarray:
        if rng is None:
            key = jax.random.key(0)
        elif isinstance(rng, np.random.RandomState):
            key = jax.random.key(int(rng.randint(np.iinfo(np.int32).max)))
        elif isinstance(rng, (int, np.integer)):
            key = jax.random.key(int(rng))
        else:
            key = rng
        return np.asarray(self(key, tuple(shape), jnp.float32))

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._repr_fields)
        return f"<{type(self).__name__} at {hex(id(self))}: {fields}>"


@dataclass(frozen=True, repr=False)
class Constant(_Scheme):
    """Every entry equals ``constant`` (a scalar or an array broadcastable to the shape)."""

    constant: Any
    _repr_fields = ("constant",)

    def __call__(self, key: Any, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jnp.broadcast_to(jnp.asarray(self.constant, dtype), tuple(shape))


@dataclass(frozen=True, repr=False)
class IsotropicGaussian(_Scheme):
    """Independent normal entries with mean ``mean`` and deviation ``std``."""

    std: float = 1.0
    mean: float = 0.0
    _repr_fields = ("mean", "std")

    def __call__(self, key: Any, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return self.mean + self.std * jax.random.normal(key, tuple(shape), dtype)


@dataclass(frozen=True, repr=False)
class Uniform(_Scheme):
    """Uniform entries around ``mean`` given either ``width`` or ``std``
    (``width = sqrt(12) * std``), as in Blocks."""

    mean: float = 0.0
    width: float | None = None
    std: float | None = None
    _repr_fields = ("mean", "width")

    def __post_init__(self) -> None:
        if (self.width is None) == (self.std is None):
            raise InitializationError(
                "Uniform needs exactly one of width and std, got "
                f"width={self.width}, std={self.std}"
            )

    def __call__(self, key: Any, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        width = self.width if self.width is not None else float(np.sqrt(12.0) * self.std)
        lo = self.mean - width / 2
        return jax.random.uniform(key, tuple(shape), dtype, lo, lo + width)


@dataclass(frozen=True, repr=False)
class Orthogonal(_Scheme):
    """A (semi-)orthogonal matrix times ``scale``: rows or columns orthonormal.

    Square and rectangular 2-d shapes are supported (via the QR of a
    Gaussian matrix, signs fixed so the distribution is uniform).
    """

    scale: float = 1.0
    _repr_fields = ("scale",)

    def __call__(self, key: Any, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        shape = tuple(shape)
        if len(shape) != 2:
            raise InitializationError(f"Orthogonal needs a 2-d shape, got {shape}")
        rows, cols = shape
        big, small = max(rows, cols), min(rows, cols)
        a = jax.random.normal(key, (big, small), jnp.float32)
        q, r = jnp.linalg.qr(a)
        q = q * jnp.sign(jnp.diagonal(r))[None, :]
        if rows < cols:
            q = q.T
        return (self.scale * q).astype(dtype)


@dataclass(frozen=True, repr=False)
class Identity(_Scheme):
    """``mult`` times the identity (rectangular shapes get ones on the diagonal)."""

    mult: float = 1.0
    _repr_fields = ("mult",)

    def __call__(self, key: Any, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        shape = tuple(shape)
        if len(shape) != 2:
            raise InitializationError(f"Identity needs a 2-d shape, got {shape}")
        return self.mult * jnp.eye(shape[0], shape[1], dtype=dtype)


@dataclass(frozen=True, repr=False)
class Sparse(_Scheme):
    """Each row has ``num_init`` non-zero entries drawn from ``weights_init``;
    the others come from ``sparse_init`` (zero by default), as in Blocks.

    ``num_init`` may be a fraction in (0, 1) of the row length.
    """

    num_init: float
    weights_init: Scheme
    sparse_init: Scheme | None = None
    _repr_fields = ("num_init", "weights_init", "sparse_init")

    def __call__(self, key: Any, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        shape = tuple(shape)
        if len(shape) != 2:
            raise InitializationError(f"Sparse needs a 2-d shape, got {shape}")
        rows, cols = shape
        num = int(self.num_init * cols) if 0 < self.num_init < 1 else int(self.num_init)
        if not 0 <= num <= cols:
            raise InitializationError(
                f"Sparse: num_init={self.num_init} does not fit rows of {cols}"
            )
        k_base, k_vals, k_perm = jax.random.split(key, 3)
        base = (
            jnp.zeros(shape, dtype)
            if self.sparse_init is None
            else jnp.asarray(self.sparse_init(k_base, shape, dtype), dtype)
        )
        values = jnp.asarray(self.weights_init(k_vals, (rows, num), dtype), dtype)
        cols_idx = jax.vmap(lambda k: jax.random.permutation(k, cols)[:num])(
            jax.random.split(k_perm, rows)
        )
        return base.at[jnp.arange(rows)[:, None], cols_idx].set(values)


@dataclass(frozen=True, repr=False)
class SparseND(_Scheme):
    """Blocks' ``SparseND``: sparse initialization of any rank.

    The axes in ``axis`` index "atoms" (e.g. the output units); each atom,
    the slice over the other axes, gets ``num_init`` non-zero entries (or a
    fraction ``num_init`` in (0, 1) of its size) drawn from ``weights_init``,
    at random positions; the rest come from ``sparse_init`` (zero by default).

    >>> import jax
    >>> w = SparseND(axis=0, num_init=2, weights_init=Constant(1.0))(jax.random.key(0), (3, 4, 5))
    >>> [int((w[i] != 0).sum()) for i in range(3)]
    [2, 2, 2]
    """

    axis: int | Sequence[int]
    num_init: float
    weights_init: Scheme
    sparse_init: Scheme | None = None
    _repr_fields = ("axis", "num_init", "weights_init", "sparse_init")

    def __call__(self, key: Any, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        shape = tuple(shape)
        axes = (self.axis,) if isinstance(self.axis, (int, np.integer)) else tuple(self.axis)
        if any(not -len(shape) <= a < len(shape) for a in axes):
            raise InitializationError(f"SparseND: axis {self.axis} is not an axis of {shape}")
        axes = tuple(a % len(shape) for a in axes)
        rest = tuple(i for i in range(len(shape)) if i not in axes)
        num_atoms = int(np.prod([shape[i] for i in axes]))
        atom_size = int(np.prod([shape[i] for i in rest]))
        rows = Sparse(self.num_init, self.weights_init, self.sparse_init)
        if 0 < self.num_init < 1:  # a fraction of each atom, as Blocks rounds it
            rows = Sparse(int(self.num_init * atom_size), self.weights_init, self.sparse_init)
        flat = rows(key, (num_atoms, atom_size), dtype)
        moved = flat.reshape(tuple(shape[i] for i in axes + rest))
        return jnp.transpose(moved, np.argsort(axes + rest))
