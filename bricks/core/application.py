"""The ``application`` decorator: methods of a brick that compute things.

An application declares its inputs and outputs (``brick.apply.inputs``,
``brick.apply.outputs``), may take them from another application by
delegation, and annotates its inputs and outputs at trace time so that a
:class:`~bricks.graph.ComputationGraph` can find them (roles ``INPUT`` and
``OUTPUT``, the brick, the application's name, the variable's name).

>>> import jax.numpy as jnp
>>> from bricks.core import Brick
>>> class Double(Brick):
...     @application(inputs=["x"], outputs=["doubled"])
...     def apply(self, x):
...         return 2 * x
>>> d = Double()
>>> d.apply.inputs, d.apply.outputs
(['x'], ['doubled'])
>>> d.apply(jnp.ones(2)).tolist()
[2.0, 2.0]
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from bricks.core.roles import INPUT, OUTPUT, VariableRole
from bricks.core.tracing import annotate, current_frame
from bricks.errors import BricksError

__all__ = ["application", "Application", "BoundApplication"]


class ApplicationError(BricksError, ValueError):
    """An application returned something other than what it declared."""


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


class Application:
    """The unbound application: a descriptor on the brick class."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        inputs: Sequence[str] | None = None,
        outputs: Sequence[str] | None = None,
        roles: Sequence[VariableRole] = (),
    ) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = fn.__name__
        self.signature = inspect.signature(fn)
        self._static: dict[str, Any] = {}
        if inputs is not None:
            self._static["inputs"] = list(inputs)
        if outputs is not None:
            self._static["outputs"] = list(outputs)
        self.roles = tuple(roles)
        self._properties: dict[str, Callable[[Any], Any]] = {}
        self._delegate: Callable[[Any], Any] | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, brick: Any, owner: type | None = None) -> Any:
        if brick is None:
            return self
        return BoundApplication(self, brick)

    def property(self, attribute: str) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
        """Compute ``attribute`` (e.g. ``"inputs"``) from the brick at access time."""

        def register(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
            self._properties[attribute] = fn
            return fn

        return register

    def delegate(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Take undeclared attributes (inputs, outputs, ...) from another application."""
        self._delegate = fn
        return fn

    def _default_inputs(self) -> list[str]:
        params = list(self.signature.parameters.values())[1:]
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return [p.name for p in params if p.kind in kinds and p.default is inspect.Parameter.empty]


class BoundApplication:
    """An application bound to a brick: call it, or read its declarations."""

    def __init__(self, application: Application, brick: Any) -> None:
        self.application = application
        self.brick = brick

    @property
    def name(self) -> str:
        return self.application.name

    def __repr__(self) -> str:
        return f"<application {self.name} of {self.brick!r}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, BoundApplication)
            and other.application is self.application
            and other.brick is self.brick
        )

    def __hash__(self) -> int:
        return hash((id(self.application), id(self.brick)))

    def _lookup(self, attribute: str) -> Any:
        app = self.application
        if attribute in app._properties:
            return app._properties[attribute](self.brick)
        if attribute in app._static:
            return app._static[attribute]
        if app._delegate is not None:
            return getattr(app._delegate(self.brick), attribute)
        if attribute == "inputs":
            return app._default_inputs()
        if attribute == "outputs":
            return ["output"]
        raise AttributeError(f"application {self.name!r} of {self.brick.path} has no {attribute!r}")

    @property
    def inputs(self) -> list[str]:
        return list(self._lookup("inputs"))

    @property
    def outputs(self) -> list[str]:
        return list(self._lookup("outputs"))

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return self._lookup(attribute)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        brick = self.brick
        if not brick.allocated:
            brick.allocate()
        rec = current_frame().recorder
        app = self.application
        if rec is None:
            return app.fn(brick, *args, **kwargs)

        rec.register_brick(brick)
        inputs = set(self.inputs)
        try:
            bound = app.signature.bind(brick, *args, **kwargs)
        except TypeError as exc:
            raise ApplicationError(f"{brick.path}.{self.name}: {exc}") from None
        for name, value in list(bound.arguments.items()):
            if name in inputs and _is_array(value):
                bound.arguments[name] = annotate(
                    value, name, (INPUT,), brick=brick, application=self.name
                )
        result = app.fn(*bound.args, **bound.kwargs)

        names = self.outputs
        roles = (OUTPUT, *app.roles)
        if isinstance(result, (tuple, list)):
            if len(result) != len(names):
                raise ApplicationError(
                    f"{brick.path}.{self.name} declares outputs {names} but returned "
                    f"{len(result)} values"
                )
            annotated = [
                annotate(v, n, roles, brick=brick, application=self.name) if _is_array(v) else v
                for v, n in zip(result, names, strict=True)
            ]
            return type(result)(annotated)
        if _is_array(result):
            return annotate(result, names[0], roles, brick=brick, application=self.name)
        return result


def application(
    fn: Callable[..., Any] | None = None,
    *,
    inputs: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
    roles: Sequence[VariableRole] = (),
) -> Any:
    """Declare a brick method an application (usable bare or with arguments).

    Args:
        fn: the method (when used as ``@application``).
        inputs: input names; by default the method's required arguments.
        outputs: output names; by default ``["output"]``.
        roles: extra roles for the outputs besides ``OUTPUT`` (e.g. ``COST``).
    """
    if fn is not None:
        return Application(fn, inputs=inputs, outputs=outputs, roles=roles)
    return lambda f: Application(f, inputs=inputs, outputs=outputs, roles=roles)
