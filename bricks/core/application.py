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

import contextlib
import contextvars
import functools
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from bricks.core.checks import describe, is_non_numeric
from bricks.core.roles import INPUT, OUTPUT, VariableRole
from bricks.core.tracing import annotate, current_frame
from bricks.errors import BricksError, InputTypeError

__all__ = ["application", "Application", "BoundApplication"]


class ApplicationError(BricksError, ValueError):
    """An application returned something other than what it declared."""


#: Attributes an application declares; they may be set at run time, on the
#: class (``Linear.apply.inputs = [...]``, every brick) or on one brick
#: (``brick.apply.inputs = [...]``), as in Blocks.
DECLARATIONS = ("inputs", "outputs", "sequences", "states", "contexts")

_CALL_STACK: contextvars.ContextVar[tuple[tuple[Any, str], ...]] = contextvars.ContextVar(
    "bricks_application_calls", default=()
)


def current_application(brick: Any) -> str | None:
    """Name of the application of ``brick`` being run (innermost), or ``None``."""
    for caller, name in reversed(_CALL_STACK.get()):
        if caller is brick:
            return name
    return None


@contextlib.contextmanager
def _calling(brick: Any, name: str) -> Iterator[None]:
    token = _CALL_STACK.set((*_CALL_STACK.get(), (brick, name)))
    try:
        yield
    finally:
        _CALL_STACK.reset(token)


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
        **declarations: Sequence[str],
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
        self.owner: type | None = None
        for kind, names in declarations.items():
            if kind not in DECLARATIONS:
                raise ApplicationError(
                    f"application {self.name!r}: unknown declaration {kind}=; an application "
                    f"declares {list(DECLARATIONS)}"
                )
            self._static[kind] = list(names)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.owner = owner

    def __get__(self, brick: Any, owner: type | None = None) -> Any:
        if brick is None:
            return self
        return BoundApplication(self, brick)

    def __reduce__(self) -> Any:
        """Pickle by reference (``Linear.apply`` unpickles to itself)."""
        if self.owner is None:
            raise TypeError(f"application {self.name!r} is not defined on a class")
        return getattr, (self.owner, self.name)

    def __call__(self, brick: Any, *args: Any, **kwargs: Any) -> Any:
        """``Linear.apply(linear, x)``: call the application of ``brick``."""
        return self.__get__(brick)(*args, **kwargs)

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("_") or "_static" not in self.__dict__:
            raise AttributeError(attribute)
        if attribute in self._static:
            return self._static[attribute]
        raise AttributeError(
            f"application {self.name!r} declares no {attribute!r} on the class; read it from a "
            f"brick (brick.{self.name}.{attribute})"
        )

    def __setattr__(self, attribute: str, value: Any) -> None:
        if "_properties" in self.__dict__ and attribute in self._properties:
            raise AttributeError(
                f"{attribute!r} of application {self.name!r} is computed by a property; it "
                "cannot be set"
            )
        if attribute in DECLARATIONS and "_static" in self.__dict__:
            self._static[attribute] = list(value)
            return
        object.__setattr__(self, attribute, value)

    def __delattr__(self, attribute: str) -> None:
        if attribute in DECLARATIONS and attribute in self.__dict__.get("_static", {}):
            del self._static[attribute]
            return
        object.__delattr__(self, attribute)

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
        object.__setattr__(self, "application", application)
        object.__setattr__(self, "brick", brick)

    def __setattr__(self, attribute: str, value: Any) -> None:
        """Set a declaration (``inputs``, ``outputs`` ...) for this brick only."""
        overrides = self.brick.__dict__.setdefault("_application_overrides", {})
        overrides[(self.application.name, attribute)] = value

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
        overrides = self.brick.__dict__.get("_application_overrides", {})
        if (app.name, attribute) in overrides:
            return overrides[(app.name, attribute)]
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

    def _declares_outputs(self) -> bool:
        app = self.application
        overrides = self.brick.__dict__.get("_application_overrides", {})
        return (
            (app.name, "outputs") in overrides
            or "outputs" in app._properties
            or "outputs" in app._static
            or app._delegate is not None
        )

    def _refuse_non_numeric(self, args: tuple, kwargs: dict) -> None:
        """Strings and object arrays reach no brick: say which input it was."""
        bad = [i for i, a in enumerate(args) if is_non_numeric(a)]
        bad_kw = [k for k, v in kwargs.items() if is_non_numeric(v)]
        if not bad and not bad_kw:
            return
        if bad_kw:
            name, value = bad_kw[0], kwargs[bad_kw[0]]
        else:
            value = args[bad[0]]
            params = list(self.application.signature.parameters.values())[1:]
            kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            named = [p.name for p in params if p.kind in kinds]
            inputs = self.inputs if not named else named
            name = inputs[bad[0]] if bad[0] < len(inputs) else f"argument {bad[0]}"
        dtype = getattr(value, "dtype", None)
        what = f"dtype {dtype}" if dtype is not None else f"a {type(value).__name__}"
        raise InputTypeError(
            f"{describe(self.brick)}.{self.name}: input {name!r} is {what}; bricks compute "
            "with arrays of numbers"
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Apply; ``call_id="..."`` (unless the method takes one) tags this
        call's inputs and outputs for ``VariableFilter(call_id=...)``, and,
        as in Blocks, ``as_list=True`` returns the outputs as a list and
        ``as_dict=True`` as a dict by output name."""
        params = self.application.signature.parameters
        as_list = kwargs.pop("as_list", False) if "as_list" not in params else False
        as_dict = kwargs.pop("as_dict", False) if "as_dict" not in params else False
        result = self._apply(*args, **kwargs)
        if not (as_list or as_dict):
            return result
        values = list(result) if isinstance(result, (tuple, list)) else [result]
        if as_list:
            return values
        names = self.outputs
        if not self._declares_outputs() and len(values) > 1:
            names = [f"output_{i}" for i in range(len(values))]
        if len(names) != len(values):
            raise ApplicationError(
                f"{self.brick.path}.{self.name}: as_dict=True needs one name per output; it "
                f"declares {names} but returned {len(values)} values"
            )
        return dict(zip(names, values, strict=True))

    def _apply(self, *args: Any, **kwargs: Any) -> Any:
        call_id = None
        if "call_id" in kwargs and "call_id" not in self.application.signature.parameters:
            call_id = kwargs.pop("call_id")
        brick = self.brick
        self._refuse_non_numeric(args, kwargs)
        if not brick.allocated:
            brick.allocate()
        rec = current_frame().recorder
        app = self.application
        if rec is None:
            with _calling(brick, self.name):
                return app.fn(brick, *args, **kwargs)

        rec.register_brick(brick)
        try:
            bound = app.signature.bind(brick, *args, **kwargs)
        except TypeError as exc:
            raise ApplicationError(f"{brick.path}.{self.name}: {exc}") from None
        def tag(value: Any, name: str, roles: Any) -> Any:
            return annotate(
                value, name, roles, brick=brick, application=self.name, call_id=call_id
            )

        # every array argument is an input, as in Blocks: named ones by their
        # name, ``*args`` entries as ``args_0``..., ``**kwargs`` entries by key
        for name, value in list(bound.arguments.items()):
            kind = app.signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                bound.arguments[name] = tuple(
                    tag(v, f"{name}_{i}", (INPUT,)) if _is_array(v) else v
                    for i, v in enumerate(value)
                )
            elif kind is inspect.Parameter.VAR_KEYWORD:
                bound.arguments[name] = {
                    k: tag(v, k, (INPUT,)) if _is_array(v) else v for k, v in value.items()
                }
            elif _is_array(value):
                bound.arguments[name] = tag(value, name, (INPUT,))
        with _calling(brick, self.name):
            result = app.fn(*bound.args, **bound.kwargs)

        names = self.outputs
        roles = (OUTPUT, *app.roles)
        if isinstance(result, (tuple, list)) and not self._declares_outputs():
            # undeclared outputs are named as Blocks named them
            names = ["output"] if len(result) == 1 else [f"output_{i}" for i in range(len(result))]
        if isinstance(result, (tuple, list)):
            if len(result) != len(names):
                raise ApplicationError(
                    f"{brick.path}.{self.name} declares outputs {names} but returned "
                    f"{len(result)} values"
                )
            annotated = [
                tag(v, n, roles) if _is_array(v) else v
                for v, n in zip(result, names, strict=True)
            ]
            return type(result)(annotated)
        if _is_array(result):
            return tag(result, names[0], roles)
        return result


def application(
    fn: Callable[..., Any] | None = None,
    *,
    inputs: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
    roles: Sequence[VariableRole] = (),
    **declarations: Sequence[str],
) -> Any:
    """Declare a brick method an application (usable bare or with arguments).

    Args:
        fn: the method (when used as ``@application``).
        inputs: input names; by default the method's required arguments.
        outputs: output names; by default ``["output"]``.
        roles: extra roles for the outputs besides ``OUTPUT`` (e.g. ``COST``).
        **declarations: ``sequences``, ``states`` or ``contexts`` of an
            application that wraps a recurrent one (Blocks'
            ``@application(contexts=["attended"])``); the others are taken
            from its delegate.
    """
    if fn is not None:
        return Application(fn, inputs=inputs, outputs=outputs, roles=roles, **declarations)
    return lambda f: Application(f, inputs=inputs, outputs=outputs, roles=roles, **declarations)
