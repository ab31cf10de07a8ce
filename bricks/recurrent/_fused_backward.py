"""A fused backward pass for recurrent scans (what cuDNN and oneDNN do).

Differentiating ``lax.scan`` of a step ``a_t = x_t + h_{t-1} @ W`` makes the
backward scan accumulate ``dW += h_{t-1}ᵀ da_t`` at every step: ``T`` small
matrix products inside the loop. Here the backward scan only propagates the
state cotangents and returns the stacked ``da_t``; the weight gradient is then
one large product over all time steps, ``(T·B × H)ᵀ (T·B × N)``, after the
loop.

A step opts in by computing its recurrent matrix products with
:func:`recurrent_dot` (``SimpleRecurrent``, ``LSTM`` and ``GatedRecurrent``
do). Outside a fused scan it is ``jnp.dot``. Inside one, it computes
``lhs @ W' + z_t`` where ``W'`` is the value of ``W`` passed to the scan as an
input that the backward scan does not differentiate and ``z`` is a zero
sequence fed to the scan: the cotangent of ``z`` is ``da``, and ``lhs`` is
returned as an extra stacked output. A :func:`jax.custom_vjp` around the scan
adds ``Σ_t lhs_tᵀ dz_t`` to the gradient of ``W``. A step that writes
``recurrent_dot(lhs, W, add=x)`` for ``x + lhs @ W``, where ``x`` is its
slice of a scanned sequence read nowhere else in the step (checked on the
step's jaxpr), needs no ``z``: the cotangent of ``x``'s sequence is ``da``.
The zero sequences are never read by the forward scan (their slice enters
the product only through its tangent). Everything else (masks,
``reverse``, ``remat``, input transforms, graph annotations and
interventions) is the plain scan's, differentiated by JAX.

The fusion only applies to a weight that is a parameter read unchanged from
the active parameter mapping; any other operand (a weight replaced by an
intervention, a value computed in the step) keeps the plain ``jnp.dot`` and
JAX's own gradient, so the result is always the plain scan's gradient.
It is only used where parameters are differentiated in reverse mode
(``jax.grad``, ``jax.vjp``); evaluation and forward mode (``jax.jvp``) run the
plain scan. Forward over reverse (``jax.hessian``) is not possible through a
custom VJP: pass ``fused_backward=False`` (or set the brick's
``fused_backward = False``) for that.
"""

from __future__ import annotations

import contextvars
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero
from jax.extend.core import Var

from bricks.core.tracing import current_frame, scan_body
from bricks.errors import RecurrentError

__all__ = ["recurrent_dot", "fused_scan"]

try:  # a private helper of JAX; without it the nesting check below is skipped
    from jax._src.core import get_opaque_trace_state as _trace_state
except ImportError:  # pragma: no cover - depends on the JAX version
    _trace_state = None
try:  # what reverse mode (jax.grad, jax.vjp) traces with; jax.jvp uses JVPTracer
    from jax._src.interpreters.ad import LinearizeTracer as _ReverseTracer
except ImportError:  # pragma: no cover - depends on the JAX version
    _ReverseTracer = None


def _reverse_differentiated(value: Any) -> bool:
    """Whether ``value`` is being differentiated in reverse mode (only then is the
    custom VJP used: forward mode, ``jax.jvp``, keeps the plain scan)."""
    return _ReverseTracer is not None and isinstance(value, _ReverseTracer)


@dataclass
class _Fusion:
    """What one trace of a fused step records."""

    candidates: tuple[Any, ...]
    zs: tuple[Any, ...] | None = None  # None while discovering
    #: the leaves of the step's slice of the scanned sequences
    x_leaves: tuple[Any, ...] = ()
    ws: tuple[Any, ...] = ()  # the fused weights, as inputs of the step
    trace: Any = None
    fusable: list[bool] = field(default_factory=list)
    outs: list[Any] = field(default_factory=list)
    lhs: list[Any] = field(default_factory=list)
    weights: list[Any] = field(default_factory=list)
    adds: list[int | None] = field(default_factory=list)  # found, per fused product


_FUSION: contextvars.ContextVar[_Fusion | None] = contextvars.ContextVar(
    "bricks_fusion", default=None
)


#: the context of a scan run with ``fused_backward=False``
_OFF = _Fusion(candidates=())


def fused_backward_enabled() -> bool:
    """``False`` inside the step of a scan run with ``fused_backward=False`` (so a
    brick's own hand-written backward, like LSTM's cell, is switched off too)."""
    return _FUSION.get() is not _OFF


