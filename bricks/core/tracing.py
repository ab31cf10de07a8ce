"""Trace-time annotation: how every application output gets an identity.

Decision 3 of the design: each application output (and input, parameter read
and auxiliary variable) passes through :func:`annotate` while a function is
traced. When a :class:`Recorder` is active, annotate

* records a :class:`Variable` (a description: tag, name, roles, brick,
  application, shape, dtype) so a graph can be walked and filtered;
* applies an *intervention* installed for that tag (replacement, dropout,
  noise), the way Flax's ``intercept_methods`` or Oryx's ``plant`` do;
* collects the value when the tag was requested, so a compiled function can
  return intermediates from the same forward pass.

Nothing here edits jaxprs: the annotations are Python side effects at trace
time, so they survive ``jax.jit``, ``jax.grad`` and ``jax.vmap``. Loops go
through :func:`scan`, which opens a child recorder for the body and returns
requested inner values as stacked scan outputs, so variables computed inside
a recurrent step stay visible and replaceable.

Parameter values come from a :class:`Frame`: inside :func:`apply_with` (and
inside every graph evaluation) a brick reads its parameters from the mapping
passed in, never from its own stored arrays (decision 1).
"""

from __future__ import annotations

import contextlib
import contextvars
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bricks.core.roles import VariableRole, has_role

__all__ = [
    "Variable",
    "Recorder",
    "Frame",
    "annotate",
    "apply_with",
    "current_frame",
    "scan",
    "scan_body",
    "Intervention",
]


@dataclass(frozen=True, eq=False)
class Variable:
    """A description of an annotated quantity of a traced function.

    Two variables are equal when their tags are: the same quantity found by
    two traces of one function is one variable, so variables can key
    replacements and monitoring requests.

    Attributes:
        tag: unique id in its graph, e.g. ``"/mlp/linear_0.apply.output"``
            (a second call of the same application adds ``"#1"``; variables
            inside a scan body are prefixed with the scan's tag and ``"/"``).
        name: short name (``"output"``, ``"W"``, ``"cost"``).
        roles: roles of the variable (see :mod:`bricks.core.roles`).
        brick: the brick that produced it, or ``None``.
        application: name of the application that produced it, or ``None``.
        path: for parameters, the unique parameter path ``"/mlp/linear_0.W"``.
        shape: shape (for scan-inner variables: stacked over time, time first).
        dtype: dtype.
        scan_scope: tag of the enclosing scan, or ``None`` at top level.
        call_id: the ``call_id=`` given to the application call that made
            it (Blocks' ``brick.apply(x, call_id=...)``), or ``None``.
    """

    tag: str
    name: str
    roles: tuple[VariableRole, ...] = ()
    brick: Any = None
    application: str | None = None
    path: str | None = None
    shape: tuple[int, ...] | None = None
    dtype: Any = None
    scan_scope: str | None = None
    call_id: str | None = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Variable) and other.tag == self.tag

    def __hash__(self) -> int:
        return hash(self.tag)

    def has_role(self, role: VariableRole) -> bool:
        return has_role(self.roles, role)

    def __repr__(self) -> str:
        roles = ",".join(map(repr, self.roles))
        dtype = "" if self.dtype is None else np.dtype(self.dtype).name
        return f"Variable({self.tag!r}, roles=[{roles}], shape={self.shape}, dtype={dtype})"


@dataclass(frozen=True)
class Intervention:
    """A change applied to a tagged value while tracing.

    ``fn(value, key)`` returns the new value; ``key`` is a PRNG key derived
    from the evaluation's key and the tag (and the time step inside a scan
    when ``per_step``), or ``None`` when the intervention is deterministic.
    """

    fn: Callable[[Any, Any], Any]
    stochastic: bool = False
    per_step: bool = True
    #: on a parameter: the parameter is no longer one of the graph's (its value is
    #: computed from others, as by ``collect_parameters``)
    replaces_parameter: bool = False


def _crc(text: str) -> int:
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


