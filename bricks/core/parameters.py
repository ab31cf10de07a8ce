"""Parameters of a brick: their specs, values and the flat mapping keyed by path.

:class:`ParametersMixin` gives :class:`~bricks.core.Brick` its parameter
methods: declare (:meth:`~ParametersMixin.add_parameter`, in ``_allocate``),
read (``brick.W``, :meth:`~ParametersMixin.parameter`, which honours the
mapping passed to :func:`~bricks.core.apply_with`), and get or set the values
of a whole subtree keyed by path (``"/mlp/linear_0.W"``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from bricks.core.roles import AUXILIARY, VariableRole
from bricks.core.tracing import Variable, annotate, current_frame
from bricks.errors import (
    BrickTreeError,
    ConfigurationError,
    NotInitializedError,
    ParameterError,
    did_you_mean,
)

if TYPE_CHECKING:
    from bricks.core.brick import Brick

__all__ = ["ParameterSpec", "ParametersMixin"]


@dataclass(frozen=True)
class ParameterSpec:
    """Shape, roles and initialization of one parameter of a brick.

    ``init`` is either the name of the brick attribute holding the scheme
    (``"weights_init"``) or a ``(key, shape, dtype) -> array`` callable.
    """

    name: str
    shape: tuple[int, ...]
    roles: tuple[VariableRole, ...]
    init: str | Callable[..., Any]
    dtype: Any = jnp.float32


def _describe(brick: Brick) -> str:
    """``"Linear '/mlp/linear_0' (child 1 of /mlp)"``: tells apart bricks with one path."""
    where = ""
    if brick.parent is not None:
        index = next(i for i, c in enumerate(brick.parent.children) if c is brick)
        where = f" (child {index} of {brick.parent.path})"
    return f"{type(brick).__name__} {brick.path!r}{where}"


class ParametersMixin:
    """The parameter methods of :class:`~bricks.core.Brick` (a brick's own
    ``_specs`` and ``_values``, and those of its subtree by path)."""

    def add_parameter(
        self,
        name: str,
        shape: Sequence[int],
        roles: Sequence[VariableRole],
        init: str | Callable[..., Any] = "weights_init",
        dtype: Any = jnp.float32,
    ) -> None:
        """Declare a parameter (call from :meth:`_allocate`)."""
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ConfigurationError(f"{self.path}.{name}: negative dimension in shape {shape}")
        self._specs[name] = ParameterSpec(name, shape, tuple(roles), init, dtype)

    def __getattr__(self, name: str) -> Any:
        specs = self.__dict__.get("_specs")
        if specs is not None and name in specs:
            return self.parameter(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def parameter(self, name: str) -> Any:
        """The value of parameter ``name``: from the active parameter mapping
        inside :func:`apply_with` or a graph, else the stored value."""
        spec = self._specs.get(name)
        if spec is None:
            raise ParameterError(
                f"{self.path} has no parameter {name!r}{did_you_mean(name, self._specs)}; "
                f"it has {sorted(self._specs)}"
            )
        frame = current_frame()
        path = f"{self.path}.{name}"
        rec = frame.recorder
        if frame.params is not None and path in frame.params:
            value = frame.params[path]
        elif rec is not None and rec.discovery:
            value = jnp.zeros(spec.shape, spec.dtype)
        elif frame.params is not None and name not in self._values:
            raise ParameterError(
                f"parameter {path} is not in the mapping of parameter values passed in"
                f"{did_you_mean(path, frame.params)}"
            )
        else:
            if name not in self._values:
                raise NotInitializedError(
                    f"parameter {path} has no value: {type(self).__name__} {self.path} was "
                    "allocated but not initialized; call .initialize(seed=...) on it or its root "
                    "brick, or pass values with apply_with(params, ...)"
                )
            value = self._values[name]
        if rec is not None:
            value = rec.record_parameter(value, path=path, name=name, roles=spec.roles, brick=self)
        return value

    def parameter_value(self, name: str) -> Any:
        """The stored value of parameter ``name`` (ignores any active mapping)."""
        if name not in self._values:
            raise NotInitializedError(
                f"parameter {self.path}.{name} has no value; call .initialize() first"
            )
        return self._values[name]

    @property
    def parameters(self) -> list[Variable]:
        """This brick's own parameters (not its children's) as variables."""
        return [
            Variable(
                tag=f"{self.path}.{s.name}",
                name=s.name,
                roles=s.roles,
                brick=self,
                path=f"{self.path}.{s.name}",
                shape=s.shape,
                dtype=s.dtype,
            )
            for s in self._specs.values()
        ]

    def _parameter_owners(self) -> dict[str, tuple[Brick, ParameterSpec]]:
        """``{path: (brick, spec)}`` for the subtree; two parameters on one path
        (bricks renamed to the same name) are a :class:`BrickTreeError`."""
        owners: dict[str, tuple[Brick, ParameterSpec]] = {}
        for brick in self.iter_bricks():
            for name, spec in brick._specs.items():
                path = f"{brick.path}.{name}"
                seen = owners.get(path)
                if seen is not None and seen[0] is not brick:
                    raise BrickTreeError(
                        f"two parameters share the path {path!r}: one of {_describe(seen[0])} and "
                        f"one of {_describe(brick)}; a path must name one parameter. Give the "
                        "bricks distinct names (name=...)"
                    )
                owners[path] = (brick, spec)
        return owners

    def parameter_specs(self) -> dict[str, ParameterSpec]:
        """Specs of every parameter of the subtree, keyed by path."""
        if not all(b.allocated for b in self.iter_bricks()):
            self.allocate()
        return {path: spec for path, (_, spec) in self._parameter_owners().items()}

    def get_parameter_values(self) -> dict[str, jax.Array]:
        """Current values of every parameter of the subtree, keyed by path."""
        out = {}
        for path, (brick, spec) in self._parameter_owners().items():
            if spec.name not in brick._values:
                raise NotInitializedError(
                    f"parameter {path} has no value; call .initialize() first"
                )
            out[path] = brick._values[spec.name]
        return out

    def set_parameter_values(self, values: Mapping[str, Any], strict: bool = True) -> None:
        """Set parameters of the subtree by path.

        Raises:
            ParameterError: for an unknown path (with a "did you mean") when
                ``strict``, or a value whose shape differs from the parameter's.
        """
        owners = self._parameter_owners()
        if not owners and not self.allocated:
            self.allocate()
            return self.set_parameter_values(values, strict)
        for path, value in values.items():
            if path not in owners:
                if strict:
                    raise ParameterError(
                        f"no parameter {path!r} under {self.path}{did_you_mean(path, owners)}"
                    )
                continue
            brick, spec = owners[path]
            value = jnp.asarray(value)
            if value.shape != spec.shape:
                raise ParameterError(
                    f"parameter {path} has shape {spec.shape}, but the value given has shape "
                    f"{value.shape}"
                )
            brick._values[spec.name] = value.astype(spec.dtype)
        for brick in self.iter_bricks():
            if all(set(b._specs) <= set(b._values) for b in brick.iter_bricks()):
                brick.__dict__["initialized"] = True

    def add_auxiliary_variable(
        self, value: Any, roles: Sequence[VariableRole] = (), name: str = "auxiliary"
    ) -> Any:
        """Annotate ``value`` as an auxiliary variable of this brick (role
        ``AUXILIARY`` plus ``roles``), e.g. a regularization term."""
        from bricks.core.application import current_application

        return annotate(
            value,
            name,
            (AUXILIARY, *roles),
            brick=self,
            application=current_application(self),
            base=f"{self.path}.{name}",
        )