def recurrent_dot(lhs: jax.Array, weight: jax.Array, add: jax.Array | None = None) -> jax.Array:
    """``add + jnp.dot(lhs, weight)`` for the recurrent matrix product of a step.

    Args:
        lhs: ``(batch, ..., in)``, e.g. the previous states.
        weight: ``(in, out)``, a parameter of the brick (``self.W``).
        add: ``None``, or what the step adds to the product, of the product's
            shape and dtype (``inputs`` in ``inputs + states @ W``). When it
            is the step's slice of a scanned sequence and the step uses that
            slice nowhere else, the fused backward takes the product's
            cotangent from the sequence's own (no extra ``(time, batch, out)``
            sequence in the backward scan).

    Returns:
        ``(batch, ..., out)``. In a scan with the fused backward on, the
        gradient of ``weight`` is computed after the scan as one matrix
        product over all time steps (see the module docstring).
    """
    fusion = _FUSION.get()
    if fusion is None or fusion is _OFF:
        return _plus(add, jnp.dot(lhs, weight))
    if _trace_state is not None and fusion.trace is not None and _trace_state() != fusion.trace:
        raise RecurrentError(
            "recurrent_dot was called inside a transformation nested in a recurrent step "
            "(a scan, cond or checkpoint of its own) while the fused backward is on; pass "
            "fused_backward=False to the recurrent application or use jnp.dot there"
        )
    k = len(fusion.fusable)
    fusable = (
        jnp.ndim(weight) == 2
        and jnp.ndim(lhs) >= 1
        and any(weight is c for c in fusion.candidates)
    )
    if fusion.zs is not None and (k >= len(fusion.zs) or (fusion.zs[k] is None) == fusable):
        raise RecurrentError(
            "a recurrent step called recurrent_dot differently in two traces of the same "
            "step; the fused backward needs a step whose matrix products do not depend on "
            "Python state. Pass fused_backward=False."
        )
    fusion.fusable.append(fusable)
    if not fusable:
        return _plus(add, jnp.dot(lhs, weight))
    if fusion.zs is None:  # discovering the shapes
        out = jnp.dot(lhs, weight)
        fusion.outs.append(jax.ShapeDtypeStruct(out.shape, out.dtype))
        fusion.weights.append(weight)
        fusion.adds.append(_scanned_leaf(fusion, add, out))
        return _plus(add, out)
    z, (w, w_t) = fusion.zs[k], fusion.ws[len(fusion.lhs)]
    fusion.lhs.append(lhs)
    fusion.weights.append(weight)
    if isinstance(z, _Leaf):  # the cotangent of the scanned slice ``add`` is the product's
        if add is not fusion.x_leaves[z.index]:
            raise RecurrentError(
                "a recurrent step passed recurrent_dot a different add= in two traces of the "
                "same step; pass fused_backward=False"
            )
        return jax.lax.add(add, _product(lhs, w, w_t))
    return _plus(add, _product_z(lhs, w, w_t, z))


@dataclass(frozen=True)
class _Leaf:
    """In place of a zero sequence: the fused product's cotangent is that of
    the step's scanned slice ``x_leaves[index]``, which it adds."""

    index: int


def _plus(add: jax.Array | None, product: jax.Array) -> jax.Array:
    return product if add is None else add + product


def _scanned_leaf(fusion: _Fusion, add: Any, out: Any) -> int | None:
    """The index of ``add`` among the step's scanned slices, if it is one, of
    the product's shape and floating dtype."""
    if add is None or jnp.shape(add) != out.shape or jnp.result_type(add) != out.dtype:
        return None
    if not jnp.issubdtype(out.dtype, jnp.floating):
        return None
    return next((j for j, leaf in enumerate(fusion.x_leaves) if leaf is add), None)


@jax.custom_jvp
def _product(lhs: jax.Array, w: jax.Array, w_t: jax.Array) -> jax.Array:
    """``lhs @ w``, whose cotangent for ``lhs`` is ``g @ w_t`` with ``w_t = wᵀ``
    stored transposed, once, outside the scan (XLA's CPU matrix product is
    about 20% slower when it contracts the second axis of its right operand)."""
    del w_t
    return jnp.dot(lhs, w)


def _product_jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, Any]:
    lhs, w, w_t = primals
    d_lhs, d_w, d_w_t = tangents
    del d_w_t  # w_t is wᵀ: its tangent is d_wᵀ, already counted through d_w
    out = jnp.dot(lhs, w)
    parts = []
    if not isinstance(d_lhs, SymbolicZero):
        contract = (((lhs.ndim - 1,), (1,)), ((), ()))
        parts.append(jax.lax.dot_general(d_lhs, w_t, contract))
    if not isinstance(d_w, SymbolicZero):
        parts.append(jnp.dot(lhs, d_w))
    if not parts:
        return out, SymbolicZero(jax.typeof(out).to_tangent_aval())
    tangent = parts[0] if len(parts) == 1 else parts[0] + parts[1]
    return out, tangent.astype(out.dtype)


