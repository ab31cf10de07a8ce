"""Where a brick's parameter values live: its own store, or a source it reads through to.

A brick keeps the values of its parameters in a :class:`ValueStore`, a
mapping ``{parameter name: array}``. Most of the time the store holds the
arrays itself. While something else owns the current values — a training
algorithm whose compiled step replaces (and donates) the parameter arrays at
every step — the store is *bound* to that owner, a :class:`ValueSource`:
reading a parameter asks the source for its current value, writing one
hands the value to the source. Nothing is copied per training step, and the
brick never keeps an array that a later step may donate: it holds no array
of the source at all. Unbinding gives the store the source's values of that
moment, so the brick keeps the final values.

The source decides what a read returns; it must be an array that stays valid
(training algorithms hand out a device copy made once per step, on the first
read after that step).

>>> import jax.numpy as jnp
>>> from bricks.core import Linear, Constant
>>> class Source:  # what a training algorithm implements
...     def __init__(self, values):
...         self.values = values
...     def holds(self, path):
...         return path in self.values
...     def read(self, path):
...         return self.values[path]
...     def write(self, path, value):
...         self.values[path] = jnp.asarray(value)
>>> linear = Linear(2, 1, weights_init=Constant(1.0), biases_init=Constant(0.0))
>>> linear.initialize()
>>> source = Source({"/linear.W": jnp.full((2, 1), 5.0), "/linear.b": jnp.zeros(1)})
>>> bind_values([linear], source)
['/linear.W', '/linear.b']
>>> float(linear.W[0, 0]), float(linear.apply(jnp.ones((1, 2)))[0, 0])
(5.0, 10.0)
>>> source.values["/linear.W"] = jnp.full((2, 1), 7.0)   # the source moved on
>>> float(linear.W[0, 0])
7.0
>>> unbind_values([linear], source)
>>> source.values["/linear.W"] = jnp.zeros((2, 1))       # no longer seen
>>> float(linear.W[0, 0])
7.0
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["ValueSource", "ValueStore", "bind_values", "unbind_values"]


@runtime_checkable
class ValueSource(Protocol):
    """The owner of current parameter values that bricks may read through to."""

    def holds(self, path: str) -> bool:
        """Whether the source has a value for the parameter at ``path``."""

    def read(self, path: str) -> Any:
        """The current value at ``path``; an array no later update invalidates."""

    def write(self, path: str, value: Any) -> None:
        """Make ``value`` the current value at ``path`` (the source copies it)."""


class ValueStore(MutableMapping):
    """A brick's ``{parameter name: value}`` mapping, optionally bound to sources.

    Reads and writes of a bound name go to its source; the others to the
    store's own arrays. Copies (``copy.deepcopy`` of a brick) are never bound:
    they hold the values of the moment.
    """

    __slots__ = ("_own", "_bound", "_dirty")

    def __init__(self, values: Any = ()) -> None:
        self._own: dict[str, Any] = dict(values)
        self._bound: dict[str, tuple[ValueSource, str]] = {}
        self._dirty: set[str] = set()  # own values written since the last bind/unbind

    def __getitem__(self, name: str) -> Any:
        bound = self._bound.get(name)
        if bound is not None:
            source, path = bound
            return source.read(path)
        return self._own[name]

    def __setitem__(self, name: str, value: Any) -> None:
        bound = self._bound.get(name)
        if bound is not None:
            source, path = bound
            source.write(path, value)
        else:
            self._own[name] = value
            self._dirty.add(name)

    def __delitem__(self, name: str) -> None:
        self._bound.pop(name, None)
        self._own.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._bound or name in self._own

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._own, *self._bound]))

    def __len__(self) -> int:
        return len(set(self._own) | set(self._bound))

    def __deepcopy__(self, memo: dict) -> ValueStore:
        return ValueStore({name: self[name] for name in self})

    def __reduce__(self) -> tuple:
        return (ValueStore, ({name: self[name] for name in self},))

    def __repr__(self) -> str:
        bound = sorted(self._bound)
        return f"ValueStore(own={sorted(self._own)}, bound={bound})"

    # -- binding ----------------------------------------------------------------
    def source_of(self, name: str) -> ValueSource | None:
        """The source ``name`` reads through to, or ``None``."""
        bound = self._bound.get(name)
        return None if bound is None else bound[0]

    def bind(self, name: str, source: ValueSource, path: str, adopt: bool = False) -> None:
        """Read and write ``name`` through ``source`` (at ``path``) from now on.

        With ``adopt``, a value written into the store since it was last
        unbound is handed to the source first, so that what the user set
        while nothing was bound is what the brick and the source show.
        """
        if adopt and name in self._dirty and name in self._own:
            source.write(path, self._own[name])
        self._bound[name] = (source, path)
        self._dirty.discard(name)

    def unbind(self, source: ValueSource) -> None:
        """Stop reading through ``source``; keep the values it has now."""
        for name, (bound, path) in list(self._bound.items()):
            if bound is source:
                self._own[name] = bound.read(path)
                del self._bound[name]
                self._dirty.discard(name)


def _stores(bricks: Iterable[Any]) -> Iterator[tuple[Any, str, ValueStore]]:
    seen: set[int] = set()
    for root in bricks:
        for brick in root.iter_bricks():
            if id(brick) in seen:
                continue
            seen.add(id(brick))
            store = brick.__dict__.get("_values")
            if not isinstance(store, ValueStore):
                store = ValueStore(store or {})
                brick.__dict__["_values"] = store
            yield brick, brick.path, store


def bind_values(bricks: Iterable[Any], source: ValueSource, adopt: bool = False) -> list[str]:
    """Make every parameter of the subtrees of ``bricks`` that ``source`` holds read through it.

    Args:
        bricks: bricks whose subtrees are bound (shared subtrees once).
        source: the owner of the current values.
        adopt: hand values the user wrote into a brick while it was not bound
            to the source (see :meth:`ValueStore.bind`).

    Returns:
        The bound parameter paths.
    """
    paths = []
    for brick, where, store in _stores(bricks):
        for name in brick._specs:
            path = f"{where}.{name}"
            if source.holds(path):
                store.bind(name, source, path, adopt)
                paths.append(path)
    return paths


def unbind_values(bricks: Iterable[Any], source: ValueSource) -> None:
    """Undo :func:`bind_values`: the bricks keep the source's values of now."""
    for _, _, store in _stores(bricks):
        store.unbind(source)