class Recorder:
    """Collects variables, applies interventions and gathers requested values.

    One recorder is active per trace of a graph; :func:`scan` opens a child
    for the loop body. Bricks, parameters and counters of application calls
    are shared with the root so that they are recorded once per trace.
    """

    def __init__(
        self,
        *,
        interventions: Mapping[str, Intervention] | None = None,
        requested: Sequence[str] | set[str] = (),
        key: Any = None,
        discovery: bool = False,
        _parent: Recorder | None = None,
        _scope: str = "",
        _step: Any = None,
    ) -> None:
        self.interventions = dict(interventions or {})
        self.requested = set(requested)
        self.key = key
        self.discovery = discovery if _parent is None else _parent.discovery
        self.scope = _scope
        self.step = _step
        self.variables: dict[str, Variable] = {}
        self.collected: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        root = _parent.root if _parent is not None else self
        self.root = root
        if _parent is None:
            self.bricks: dict[int, Any] = {}
            self.parameters: dict[str, Variable] = {}
            self.scans: list[str] = []

    # -- tags ---------------------------------------------------------------
    def new_tag(self, base: str) -> str:
        k = self.counts.get(base, 0)
        self.counts[base] = k + 1
        return self.scope + base + (f"#{k}" if k else "")

    def key_for(self, tag: str, per_step: bool = True) -> Any:
        if self.key is None:
            return None
        key = jax.random.fold_in(self.key, _crc(tag))
        if per_step and self.step is not None:
            key = jax.random.fold_in(key, self.step)
        return key

    def register_brick(self, brick: Any) -> None:
        bricks = self.root.bricks
        if id(brick) in bricks:
            return
        root = brick.root
        default = root.__dict__.get("_default_name")
        if default is not None:
            # two unnamed top-level bricks of one graph (two SimpleRecurrent()) get
            # distinct paths, as their siblings would: the later one is numbered
            taken = {b.root.name for b in bricks.values() if b.root is not root}
            if root.name in taken:
                k = 1
                while f"{default}_{k}" in taken:
                    k += 1
                root.__dict__["name"] = f"{default}_{k}"
        bricks[id(brick)] = brick

    # -- recording -----------------------------------------------------------
    def _intervene(self, tag: str, value: Any) -> Any:
        iv = self.interventions.get(tag)
        if iv is None:
            return value
        key = None
        if iv.stochastic:
            key = self.key_for(tag, iv.per_step)
            if key is None:
                if self.discovery:
                    key = jax.random.key(0)
                else:
                    from bricks.errors import GraphError

                    raise GraphError(
                        f"variable {tag!r} has a stochastic transform (dropout or noise) but the "
                        "graph was evaluated without a key; pass key=jax.random.key(...)"
                    )
        new = iv.fn(value, key)
        new = jnp.asarray(new)
        if new.shape != jnp.shape(value):
            from bricks.errors import GraphError

            raise GraphError(
                f"replacement for {tag!r} has shape {new.shape}, expected {jnp.shape(value)}"
            )
        return new

    def record(
        self,
        value: Any,
        *,
        base: str,
        name: str,
        roles: Sequence[VariableRole],
        brick: Any = None,
        application: str | None = None,
        call_id: str | None = None,
    ) -> Any:
        tag = self.new_tag(base)
        value = self._intervene(tag, value)
        self.variables[tag] = Variable(
            tag=tag,
            name=name,
            roles=tuple(roles),
            brick=brick,
            application=application,
            shape=tuple(jnp.shape(value)),
            dtype=jnp.result_type(value),
            scan_scope=None,
            call_id=call_id,
        )
        if tag in self.requested:
            self.collected[tag] = value
        return value

    def record_parameter(self, value: Any, *, path: str, name: str, roles, brick) -> Any:
        value = self._intervene(path, value)
        iv = self.interventions.get(path)
        if iv is not None and iv.replaces_parameter:
            return value
        if path not in self.root.parameters:
            self.root.parameters[path] = Variable(
                tag=path,
                name=name,
                roles=tuple(roles),
                brick=brick,
                path=path,
                shape=tuple(jnp.shape(value)),
                dtype=jnp.result_type(value),
            )
        return value


@dataclass
class Frame:
    """Where parameter values come from and which recorder is listening."""

    params: Mapping[str, Any] | None = None
    recorder: Recorder | None = None
    extra: dict = field(default_factory=dict)


# The default frame is never mutated (frames are replaced, not edited), so
# sharing one instance as the default is safe.
_FRAME: contextvars.ContextVar[Frame] = contextvars.ContextVar(
    "bricks_frame",
    default=Frame(),  # noqa: B039
)


def current_frame() -> Frame:
    """The active :class:`Frame` (an empty one outside any trace)."""
    return _FRAME.get()


@contextlib.contextmanager
def use_frame(frame: Frame) -> Iterator[Frame]:
    token = _FRAME.set(frame)
    try:
        yield frame
    finally:
        _FRAME.reset(token)