_product.defjvp(_product_jvp, symbolic_zeros=True)


@jax.custom_jvp
def _product_z(lhs: jax.Array, w: jax.Array, w_t: jax.Array, z: jax.Array) -> jax.Array:
    """:func:`_product` whose tangent also gets ``z``'s: ``z`` (a zero sequence's
    slice) only carries the product's cotangent out of the backward scan, so
    the forward pass never reads it."""
    del w_t, z
    return jnp.dot(lhs, w)


def _product_z_jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, Any]:
    out, tangent = _product_jvp(primals[:3], tangents[:3])
    d_z = tangents[3]
    if isinstance(d_z, SymbolicZero):
        return out, tangent
    if isinstance(tangent, SymbolicZero):
        return out, d_z.astype(out.dtype)
    return out, (tangent + d_z).astype(out.dtype)


_product_z.defjvp(_product_z_jvp, symbolic_zeros=True)


def _with_fusion(fusion: _Fusion, fn: Callable[..., Any], *args: Any) -> Any:
    token = _FUSION.set(fusion)
    try:
        return fn(*args)
    finally:
        _FUSION.reset(token)


def fused_scan(
    body: Callable[[Any, Any], tuple[Any, Any]],
    init: Any,
    xs: Any,
    *,
    length: int,
    reverse: bool = False,
    remat: bool = False,
    unroll: int = 1,
    name: str = "scan",
    fused: bool = True,
    disabled: bool = False,
) -> tuple[Any, Any]:
    """:func:`bricks.core.tracing.scan` with the fused backward of
    :func:`recurrent_dot` (when ``fused``; else the plain scan with no
    fusion active in the body, and with :func:`fused_backward_enabled`
    ``False`` in it when ``disabled``)."""
    frame = current_frame()
    steps = jnp.arange(length, dtype=jnp.int32)
    fn, finish = scan_body(body, length=length, name=name)

    params = frame.params.values() if fused and frame.params else ()
    candidates = tuple(v for v in params if _reverse_differentiated(v))
    result = None
    if candidates:
        result = _fused(fn, init, (xs, steps), candidates, length, reverse, remat, unroll)
    if result is None:

        def unfused(carry: Any, x_t: Any) -> Any:
            return _with_fusion(_OFF if disabled else None, fn, carry, x_t)  # type: ignore[arg-type]

        step = jax.checkpoint(unfused) if remat else unfused
        result = jax.lax.scan(
            step, init, (xs, steps), length=length, reverse=reverse, unroll=unroll
        )
    carry, ys = result
    return carry, finish(ys)


def _example(tree: Any) -> Any:
    """One time step of the stacked ``tree``, as shapes."""
    return jax.tree_util.tree_map(lambda v: jax.ShapeDtypeStruct(v.shape[1:], v.dtype), tree)


