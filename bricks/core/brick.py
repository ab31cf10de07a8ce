"""The :class:`Brick` and its lifecycle.

A brick is its configuration plus its children. Its life, as in Blocks:

1. **configure** — in the constructor or by setting attributes, lazily:
   ``Linear(output_dim=10)`` may get its ``input_dim`` later, from the user
   or from a parent's :meth:`~Brick.push_allocation_config`;
2. :meth:`~Brick.push_allocation_config` — a parent fills its children's
   dimensions;
3. :meth:`~Brick.allocate` — parameters get shapes and roles;
4. :meth:`~Brick.push_initialization_config` — a parent hands its
   initialization schemes (``weights_init``, ``biases_init``) down;
5. :meth:`~Brick.initialize` — parameters get values from a seed or key.

Settings the user gave a child explicitly are never clobbered by a parent:
pushed *initialization* settings yield to them, and a pushed *dimension*
that contradicts one the user set is a :class:`ConfigurationConflict`.

Parameter values are one flat mapping keyed by unique path
(``"/mlp/linear_0.W"``): :meth:`~Brick.get_parameter_values` and
:meth:`~Brick.set_parameter_values`. A brick keeps its current values so
``brick.apply(x)`` works eagerly; inside :func:`~bricks.core.apply_with`
and graph evaluations the values come from the mapping passed in.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from bricks.core.parameters import ParametersMixin, ParameterSpec
from bricks.core.rng import RNGMixin
from bricks.core.values import ValueStore
from bricks.errors import (
    BrickTreeError,
    ConfigurationConflict,
    ConfigurationError,
    NotInitializedError,
    ParameterError,
)

__all__ = ["Brick", "ParameterSpec", "Initializable"]

DEFAULT_SEED = 1


def _crc(text: str) -> int:
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(np.all(np.asarray(a) == np.asarray(b))) and np.shape(a) == np.shape(b)
    except Exception:  # noqa: BLE001 - incomparable objects are different
        return a is b


class _Children(list):
    """A list of child bricks that keeps each child's ``parent`` link."""

    def __init__(self, owner: Brick, items: Iterable[Brick] = ()) -> None:
        super().__init__()
        self._owner = owner
        self.extend(items)

    def _adopt(self, child: Any) -> Brick:
        if not isinstance(child, Brick):
            raise BrickTreeError(
                f"children of {self._owner.path} must be bricks, got {type(child).__name__}"
            )
        if child.parent is not None and child.parent is not self._owner:
            # a shared brick (weight sharing, as in Blocks): one set of parameters and one
            # canonical path, through its first parent; the others list it among children
            extra = child.__dict__.setdefault("_other_parents", [])
            if not any(p is self._owner for p in extra):
                extra.append(self._owner)
            return child
        object.__setattr__(child, "parent", self._owner)
        return child

    def append(self, child: Brick) -> None:
        super().append(self._adopt(child))
        _number_unnamed(self)

    def extend(self, children: Iterable[Brick]) -> None:
        for c in children:
            self.append(c)

    def insert(self, index: int, child: Brick) -> None:  # type: ignore[override]
        super().insert(index, self._adopt(child))
        _number_unnamed(self)

    def __setitem__(self, index, value) -> None:  # type: ignore[override]
        if isinstance(index, slice):
            value = [self._adopt(v) for v in value]
        else:
            value = self._adopt(value)
        super().__setitem__(index, value)
        _number_unnamed(self)


def _number_unnamed(children: list) -> None:
    """Give siblings that were not named (``name=None``) and share their
    default name unique, deterministic names: ``linear_0``, ``linear_1``, ...
    in the order of the children. A single unnamed brick keeps its default
    name; explicitly named siblings are never renamed."""
    groups: dict[str, list[Brick]] = {}
    owner = getattr(children, "_owner", None)
    for child in children:
        default = child.__dict__.get("_default_name")
        if default is not None and (owner is None or child.parent is owner):
            groups.setdefault(default, []).append(child)
    for default, members in groups.items():
        if len(members) > 1:
            for i, child in enumerate(members):
                child.__dict__["name"] = f"{default}_{i}"