def apply_with(params: Mapping[str, Any], fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with every brick reading its parameters from ``params``.

    This is the pure form of a model: ``params`` is a flat mapping from
    parameter path to array (see :meth:`Brick.get_parameter_values`), so the
    result can be jitted, differentiated and vmapped over.

    >>> import jax, jax.numpy as jnp
    >>> from bricks.core import Linear, Constant
    >>> lin = Linear(2, 3, weights_init=Constant(1.0), biases_init=Constant(0.0), name="lin")
    >>> lin.initialize(seed=0)
    >>> params = lin.get_parameter_values()
    >>> f = jax.jit(lambda p, x: apply_with(p, lin.apply, x))
    >>> f(params, jnp.ones((1, 2))).tolist()
    [[2.0, 2.0, 2.0]]
    """
    outer = current_frame()
    with use_frame(Frame(params=params, recorder=outer.recorder, extra=outer.extra)):
        return fn(*args, **kwargs)


def annotate(
    value: Any,
    name: str,
    roles: Sequence[VariableRole] = (),
    *,
    brick: Any = None,
    application: str | None = None,
    base: str | None = None,
    call_id: str | None = None,
) -> Any:
    """Tag ``value`` so a computation graph can find, monitor and replace it.

    ``base`` overrides the tag's stem (default ``"<brick path>.<application>.<name>"``).

    Outside a graph trace this returns ``value`` unchanged, so annotating
    costs nothing in eager code. Users call it to name quantities of their
    own (``annotate(errors.mean(), "error_rate")``).
    """
    rec = current_frame().recorder
    if rec is None:
        return value
    if base is not None:
        pass
    elif brick is not None:
        base = f"{brick.path}.{application}.{name}" if application else f"{brick.path}.{name}"
    else:
        base = name
    return rec.record(
        value,
        base=base,
        name=name,
        roles=roles,
        brick=brick,
        application=application,
        call_id=call_id,
    )


def scan(
    body: Callable[[Any, Any], tuple[Any, Any]],
    init: Any,
    xs: Any,
    *,
    length: int | None = None,
    reverse: bool = False,
    remat: bool = False,
    unroll: int = 1,
    name: str = "scan",
) -> tuple[Any, Any]:
    """``lax.scan`` that keeps annotations of the body visible to graphs.

    Variables annotated in ``body`` are recorded under the scope
    ``"<name>/"`` with a leading time axis; requested ones are returned as
    extra stacked outputs; stochastic interventions get a different key at
    every step. With ``remat=True`` the body is wrapped in
    :func:`jax.checkpoint` so backprop stores only the carries.
    """
    if length is None:
        leaves = jax.tree_util.tree_leaves(xs)
        if not leaves:
            from bricks.errors import ShapeError

            raise ShapeError(f"scan {name!r} needs `length` when it has no sequences")
        length = leaves[0].shape[0]
    steps = jnp.arange(length, dtype=jnp.int32)
    fn, finish = scan_body(body, length=length, name=name)
    step = jax.checkpoint(fn) if remat else fn
    carry, ys = jax.lax.scan(step, init, (xs, steps), length=length, reverse=reverse, unroll=unroll)
    return carry, finish(ys)


def scan_body(
    body: Callable[[Any, Any], tuple[Any, Any]], *, length: int, name: str = "scan"
) -> tuple[Callable[[Any, Any], tuple[Any, Any]], Callable[[Any], Any]]:
    """The step of :func:`scan` and the function that finishes its outputs.

    ``step(carry, (x, t))`` runs ``body(carry, x)`` recording its annotations
    under the scope ``"<name>/"`` (``t`` is the step index, for stochastic
    interventions); ``finish(ys)`` takes the stacked outputs of
    ``lax.scan(step, ...)``, records the body's variables with their leading
    time axis of ``length`` and returns the body's own outputs. Outside a
    graph the step just calls ``body`` and ``finish`` returns ``ys``. For
    scans that drive ``lax.scan`` themselves (a custom backward).
    """
    frame = current_frame()
    rec = frame.recorder
    if rec is None:

        def plain(carry, x_t):
            return body(carry, x_t[0])

        return plain, lambda ys: ys

    scope = rec.new_tag(name) + "/"
    rec.root.scans.append(scope[:-1])
    inner_requested = {t for t in rec.requested if t.startswith(scope)}
    inner_vars: dict[str, Variable] = {}

    def step(carry, x_t):
        x, t = x_t
        child = Recorder(
            interventions=rec.interventions,
            requested=inner_requested,
            key=rec.key,
            _parent=rec,
            _scope=scope,
            _step=t,
        )
        with use_frame(Frame(params=current_frame().params, recorder=child, extra=frame.extra)):
            carry, y = body(carry, x)
        inner_vars.update(child.variables)
        extras = {tag: child.collected[tag] for tag in sorted(child.collected)}
        return carry, (y, extras)

    def finish(ys_extras: Any) -> Any:
        ys, extras = ys_extras
        for tag, var in inner_vars.items():
            rec.variables[tag] = replace(
                var, shape=(length, *var.shape), scan_scope=var.scan_scope or scope[:-1]
            )
        rec.collected.update(extras)
        return ys

    return step, finish