def _fused(
    fn: Callable[[Any, Any], tuple[Any, Any]],
    init: Any,
    xs: Any,
    candidates: tuple[Any, ...],
    length: int,
    reverse: bool,
    remat: bool,
    unroll: int,
) -> tuple[Any, Any] | None:
    """The scan of ``fn`` with the fused weight gradients, or ``None`` when no
    step matrix product reads a differentiated parameter."""
    x0 = _example(xs)

    def discover(carry: Any, x: Any) -> Any:
        fusion = _Fusion(
            candidates,
            x_leaves=tuple(jax.tree_util.tree_leaves(x)),
            trace=_trace_state() if _trace_state else None,
        )
        out = _with_fusion(fusion, fn, carry, x)
        found.append(fusion)
        return out

    found: list[_Fusion] = []
    init0 = jax.tree_util.tree_map(
        lambda v: jax.ShapeDtypeStruct(jnp.shape(v), jnp.result_type(v)), init
    )
    jax.eval_shape(discover, init0, x0)
    plan = found[-1]
    if not any(plan.fusable):
        return None
    weights = tuple(plan.weights)  # parameters of the active mapping, one per fused product
    w0 = tuple(jax.ShapeDtypeStruct(jnp.shape(w), jnp.result_type(w)) for w in weights)
    pairs0 = tuple((w, jax.ShapeDtypeStruct(w.shape[::-1], w.dtype)) for w in w0)
    n_carry = len(jax.tree_util.tree_leaves(init0))
    adds = list(plan.adds)
    while True:  # drop the scanned slices the step also uses elsewhere
        step, kinds = _fused_step(fn, candidates, plan, adds)
        z0 = tuple(s for s in kinds if isinstance(s, jax.ShapeDtypeStruct))
        used = _uses(jax.make_jaxpr(step)(init0, (x0, z0), pairs0).jaxpr, n_carry)
        shared = [n for n, j in enumerate(adds) if j is not None and used[j] != 1]
        if not shared:
            break
        for n in shared:
            adds[n] = None

    body = jax.checkpoint(step) if remat else step
    converted, consts = jax.closure_convert(body, init, (x0, z0), pairs0)

    def zeros() -> tuple[Any, ...]:
        return tuple(jnp.zeros((length, *s.shape), s.dtype) for s in z0)

    def scan_all(consts: Any, ws: Any, init: Any, xs: Any, zs: Any) -> Any:
        pairs = tuple((w, w.T) for w in ws)
        return jax.lax.scan(
            lambda c, xz: converted(c, xz, pairs, *consts),
            init,
            (xs, zs),
            length=length,
            reverse=reverse,
            unroll=unroll,
        )

    @jax.custom_vjp
    def run(consts: Any, ws: Any, init: Any, xs: Any) -> Any:
        carry, (ys, _) = scan_all(consts, ws, init, xs, zeros())
        return carry, ys

    def run_fwd(consts: Any, ws: Any, init: Any, xs: Any) -> Any:
        # ws is held constant by the backward scan: no weight gradient inside it
        def differentiated(consts: Any, init: Any, xs: Any, zs: Any) -> Any:
            carry, (ys, lhs) = scan_all(consts, ws, init, xs, zs)
            return (carry, ys), lhs

        out, pull, lhs = jax.vjp(differentiated, consts, init, xs, zeros(), has_aux=True)
        return out, (pull, lhs)

    def run_bwd(res: Any, cotangent: Any) -> Any:
        pull, lhs = res
        d_consts, d_init, d_xs, d_zs = pull(cotangent)
        d_slices = jax.tree_util.tree_leaves(d_xs)
        d_zs = list(d_zs)
        d_ws = []
        for k, w in enumerate(w0):  # one (T·B × in)ᵀ (T·B × out) product each
            d_out = d_slices[adds[k]] if adds[k] is not None else d_zs.pop(0)
            axes = list(range(lhs[k].ndim - 1))
            grad = jnp.tensordot(lhs[k], d_out, axes=(axes, axes))
            d_ws.append(grad.astype(w.dtype))
        return d_consts, tuple(d_ws), d_init, d_xs

    run.defvjp(run_fwd, run_bwd)
    return run(tuple(consts), weights, init, xs)


def _fused_step(
    fn: Callable[[Any, Any], tuple[Any, Any]],
    candidates: tuple[Any, ...],
    plan: _Fusion,
    adds: list[int | None],
) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """The step of the fused scan, ``step(carry, (x, zs), ws)``, and per call of
    :func:`recurrent_dot` what stands for its cotangent: ``None`` (not fused),
    a :class:`_Leaf` or the shape of a zero sequence's slice in ``zs``."""
    kinds: list[Any] = []
    outs = iter(zip(plan.outs, adds, strict=True))
    for fusable in plan.fusable:
        if not fusable:
            kinds.append(None)
            continue
        out, leaf = next(outs)
        kinds.append(_Leaf(leaf) if leaf is not None else out)

    def step(carry: Any, xz: Any, ws: Any) -> Any:
        x, zs = xz
        zs_left = list(zs)
        fusion = _Fusion(
            candidates,
            zs=tuple(zs_left.pop(0) if isinstance(s, jax.ShapeDtypeStruct) else s for s in kinds),
            ws=tuple(ws),
            x_leaves=tuple(jax.tree_util.tree_leaves(x)),
            trace=_trace_state() if _trace_state else None,
        )
        carry, y = _with_fusion(fusion, fn, carry, x)
        if len(fusion.fusable) != len(kinds):
            raise RecurrentError(
                "a recurrent step called recurrent_dot a different number of times in two "
                "traces; pass fused_backward=False"
            )
        return carry, (y, tuple(fusion.lhs))

    return step, tuple(kinds)


def _uses(jaxpr: Any, n_carry: int) -> Counter:
    """How often each leaf of the step's scanned slices is read by ``jaxpr`` (by
    its equations or as an output), by index among those leaves."""
    index = {v: j - n_carry for j, v in enumerate(jaxpr.invars) if j >= n_carry}
    used: Counter = Counter()
    for var in [v for eqn in jaxpr.eqns for v in eqn.invars] + list(jaxpr.outvars):
        if isinstance(var, Var) and var in index:
            used[index[var]] += 1
    return used