class Brick(ParametersMixin):
    """Base class of every brick.

    Subclasses list their lazy configuration attributes in
    ``allocation_config`` (dimensions: they decide parameter shapes) and
    ``initialization_config`` (schemes), declare parameters in
    :meth:`_allocate` with :meth:`add_parameter`, hand configuration to
    children in :meth:`_push_allocation_config` /
    :meth:`_push_initialization_config` with :meth:`push_to`, and compute in
    methods decorated with :func:`~bricks.core.application`.

    Args:
        name: the brick's name, unique among its siblings (default: the
            class name in lower case).
        children: child bricks.
    """

    allocation_config: ClassVar[tuple[str, ...]] = ()
    initialization_config: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str | None = None, children: Iterable[Brick] | None = None) -> None:
        d = self.__dict__
        d.setdefault("_explicit", set())
        d["_pushing"] = False
        d["parent"] = None
        d["name"] = name or type(self).__name__.lower()
        # an unnamed brick may be numbered among same-named siblings (``linear_0``)
        d["_default_name"] = None if name else d["name"]
        d["children"] = _Children(self, children or ())
        d["allocated"] = False
        d["allocation_config_pushed"] = False
        d["initialized"] = False
        d["initialization_config_pushed"] = False
        d["_specs"] = {}
        d["_values"] = ValueStore()

    # -- configuration ---------------------------------------------------
    @classmethod
    def _config_names(cls, kind: str) -> set[str]:
        names: set[str] = set()
        for klass in cls.__mro__:
            names.update(klass.__dict__.get(kind, ()))
        return names

    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        if name == "children":
            value = _Children(self, value)
        elif name == "parent":
            raise BrickTreeError("a brick's parent is set by adding it to the parent's children")
        elif name == "name":
            d["_default_name"] = None
        alloc = type(self)._config_names("allocation_config")
        if name in alloc or name in type(self)._config_names("initialization_config"):
            if not d.get("_pushing", False):
                d.setdefault("_explicit", set()).add(name)
            if name in alloc and d.get("allocated") and not _same(d.get(name), value):
                d["allocated"] = False
                d["initialized"] = False
        object.__setattr__(self, name, value)

    @contextlib.contextmanager
    def _pushed(self) -> Iterator[None]:
        self.__dict__["_pushing"] = True
        try:
            yield
        finally:
            self.__dict__["_pushing"] = False

    def is_explicit(self, name: str) -> bool:
        """Whether the user (not a parent) set configuration ``name``."""
        return name in self.__dict__.get("_explicit", ())

    def push_to(self, child: Brick, name: str, value: Any) -> None:
        """Hand configuration ``name`` to ``child`` unless the user set it there.

        ``None`` pushes nothing. A dimension that contradicts the user's
        explicit setting on the child raises :class:`ConfigurationConflict`;
        an initialization setting set explicitly on the child wins silently.
        """
        if value is None:
            return
        if child.is_explicit(name):
            current = getattr(child, name)
            if name in type(child)._config_names("allocation_config") and not _same(current, value):
                raise ConfigurationConflict(
                    f"{self.path} pushes {name}={value!r} to {child.path}, but {name}={current!r} "
                    f"was set explicitly on {child.path}. Remove one of the two settings."
                )
            return
        with child._pushed():
            setattr(child, name, value)

    def require(self, *names: str) -> None:
        """Raise :class:`ConfigurationError` unless every attribute is set."""
        for name in names:
            if getattr(self, name, None) is None:
                raise ConfigurationError(
                    f"{type(self).__name__} {self.path} needs `{name}` before it can be "
                    f"allocated; set it (e.g. {type(self).__name__}({name}=...) or "
                    f"brick.{name} = ...) or let a parent brick push it."
                )

    # -- hierarchy ----------------------------------------------------------
    @property
    def path(self) -> str:
        """The unique path of the brick, e.g. ``"/mlp/linear_0"``."""
        names = []
        brick: Brick | None = self
        while brick is not None:
            names.append(brick.name)
            brick = brick.parent
        return "/" + "/".join(reversed(names))

    @property
    def parents(self) -> list[Brick]:
        """Every parent: the first (which gives the path) and those sharing the brick."""
        first = [] if self.parent is None else [self.parent]
        return first + list(self.__dict__.get("_other_parents", ()))

    @property
    def root(self) -> Brick:
        brick = self
        while brick.parent is not None:
            brick = brick.parent
        return brick

    def iter_bricks(self) -> Iterator[Brick]:
        """This brick and all its descendants, depth first."""
        yield self
        for child in self.children:
            yield from child.iter_bricks()

    def _check_unique_child_names(self) -> None:
        _number_unnamed(self.children)
        seen: dict[str, Brick] = {}
        for child in self.children:
            if child.name in seen:
                raise BrickTreeError(
                    f"{self.path} has two children named {child.name!r}; give them distinct "
                    "names (name=...)"
                )
            seen[child.name] = child

    def __repr__(self) -> str:
        """``<Linear /mlp/linear_0 at 0x...: name=linear_0, input_dim=16>``: the
        path, the name and every setting given explicitly (as Blocks showed
        ``name=``)."""
        settings = [f"name={self.name}"] + [
            f"{n}={getattr(self, n, None)!r}"
            for n in sorted(self.__dict__.get("_explicit", ()))
            if n != "name"
        ]
        return f"<{type(self).__name__} {self.path} at {hex(id(self))}: {', '.join(settings)}>"

    def summary(self) -> str:
        """The brick tree as a text table: paths, classes, dimensions,
        parameter shapes, roles and sizes, and the total (see
        :mod:`bricks.core.summary`). ``print(brick.summary())``."""
        from bricks.core.summary import summary

        return summary(self)

    @property
    def allocation_args(self) -> list[str]:
        """The lazy allocation settings (dimensions) of this brick, as Blocks'
        ``Brick.allocation_args`` (``Linear``: ``["input_dim", "output_dim"]``)."""
        lazy = getattr(type(self).__init__, "_lazy_allocation", None)
        if lazy is not None:
            return list(lazy)
        names: list[str] = []
        for klass in type(self).__mro__:
            for name in klass.__dict__.get("allocation_config", ()):
                if name not in names and name not in klass.__dict__.get("_not_lazy", ()):
                    names.append(name)
        return names

    def get_dim(self, name: str) -> int:
        """The dimension of an input, output or state called ``name``."""
        raise ConfigurationError(f"{type(self).__name__} {self.path} has no dimension {name!r}")

    def get_dims(self, names: Sequence[str]) -> list[int]:
        return [self.get_dim(n) for n in names]

    # -- lifecycle ------------------------------------------------------------
    def _push_allocation_config(self) -> None:
        """Hook: push dimensions to children (use :meth:`push_to`)."""

    def _allocate(self) -> None:
        """Hook: declare parameters with :meth:`add_parameter`."""

    def _push_initialization_config(self) -> None:
        """Hook: push schemes to children; by default every initialization
        setting this brick has is pushed to children that accept it."""
        for name in type(self)._config_names("initialization_config"):
            value = getattr(self, name, None)
            if value is None:
                continue
            for child in self.children:
                if name in type(child)._config_names("initialization_config"):
                    self.push_to(child, name, value)

    def push_allocation_config(self) -> None:
        """Push dimensions down the whole subtree (sets ``allocation_config_pushed``
        unless this brick or a descendant raised)."""
        d = self.__dict__
        d["allocation_config_pushed"] = False
        self._check_unique_child_names()
        self._push_allocation_config()
        for child in self.children:
            child.push_allocation_config()
        d["allocation_config_pushed"] = True

    def allocate(self) -> None:
        """Give every parameter of the subtree a shape and roles (values are
        set by :meth:`initialize`)."""
        self.push_allocation_config()
        self._allocate_tree()

    def _allocate_tree(self) -> None:
        for child in self.children:
            # a subtree whose configuration did not change since it was allocated keeps its
            # parameters (and values): wrapping initialized bricks in a new parent must not
            # wipe them. Changing an allocation setting resets ``allocated``.
            if not all(b.allocated for b in child.iter_bricks()):
                child._allocate_tree()
        d = self.__dict__
        d["_specs"] = {}
        d["_values"] = ValueStore()
        d["allocated"] = False
        lazy = getattr(type(self).__init__, "_lazy_allocation", ())
        if lazy:
            self.require(*lazy)
        self._allocate()
        d["allocated"] = True
        d["initialized"] = False

    def push_initialization_config(self) -> None:
        """Push initialization schemes down the whole subtree (sets
        ``initialization_config_pushed`` unless something raised)."""
        d = self.__dict__
        d["initialization_config_pushed"] = False
        self._push_initialization_config()
        for child in self.children:
            child.push_initialization_config()
        d["initialization_config_pushed"] = True

    def initialize(self, seed: int | None = None, key: Any = None) -> None:
        """Give every parameter of the subtree a value.

        Args:
            seed: integer seed; ignored when ``key`` is given. Default: the
                ``seed`` given to this brick's constructor, else 1.
            key: a JAX PRNG key. Each brick folds its path into it, so
                sibling bricks get different values and the same seed
                reproduces the same values.
        """
        if not self.allocated or not all(b.allocated for b in self.iter_bricks()):
            self.allocate()
        self.push_initialization_config()
        if key is None:
            if seed is None:
                seed = self.__dict__.get("_seed") if self.is_explicit("seed") else None
            key = jax.random.key(DEFAULT_SEED if seed is None else int(seed))
        self._initialize_tree(key)

    def _initialize_tree(self, key: Any) -> None:
        for child in self.children:
            child._initialize_tree(key)
        self._initialize(jax.random.fold_in(key, _crc(self.path)))
        missing = set(self._specs) - set(self._values)
        if missing:
            raise NotInitializedError(
                f"{self.path}._initialize left {sorted(missing)} without values"
            )
        self.__dict__["initialized"] = True

    def _initialize(self, key: Any) -> None:
        """Hook: set parameter values; by default each parameter from its scheme."""
        for spec in self._specs.values():
            scheme = spec.init if callable(spec.init) else getattr(self, spec.init, None)
            if scheme is None:
                raise ConfigurationError(
                    f"{type(self).__name__} {self.path} needs `{spec.init}` (an initialization "
                    f"scheme such as IsotropicGaussian(0.01)) to initialize parameter "
                    f"{spec.name!r}; set it on this brick or on a parent"
                )
            value = jnp.asarray(
                scheme(jax.random.fold_in(key, _crc(spec.name)), spec.shape, spec.dtype)
            )
            if value.shape != spec.shape:
                raise ParameterError(
                    f"{scheme!r} made a value of shape {value.shape} for {self.path}.{spec.name}, "
                    f"expected {spec.shape}"
                )
            self._values[spec.name] = value.astype(spec.dtype)


