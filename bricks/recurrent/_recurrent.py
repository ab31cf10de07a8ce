"""The ``recurrent`` decorator and :class:`BaseRecurrent`.

A recurrent brick writes one step of its transition — "given the inputs at
time ``t``, the states after ``t - 1`` and the contexts, return the next
states (and maybe other outputs)" — and decorates it with
:func:`recurrent`. The decorated application then scans the step over
time-major ``(time, batch, features)`` sequences with
:func:`bricks.core.scan`, so the variables annotated inside the step (its
inputs and outputs, the children's outputs) stay visible to a computation
graph with a leading time axis.

What the decorator does for every recurrent brick, so that steps never have
to:

* **masks** — ``mask`` (shape ``(time, batch)``, bool or float) is a
  sequence of every recurrent application; at a step where it is 0 the
  states are carried through unchanged:
  ``new = mask[:, None] * new + (1 - mask[:, None]) * old``. A step must
  therefore *not* mask its states itself (it may read ``mask`` if it
  declares the argument);
* **initial states** — taken from the call (``states=...``) or else from the
  brick's ``initial_states`` application (zeros by default; learned
  parameters with role ``INITIAL_STATE`` for the bricks of this package);
* **reversal** — ``reverse=True`` runs from the last step to the first. As in
  ``lax.scan`` the outputs stay aligned with the inputs: ``output[t]`` is
  the state after reading ``input[t]`` (Blocks returned them in processing
  order instead);
* ``return_initial_states=True`` — the state outputs get the initial states
  as an extra time step (first, or last when ``reverse``);
* ``iterate=False`` — a single step on ``(batch, features)`` inputs;
* ``remat=True`` — the step is rematerialized (``jax.checkpoint``) so that
  backpropagation stores only the states of each step;
* ``input_transforms`` — functions applied to each step's slice of a
  sequence *inside* the scan (an embedding lookup, the input ``Linear``), so
  that with ``remat=True`` their outputs are recomputed per step in
  backprop instead of being stored, with their cotangents, for the whole
  sequence.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from bricks.core.application import Application, BoundApplication, application
from bricks.core.brick import Brick
from bricks.core.checks import as_input
from bricks.errors import (
    ConfigurationError,
    InitialStateError,
    RecurrentError,
)
from bricks.recurrent._fused_backward import fused_scan
from bricks.recurrent._shape_checks import (
    _as_sequence_shape_error,
    _check_sequences,
    _check_states,
    _check_step,
)

__all__ = ["recurrent", "BaseRecurrent", "RecurrentApplication"]

#: Keyword arguments that control the iteration rather than feed the step.
CONTROL_ARGUMENTS = (
    "iterate",
    "reverse",
    "return_initial_states",
    "remat",
    "input_transforms",
    "unroll",
    "n_steps",
    "batch_size",
    "fused_backward",
)


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def apply_mask(mask: Any, new: Any, old: Any) -> Any:
    """``mask * new + (1 - mask) * old`` with ``mask`` of shape ``(batch,)``
    broadcast over the trailing axes of ``new``."""
    m = jnp.asarray(mask).astype(jnp.result_type(new))
    m = m.reshape(m.shape + (1,) * (jnp.ndim(new) - m.ndim))
    return m * new + (1 - m) * old


def _step_signature(fn: Callable[..., Any]) -> tuple[inspect.Signature, bool]:
    """The signature of the decorated application: the step's arguments,
    all optional, plus ``mask`` and the control keywords."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    takes_mask = "mask" in sig.parameters
    positional, var_pos, kw_only, var_kw = [], None, [], None
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            var_pos = p
        elif p.kind is p.VAR_KEYWORD:
            var_kw = p
        elif p.kind is p.KEYWORD_ONLY:
            kw_only.append(p.replace(default=None if p.default is p.empty else p.default))
        else:
            if positional and p.default is p.empty:
                p = p.replace(default=None)
            positional.append(p)
    if positional and positional[0].default is not positional[0].empty:
        positional[0] = positional[0].replace(default=inspect.Parameter.empty)
    taken = {p.name for p in params}
    extra = []
    if not takes_mask:
        extra.append(inspect.Parameter("mask", inspect.Parameter.KEYWORD_ONLY, default=None))
    defaults = {"iterate": True, "reverse": False, "return_initial_states": False}
    for name in CONTROL_ARGUMENTS:
        if name in taken:
            raise RecurrentError(
                f"step function {fn.__qualname__} has an argument {name!r}, which the recurrent "
                "decorator reserves for itself; rename it"
            )
        extra.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(name))
        )
    new = positional + ([var_pos] if var_pos else []) + kw_only + extra
    new += [var_kw] if var_kw else []
    return sig.replace(parameters=new), takes_mask