class Initializable(RNGMixin, Brick):
    """A brick with ``weights_init``/``biases_init`` schemes and ``use_bias``.

    ``use_bias`` is pushed to children only when it was given on the parent.
    ``seed`` and ``rng`` are Blocks' (see :class:`~bricks.core.rng.RNGMixin`).
    """

    initialization_config = ("weights_init", "biases_init")
    allocation_config = ("use_bias",)
    _not_lazy = ("use_bias",)
    weights_init: Any = None
    biases_init: Any = None
    use_bias: bool | None = None

    def __init__(
        self,
        weights_init: Any = None,
        biases_init: Any = None,
        use_bias: bool | None = None,
        name: str | None = None,
        children: Iterable[Brick] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(name=name, children=children)
        if seed is not None:
            self.seed = seed
        if weights_init is not None:
            self.weights_init = weights_init
        if biases_init is not None:
            self.biases_init = biases_init
        if use_bias is not None:
            self.use_bias = use_bias

    def _push_initialization_config(self) -> None:
        super()._push_initialization_config()
        self._push_rng(self.children)

    @property
    def _use_bias(self) -> bool:
        return True if self.use_bias is None else bool(self.use_bias)

    def _push_allocation_config(self) -> None:
        if self.use_bias is not None:
            for child in self.children:
                if "use_bias" in type(child)._config_names("allocation_config"):
                    self.push_to(child, "use_bias", self.use_bias)