class RecurrentApplication(Application):
    """An application made by :func:`recurrent`.

    Besides ``inputs`` and ``outputs`` it declares ``sequences``, ``states``
    and ``contexts`` (static lists, or computed from the brick with
    ``.property("states")`` and so on). Its inputs are the sequences, the
    states and the contexts.
    """

    def __init__(
        self,
        step: Callable[..., Any],
        *,
        sequences: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
        contexts: Sequence[str] | None = None,
        outputs: Sequence[str] | None = None,
        roles: Sequence[Any] = (),
    ) -> None:
        self.step = step
        #: ``True`` when the step masks its states itself (it then gets
        #: ``mask`` and the decorator does not mask again), as the low-memory
        #: step of :class:`RecurrentStack` does.
        self.step_masks_states = False
        self.step_signature, self.step_takes_mask = _step_signature(step)
        self.step_var_keyword = any(
            p.kind is p.VAR_KEYWORD for p in inspect.signature(step).parameters.values()
        )

        def recurrent_apply(brick: Any, *args: Any, **kwargs: Any) -> Any:
            return _run(self, brick, args, kwargs)

        recurrent_apply.__name__ = step.__name__
        recurrent_apply.__qualname__ = step.__qualname__
        recurrent_apply.__doc__ = step.__doc__
        recurrent_apply.__signature__ = self.step_signature  # type: ignore[attr-defined]
        super().__init__(recurrent_apply, roles=roles)
        for kind, value in (
            ("sequences", sequences),
            ("states", states),
            ("contexts", contexts),
            ("outputs", outputs),
        ):
            if value is not None:
                value = list(value)
                if kind == "sequences" and "mask" not in value:
                    value.append("mask")
                self._static[kind] = value
        if "outputs" not in self._static and states is not None:
            self._static["outputs"] = list(states)
        self._properties["inputs"] = self._inputs
        if sequences is None:
            self._static.setdefault("sequences", ["mask"])
        self._static.setdefault("states", [])
        self._static.setdefault("contexts", [])

    def _inputs(self, brick: Any) -> list[str]:
        bound = BoundApplication(self, brick)
        return bound.sequences + bound.states + bound.contexts

    def property(self, attribute: str) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
        """Compute ``attribute`` (``"sequences"``, ``"states"``, ``"contexts"``,
        ``"outputs"``) from the brick at access time. Computed sequences get
        ``"mask"`` appended when they lack it."""
        register = super().property(attribute)
        if attribute != "sequences":
            return register

        def with_mask(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
            def sequences(brick: Any) -> list[str]:
                names = list(fn(brick))
                return names if "mask" in names else [*names, "mask"]

            register(sequences)
            return fn

        return with_mask


def recurrent(
    fn: Callable[..., Any] | None = None,
    *,
    sequences: Sequence[str] | None = None,
    states: Sequence[str] | None = None,
    contexts: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
    roles: Sequence[Any] = (),
) -> Any:
    """Turn a method computing one step into an application that iterates it.

    Args:
        fn: the step (when used bare, ``@recurrent``; then declare the names
            with ``.property(...)``).
        sequences: arguments that are sequences, ``(time, batch, ...)``;
            ``"mask"`` is always one of them.
        states: arguments that are states, ``(batch, ...)``; each must also
            be an output (the next state).
        contexts: arguments passed unchanged to every step.
        outputs: names of the step's outputs, in the order it returns them
            (default: ``states``).
        roles: extra roles of the outputs besides ``OUTPUT``.

    The application takes the step's arguments by name or position and
    these keywords:

    * ``mask`` — ``(time, batch)``, bool or float: 0 carries states through;
    * ``iterate`` (default ``True``) — ``False`` runs one step on
      ``(batch, ...)`` inputs;
    * ``reverse`` — iterate from the last step; outputs stay aligned with
      the inputs;
    * ``return_initial_states`` — state outputs get ``time + 1`` steps, the
      initial state first (last when ``reverse``);
    * ``remat`` — rematerialize the step in backprop (default: the brick's
      ``remat`` attribute, else ``False``);
    * ``input_transforms`` — ``{sequence: fn}`` (or one ``fn`` for the
      first sequence): ``fn`` maps the step's slice of that sequence to the
      step's argument (or to a dict of step arguments), inside the scan;
    * ``unroll`` — passed to ``lax.scan``;
    * ``fused_backward`` — compute the gradients of the weights that the step
      multiplies with :func:`~bricks.recurrent.recurrent_dot` after the scan,
      as one matrix product over all steps (default: the brick's
      ``fused_backward`` attribute, else ``True``; under ``remat`` only when
      passed as ``True``, as it stores ``(time, batch, out)`` cotangents);
      ``False`` lets JAX accumulate them inside the backward scan;
    * ``n_steps``, ``batch_size`` — needed only when no sequence is given.

    Returns:
        The outputs, one array of shape ``(time, batch, ...)`` each (a tuple
        when there are several).

    >>> import jax.numpy as jnp
    >>> from bricks.core import Brick
    >>> class Accumulator(BaseRecurrent):
    ...     @recurrent(sequences=["inputs"], states=["total"], outputs=["total"])
    ...     def apply(self, inputs, total):
    ...         return total + inputs
    ...     def get_dim(self, name):
    ...         return 2 if name in ("inputs", "total") else super().get_dim(name)
    >>> acc = Accumulator()
    >>> acc.apply(jnp.ones((3, 1, 2)))[:, 0].tolist()
    [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]
    >>> acc.apply(jnp.ones((3, 1, 2)), mask=jnp.array([[1], [0], [1]]))[:, 0, 0].tolist()
    [1.0, 1.0, 2.0]
    """

    def wrap(f: Callable[..., Any]) -> RecurrentApplication:
        return RecurrentApplication(
            f, sequences=sequences, states=states, contexts=contexts, outputs=outputs, roles=roles
        )

    if fn is not None:
        return wrap(fn)
    return wrap


# -- the loop -----------------------------------------------------------------------


def _call_step(app: RecurrentApplication, brick: Any, named: dict[str, Any]) -> list[Any]:
    """Call the undecorated step with the arguments in ``named``."""
    sig = inspect.signature(app.step)
    kwargs = {}
    for name, value in named.items():
        if name in sig.parameters or app.step_var_keyword:
            kwargs[name] = value
    result = app.step(brick, **kwargs)
    return list(result) if isinstance(result, (tuple, list)) else [result]


def _pack(values: list[Any]) -> Any:
    return values[0] if len(values) == 1 else tuple(values)


def _initial_states(
    bound: BoundApplication, brick: Any, batch_size: int, named: dict[str, Any]
) -> dict[str, Any]:
    """Fill every state missing from ``named`` from ``brick.initial_states``."""
    states = bound.states
    missing = [s for s in states if named.get(s) is None]
    if not missing:
        return {}
    init_app = getattr(brick, "initial_states", None)
    if init_app is None:
        raise InitialStateError(
            f"no initial value for state(s) {missing} of {brick.path}.{bound.name}: pass them "
            f"({missing[0]}=...) or give {type(brick).__name__} an `initial_states` application "
            "(derive from BaseRecurrent for zeros)"
        )
    extra = {k: v for k, v in named.items() if v is not None and k not in states}
    try:
        produced = init_app(batch_size, **extra)
    except ConfigurationError as exc:
        raise InitialStateError(
            f"no initial value for state(s) {missing} of {brick.path}.{bound.name}: none was "
            f"passed and {type(brick).__name__}.initial_states could not make one ({exc}). Pass "
            f"{missing[0]}=... or define get_dim/initial_states for it."
        ) from None
    if isinstance(produced, dict):
        given = dict(produced)
    else:
        produced = list(produced) if isinstance(produced, (tuple, list)) else [produced]
        # a plain method (no @application) returns the states in their declared order
        names = list(getattr(init_app, "outputs", None) or states)
        if len(names) != len(produced):
            names = states
        given = dict(zip(names, produced, strict=False))
    out = {}
    for s in missing:
        if s not in given or given[s] is None:
            raise InitialStateError(
                f"no initial value for state {s!r} of {brick.path}.{bound.name}: none was passed "
                f"and {type(brick).__name__}.initial_states produces only {sorted(given)}. Pass "
                f"{s}=... or make initial_states return it."
            )
        out[s] = given[s]
    return out


def _input_transforms(
    value: Any, sequences: Sequence[str], where: str
) -> dict[str, Callable[[Any], Any]]:
    """Normalize the ``input_transforms`` keyword to ``{sequence: fn}``."""
    if value is None:
        return {}
    names = [s for s in sequences if s != "mask"]
    if callable(value):
        if not names:
            raise RecurrentError(f"{where} has no sequence for input_transforms to apply to")
        return {names[0]: value}
    if not isinstance(value, dict):
        raise RecurrentError(
            f"input_transforms of {where} must be a callable or a dict {{sequence: callable}}, "
            f"got {type(value).__name__}"
        )
    for name, fn in value.items():
        if name not in names:
            from bricks.errors import did_you_mean

            raise RecurrentError(
                f"input_transforms of {where} names {name!r}{did_you_mean(name, names)}, which is "
                f"not one of its sequences {names}"
            )
        if not callable(fn):
            raise RecurrentError(
                f"input_transforms[{name!r}] of {where} is a {type(fn).__name__}, not a callable"
            )
    return dict(value)


def _transformed(transforms: dict[str, Callable[[Any], Any]], values: dict[str, Any]) -> dict:
    """The step arguments made from one step's sequence slices ``values``: a
    transform's result replaces its sequence, or (a dict) supplies step
    arguments by name."""
    out = {k: v for k, v in values.items() if k not in transforms}
    for name, fn in transforms.items():
        if name not in values or values[name] is None:
            continue
        result = fn(values[name])
        if isinstance(result, dict):
            out.update(result)
        else:
            out[name] = result
    return out


def _check_declaration(bound: BoundApplication, brick: Any) -> tuple[list, list, list, list]:
    sequences, states, contexts, outputs = (
        bound.sequences,
        bound.states,
        bound.contexts,
        bound.outputs,
    )
    for s in states:
        if s not in outputs:
            raise RecurrentError(
                f"state {s!r} of {brick.path}.{bound.name} is not among its outputs {outputs}: "
                "the step must return the next value of every state"
            )
    return sequences, states, contexts, outputs


def _run(app: RecurrentApplication, brick: Any, args: tuple, kwargs: dict) -> Any:
    bound = BoundApplication(app, brick)
    try:
        ba = app.step_signature.bind(brick, *args, **kwargs)
    except TypeError as exc:
        raise RecurrentError(f"{brick.path}.{bound.name}: {exc}") from None
    named: dict[str, Any] = {}
    for name, value in list(ba.arguments.items())[1:]:
        param = app.step_signature.parameters[name]
        if param.kind is param.VAR_KEYWORD:
            named.update(value)
        elif param.kind is param.VAR_POSITIONAL:
            if value:
                raise RecurrentError(
                    f"{brick.path}.{bound.name} takes its sequences, states and contexts by "
                    "name; pass them as keywords"
                )
        else:
            named[name] = value
    control = {name: named.pop(name, None) for name in CONTROL_ARGUMENTS}
    iterate = True if control["iterate"] is None else bool(control["iterate"])
    sequences, states, contexts, outputs = _check_declaration(bound, brick)
    mask = named.pop("mask", None)

    where = f"{brick.path}.{bound.name}"
    transforms = _input_transforms(control["input_transforms"], sequences, where)
    for name in [*sequences, *states]:
        if named.get(name) is not None:
            named[name] = as_input(brick, name, named[name])
    if mask is not None:
        mask = as_input(brick, "mask", mask)
    if not iterate:
        if transforms:
            named.update(_transformed(transforms, {s: named.get(s) for s in transforms}))
        with _as_sequence_shape_error():
            _check_step(brick, named, sequences, states, mask)
        return _single_step(app, bound, brick, named, mask, control)

    with _as_sequence_shape_error():
        _check_sequences(brick, named, sequences, set(transforms), mask)
    given = {s: jnp.asarray(named[s]) for s in sequences if named.get(s) is not None}
    if mask is not None:
        given["mask"] = jnp.asarray(mask)
    n_steps, batch_size = control["n_steps"], control["batch_size"]
    if given:
        first = next(iter(given))
        shape = given[first].shape
        if len(shape) < 2:
            raise RecurrentError(
                f"{brick.path}.{bound.name} expects time-major sequences (time, batch, ...); "
                f"{first!r} has shape {shape}. For one step on (batch, ...) inputs pass "
                "iterate=False."
            )
        n_steps, batch_size = shape[0], shape[1]
        for name, value in given.items():
            if value.shape[:2] != (n_steps, batch_size):
                raise RecurrentError(
                    f"sequences of {brick.path}.{bound.name} disagree on (time, batch): "
                    f"{first!r} has {(n_steps, batch_size)}, {name!r} has shape {value.shape}"
                )
    elif n_steps is None or batch_size is None:
        raise RecurrentError(
            f"{brick.path}.{bound.name} got no sequence ({[s for s in sequences]}), so it needs "
            "n_steps=... and batch_size=..."
        )

    with _as_sequence_shape_error():
        _check_states(brick, named, states, [(first, given[first], 1)] if given else [])
    named.update(_initial_states(bound, brick, batch_size, named))
    init = {s: jnp.asarray(named.pop(s)) for s in states}
    for s in sequences:
        named.pop(s, None)
    rest = dict(named)  # contexts and any other argument, same at every step
    state_outputs = [o for o in outputs if o in states]

    def body(carry: dict, x: dict) -> tuple[dict, list]:
        slices = {k: v for k, v in x.items() if k != "mask"}
        step_args = {**rest, **carry, **_transformed(transforms, slices)}
        result = bound(iterate=False, mask=x.get("mask"), **step_args)
        result = list(result) if isinstance(result, (tuple, list)) else [result]
        by_name = dict(zip(outputs, result, strict=True))
        new_carry = {s: by_name[s].astype(carry[s].dtype) for s in states}
        return new_carry, result

    remat = control["remat"]
    if remat is None:
        remat = bool(getattr(brick, "remat", False))
    enabled = control["fused_backward"]
    if enabled is None:
        enabled = bool(getattr(brick, "fused_backward", True))
    # under remat the stacked (time, batch, out) cotangents of the fused weight
    # gradients would undo the memory saving, so there it is only on when asked for
    fused = bool(enabled) and (control["fused_backward"] is True or not remat)
    final, ys = fused_scan(
        body,
        init,
        given,
        length=n_steps,
        reverse=bool(control["reverse"]),
        remat=remat,
        unroll=control["unroll"] or 1,
        name=f"{brick.path}.{bound.name}.scan",
        fused=fused,
        disabled=not enabled,
    )
    del final
    ys = list(ys)
    if control["return_initial_states"]:
        for i, name in enumerate(outputs):
            if name in state_outputs:
                first = init[name][None].astype(ys[i].dtype)
                parts = [ys[i], first] if control["reverse"] else [first, ys[i]]
                ys[i] = jnp.concatenate(parts, axis=0)
    return _pack(ys)


def _single_step(
    app: RecurrentApplication,
    bound: BoundApplication,
    brick: Any,
    named: dict[str, Any],
    mask: Any,
    control: dict,
) -> Any:
    states, outputs = bound.states, bound.outputs
    if any(named.get(s) is None for s in states):
        batch_size = control["batch_size"]
        for s in bound.sequences:
            if named.get(s) is not None:
                batch_size = jnp.shape(named[s])[0]
                break
        else:
            if mask is not None:
                batch_size = jnp.shape(mask)[0]
        if batch_size is None:
            raise RecurrentError(
                f"{brick.path}.{bound.name}(iterate=False) got neither states nor sequences; "
                "pass the states or batch_size=..."
            )
        named.update(_initial_states(bound, brick, batch_size, named))
    call_args = dict(named)
    if app.step_takes_mask:
        call_args["mask"] = mask
    result = _call_step(app, brick, call_args)
    if len(result) != len(outputs):
        raise RecurrentError(
            f"{brick.path}.{bound.name} declares outputs {outputs} but its step returned "
            f"{len(result)} values"
        )
    if mask is not None and not app.step_masks_states:
        result = [
            apply_mask(mask, value, named[name]) if name in states else value
            for name, value in zip(outputs, result, strict=True)
        ]
    return _pack(result)


class BaseRecurrent(Brick):
    """Base class of bricks with a recurrent application.

    It gives them a default :meth:`initial_states`: zeros of shape
    ``(batch_size, get_dim(state))`` for every state of ``apply`` (``(batch_size,)``
    when the dimension is 0). Set ``remat = True`` on an instance to
    rematerialize its steps in backprop by default, ``fused_backward = False``
    to let JAX accumulate the weight gradients inside the backward scan.
    """

    remat: bool = False
    #: compute the weight gradients of :func:`~bricks.recurrent.recurrent_dot`
    #: after the scan, as one matrix product (see ``bricks.recurrent._fused_backward``)
    fused_backward: bool = True

    @application
    def initial_states(self, batch_size: int, *args: Any, **kwargs: Any) -> Any:
        """Initial values of the states of ``apply``, one array each.

        Args:
            batch_size: the batch size.
            *args, **kwargs: the arguments of the application call (unused
                here; a subclass may look at its contexts).
        """
        result = []
        for state in self.apply.states:
            dim = self.get_dim(state)
            shape = (batch_size,) if dim == 0 else (batch_size, dim)
            result.append(jnp.zeros(shape, jnp.float32))
        return _pack(result)

    @initial_states.property("outputs")
    def _initial_states_outputs(self) -> list[str]:
        return self.apply.states

    @initial_states.property("inputs")
    def _initial_states_inputs(self) -> list[str]:
        return ["batch_size"]


def learned_initial_state(brick: Brick, name: str, batch_size: int) -> jax.Array:
    """Broadcast the ``(dim,)`` parameter ``name`` of ``brick`` to ``(batch_size, dim)``."""
    value = brick.parameter(name)
    return jnp.broadcast_to(value[None], (batch_size, *value.shape))
