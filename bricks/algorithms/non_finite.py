"""Non-finite steps: freeze and stop, or skip whole with :class:`RemoveNotFinite`.

Every training step of :class:`~bricks.algorithms.GradientDescent` checks, on
the device and inside its compiled function, that the cost and the gradients
are finite (and the values set by state updates such as batch-norm
statistics). What happens when they are not depends on the step rule:

* **Without** :class:`~bricks.algorithms.RemoveNotFinite`, the state freezes:
  that step and every later one leave the parameters and the optimizer state
  unchanged, and the host raises :class:`~bricks.errors.NonFiniteCostError`
  at its next look at the flags.
* **With** a ``RemoveNotFinite`` anywhere in the step rule (a
  :class:`~bricks.algorithms.CompositeRule`, a ``Restrict``, an
  ``optax.chain``), a step whose cost, gradients or steps (what
  ``RemoveNotFinite`` sees) are not finite is **skipped whole**: parameters and
  optimizer state stay bitwise unchanged (with ``scaler < 1`` every trained
  parameter is multiplied by ``scaler`` instead, GroundHog's trick), and the
  next step goes on. A device counter counts the skips (logged as
  ``skipped_steps``); after ``max_consecutive`` skips in a row the state
  freezes and the host raises :class:`~bricks.errors.TooManySkippedStepsError`.

The host never waits for these flags at each step. It reads them where it
reads the device anyway (a monitoring report, the end of an epoch, a
checkpoint, the end of training) and, without waiting, every 8 step calls
when a recent step's flags are already computed. A stop is therefore seen a
few steps late at most, at the latest at the next of those points; the
frozen state guarantees that what is saved meanwhile is the state before the
failure.

``RemoveNotFinite`` finds the step it guards at trace time:
:func:`collect_non_finite` gathers the flags of the ``RemoveNotFinite`` rules
that run while the step is traced, whatever transforms wrap them.

The check reads the gradients, not the updated parameters: checking those
would make XLA write out and re-read every parameter before the select that
keeps or drops the step (on a 784-500-500-10 MLP step with Adam, the bytes
XLA's cost analysis counts grow by 23% that way, by 3.4% for the
gradients). optax's own remedies for NaN gradients (``zero_nans``,
``apply_if_finite``) therefore never see one: use ``RemoveNotFinite``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bricks.errors import NonFiniteCostError, StepRuleError, TooManySkippedStepsError

__all__ = [
    "SkipPolicy",
    "collect_non_finite",
    "report_non_finite",
    "all_finite",
    "CHECK_AS_IS",
    "CHECK_BLOCKS",
    "settle",
    "select_state",
    "chains",
    "decide",
    "initial_counters",
    "COUNTERS",
    "counters_from",
    "counter_values",
    "flags_of",
    "FlagReader",
]

_local = threading.local()

#: how many step calls pass between two non-blocking looks at the flags
CHECK_EVERY = 8


@contextlib.contextmanager
def collect_non_finite() -> Iterator[list[tuple[Any, Any]]]:
    """Gather ``(flag, rule)`` of every ``RemoveNotFinite`` run inside the block.

    Used at trace time by :class:`~bricks.algorithms.GradientDescent` around
    the step rule's ``update``; ``flag`` is the traced boolean "the steps this
    rule saw were not all finite".
    """
    stack = _local.__dict__.setdefault("stack", [])
    found: list[tuple[Any, Any]] = []
    stack.append(found)
    try:
        yield found
    finally:
        stack.pop()


def report_non_finite(flag: Callable[[], Any], rule: Any) -> bool:
    """Called by ``RemoveNotFinite``: hand its flag to the enclosing collector, if any.

    Args:
        flag: computes the traced flag (called only when a collector listens).
        rule: the reporting rule.

    Returns:
        Whether a collector took the flag (the step is then skipped whole).
    """
    stack = getattr(_local, "stack", None)
    if not stack:
        return False
    stack[-1].append((flag(), rule))
    return True


#: arrays of at most this many elements are checked as they are, larger ones
#: through their product with a zero row vector
CHECK_AS_IS = 4096

#: a large array's rows are checked as this many blocks (the first count that
#: divides them) in one batched product, which XLA's CPU runtime spreads over
#: its threads; one block's product ran on one core while the step's updates
#: waited for it (784-500-500-10 MLP step with Adam: 4.5% less time with 4)
CHECK_BLOCKS = (4, 2)


def all_finite(arrays: Iterable[jax.Array]) -> jax.Array:
    """A scalar boolean: every element of every array is finite (no overflow, unlike a norm).

    One reduction for all the arrays: the small ones (:data:`CHECK_AS_IS`
    elements at most) go in as they are, a larger one as the product of a
    zero row vector with it (its columns; a vector is one column): ``0 * x``
    is ``0`` for a finite ``x`` and NaN for an infinite or NaN one, so the
    product is finite exactly when the array is, and no sum can overflow.
    The product runs in the matrix-multiply kernels, which read the array at
    full speed; on CPU a reduction of ``isfinite`` over the gradients made
    the 784-500-500-10 MLP step 8% slower than one without the check, the
    product 1-2%. The product of a large array is batched over
    :data:`CHECK_BLOCKS` blocks of its rows, so both cores read it. One
    reduction over all the pieces, not one per array: XLA
    split each of those into two or three kernels (the check of that MLP's
    six gradients took 17 kernels, now 7; the 784-16-16-10 step's 9, now 4,
    about 5% of that step's CPU time).
    """
    parts = []
    for a in arrays:
        a = jnp.asarray(a)
        if not jnp.issubdtype(a.dtype, jnp.floating):
            continue  # integers and booleans are always finite
        if a.size <= CHECK_AS_IS:
            parts.append(a.ravel())
            continue
        columns = a.reshape(-1, a.shape[-1]) if a.ndim > 1 else a.reshape(-1, 1)
        rows = columns.shape[0]
        blocks = next((k for k in CHECK_BLOCKS if rows % k == 0), 1)
        stacked = columns.reshape(blocks, rows // blocks, columns.shape[1])  # no copy
        zeros = jnp.zeros((blocks, 1, rows // blocks), a.dtype)
        products = jnp.matmul(zeros, stacked, precision=jax.lax.Precision.HIGHEST)
        parts.append(products.ravel())
    if not parts:
        return jnp.bool_(True)
    dtype = jnp.result_type(*parts)  # a wider float: NaN and inf stay what they are
    return jnp.all(jnp.isfinite(jnp.concatenate([p.astype(dtype) for p in parts])))


@dataclass(frozen=True)
class SkipPolicy:
    """What a skipped step does: shrink parameters by ``scaler``; stop after ``max_consecutive``."""

    scaler: float = 1.0
    max_consecutive: int | None = 10

    @classmethod
    def of(cls, rules: Iterable[Any]) -> SkipPolicy | None:
        """The one policy of the ``RemoveNotFinite`` rules given (``None`` if none)."""
        policies = {cls(float(r.scaler), r.max_consecutive): r for r in rules}
        if len(policies) > 1:
            raise StepRuleError(
                "the step rule holds RemoveNotFinite rules with different settings "
                f"({list(policies.values())}); a non-finite step is skipped whole, so use one "
                "RemoveNotFinite, last in the rule"
            )
        return next(iter(policies), None)


class FlagReader:
    """The host side of the flags ``(bad, skipped, consecutive)`` each step returns.

    ``bad`` is the iteration at which training stopped (``-1`` while it goes
    on), ``skipped`` the steps skipped so far, ``consecutive`` those skipped
    in a row at the end.
    """

    def __init__(self) -> None:
        self.policy: SkipPolicy | None = None
        self.last: Any = None  # flags of the latest step call (a device array)
        self._probe: Any = None  # flags of an older call, looked at when ready
        self._calls = 0
        self._seen = -CHECK_EVERY  # the call whose flags were looked at last
        self.logged_skipped = 0

    def reset(self, skipped: int = 0) -> None:
        """Forget the flags of earlier steps (a restored state replaced them)."""
        self.last = self._probe = None
        self.logged_skipped = skipped

    def called(self, flags: Any) -> None:
        self.last = flags
        self._calls += 1

    @property
    def calls(self) -> int:
        """How many step calls handed their flags so far."""
        return self._calls

    def seen(self, call: int) -> None:
        """The flags of step call ``call`` were looked at (by a monitoring read): the
        next non-blocking :meth:`check` within :data:`CHECK_EVERY` calls can skip."""
        self._seen = max(self._seen, call)

    def check(self, log: Any, wait: bool) -> None:
        """Look at the flags: at once (``wait``), or only if some are computed already."""
        if self.last is None:
            return
        if wait:
            self.read(self.last, log)
            return
        if self._calls % CHECK_EVERY or self._calls - self._seen < CHECK_EVERY:
            return  # a monitoring read looked at recent flags already
        if self.last.is_ready():
            self._probe = None
            self.read(self.last, log)
        elif self._probe is None:
            self._probe = self.last
        elif self._probe.is_ready():
            probe, self._probe = self._probe, self.last
            self.read(probe, log)

    def read(self, flags: Any, log: Any) -> None:
        """Log the skips and raise if training stopped, from flags (device or host)."""
        # np.asarray: jax.device_get's pytree machinery cost 26 us a read on CPU
        bad, skipped, consecutive = np.asarray(flags).tolist()
        if log is not None and skipped != self.logged_skipped:
            log.current_row["skipped_steps"] = skipped
            self.logged_skipped = skipped
        if bad < 0:
            return
        if self.policy is None:
            if log is not None:
                log[bad]["nonfinite_cost"] = True
                log.status["iterations_done"] = bad - 1
            raise NonFiniteCostError(
                f"iteration {bad} gave a NaN or infinite cost or gradient; training "
                f"stopped there (parameters and optimizer state are those after iteration "
                f"{bad - 1}). Lower the learning rate, clip steps (StepClipping), or add "
                "RemoveNotFinite() last in the step rule to skip such steps."
            )
        first = bad - consecutive + 1
        kept = f"those after iteration {first - 1}"
        if self.policy.scaler != 1.0:
            kept += f", each skipped step multiplying the parameters by {self.policy.scaler}"
        if log is not None:
            log[bad]["skipped_steps"] = skipped
            log[bad]["too_many_skipped_steps"] = True
            log.status["iterations_done"] = bad
        raise TooManySkippedStepsError(
            f"RemoveNotFinite skipped {consecutive} steps in a row (iterations {first} to "
            f"{bad}; max_consecutive={self.policy.max_consecutive}): their cost or step was NaN "
            f"or infinite. Training stopped; parameters and optimizer state are {kept} "
            f"({skipped} steps skipped in all). Look for NaN or inf in "
            "those batches, lower the learning rate or clip steps (StepClipping), or raise "
            "RemoveNotFinite(max_consecutive=...) (None never stops)."
        )


def settle(
    state: dict[str, Any],
    new_params: dict[str, jax.Array],
    new_opt: Any,
    cost: jax.Array,
    grads: Iterable[jax.Array],
    updated: Iterable[str],
    trained: Iterable[str],
    rule_flags: Iterable[Any],
    policy: SkipPolicy | None,
) -> tuple[dict[str, jax.Array], Any, jax.Array, jax.Array]:
    """Inside the compiled step: keep, skip or freeze the step just computed.

    Args:
        state: the state before the step (``params``, ``opt``, ``step`` and
            ``counters``, see :func:`initial_counters`).
        new_params, new_opt: what the step would make them.
        cost: the step's cost.
        grads: the step's gradients.
        updated: the paths of values the step sets other than by the step
            rule (state updates such as batch-norm statistics).
        trained: the trained paths (shrunk by ``policy.scaler`` on a skip).
        rule_flags: the traced flags of the ``RemoveNotFinite`` rules.
        policy: the skip policy, ``None`` to freeze at the first non-finite step.

    Returns:
        ``(params, opt, ok, counters)``: ``ok`` whether the step was taken,
        ``counters`` the new ``(bad, skipped, consecutive)`` vector (one
        fusion; the step also returns it as its flags).
    """
    ok, counters, fallback = decide(
        state,
        all_finite([cost, *grads, *(new_params[k] for k in updated)]),
        trained,
        rule_flags,
        policy,
    )
    out_params, out_opt = select_state(ok, (new_params, new_opt), (fallback, state["opt"]))
    return out_params, out_opt, ok, counters


def decide(
    state: dict[str, Any],
    finite: jax.Array,
    trained: Iterable[str],
    rule_flags: Iterable[Any],
    policy: SkipPolicy | None,
) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """``(ok, counters, fallback)``: whether the step is taken, the new counters,
    and the parameters a dropped step leaves (the old ones, or shrunk by the
    policy's ``scaler``)."""
    params, step = state["params"], state["step"]
    old = state["counters"]
    bad, skipped, consecutive = old[0], old[1], old[2]
    stopped = bad >= 0
    for flag in rule_flags:
        finite = finite & ~flag
    ok = finite & ~stopped
    fallback = params
    if policy is None:  # freeze until the host notices and stops
        bad = jnp.where(~stopped & ~finite, step + 1, bad)
    else:
        skip = ~finite & ~stopped
        skipped = skipped + skip.astype(jnp.int32)
        consecutive = jnp.where(stopped, consecutive, jnp.where(finite, 0, consecutive + 1))
        if policy.max_consecutive is not None:
            bad = jnp.where(~stopped & (consecutive >= policy.max_consecutive), step + 1, bad)
        if policy.scaler != 1.0:
            shrink = set(trained)
            fallback = {
                k: jnp.where(skip, (v * policy.scaler).astype(v.dtype), v) if k in shrink else v
                for k, v in params.items()
            }

    return ok, jnp.stack([bad, skipped, consecutive]), fallback


#: states of at most this many elements select their arrays one after another
CHAIN_ELEMENTS = 1 << 16


def _never(leaf: Any) -> jax.Array | None:
    """A traced ``False`` read from ``leaf`` (its first element above its dtype's
    maximum; NaN is above nothing), ``None`` for an empty leaf or one neither
    float nor integer (booleans, complex numbers, PRNG keys)."""
    leaf = jnp.asarray(leaf)
    dtype = leaf.dtype
    if not int(np.prod(jnp.shape(leaf))):
        return None
    if jnp.issubdtype(dtype, jnp.floating):
        top = jnp.inf
    elif jnp.issubdtype(dtype, jnp.integer):
        top = jnp.iinfo(dtype).max
    else:
        return None
    first = jax.lax.slice(leaf, (0,) * leaf.ndim, (1,) * leaf.ndim).reshape(())
    return first > jnp.asarray(top, dtype)


def chains(leaves: Iterable[Any]) -> bool:
    """Whether :func:`select_state` orders the selects of a state of these arrays:
    on CPU (a GPU runs kernels in order anyway), :data:`CHAIN_ELEMENTS` elements at most."""
    small = sum(int(np.prod(jnp.shape(a))) for a in leaves) <= CHAIN_ELEMENTS
    return small and jax.default_backend() == "cpu"


def select_state(ok: jax.Array, new: Any, old: Any) -> Any:
    """``new`` where ``ok``, else ``old``, array by array (two trees of one structure).

    A select, not ``lax.cond``: a conditional makes XLA copy the whole state
    and, on GPUs, read the predicate back to the host at every step, which
    stalls the asynchronous dispatch.

    On CPU, in a small state (:data:`CHAIN_ELEMENTS` elements at most), the
    selects run one after another: the predicate of each is ``ok`` computed
    from the *old* value of the next array (``ok | (first element > max)``).
    The state is donated, so each array is written in place, and XLA's CPU
    runtime, which orders its kernels by the buffers they touch, runs each
    select before the next one overwrites what it read. Without an order all
    the selects become ready together when the step's check is done, and the
    runtime hands them to its thread pool (a 784-16-16-10 step took 210 us of
    CPU time instead of 135). The first version read the previous select's
    *output* instead; that kept XLA from fusing the optimizer's update of a
    moment into the select that keeps or drops it (12 more kernels in the
    784-16-16-10 step with Adam, each moment written out and read again).
    Reading old values leaves every select with only the state as its user,
    so XLA computes each new moment inside its select, as the hand-written
    step does without a guard (with the counters in one vector: 63 kernels
    instead of 77, about 12% less CPU time a step; see docs/benchmarks.md).
    Give the parameters first: their update reads the old moments, so it
    must run before the moments are overwritten. A larger state keeps the
    order XLA chooses: on the 784-500-500-10 step, whose kernels are long,
    ordering them measured neither faster nor slower. (A larger state
    without a ``RemoveNotFinite`` rule selects its optimizer state where the
    rule computes it instead, see :mod:`bricks.algorithms.early_select`, and
    comes here with its parameters only.)
    """
    new_leaves, treedef = jax.tree_util.tree_flatten(new)
    old_leaves = treedef.flatten_up_to(old)
    chained = chains(new_leaves)
    gates: list[Any] = [None] * len(old_leaves)
    if chained:
        later = None  # the gate of the array before: a read of the next array's old value
        for i in range(len(old_leaves) - 1, 0, -1):
            never = _never(old_leaves[i])
            later = later if never is None else jnp.where(ok, True, never)
            gates[i - 1] = later
    out = [
        jnp.where(ok if gate is None else gate, a, b)
        for a, b, gate in zip(new_leaves, old_leaves, gates, strict=True)
    ]
    return jax.tree_util.tree_unflatten(treedef, out)


#: the names of the guard's counters, in the order of its flags vector, and their
#: values at the start (``bad = -1``: going on)
COUNTERS = ("bad", "skipped", "consecutive")
_START = (-1, 0, 0)


def initial_counters() -> dict[str, jax.Array]:
    """The guard's part of the state: ``counters``, the int32 vector ``(bad, skipped,
    consecutive)``: ``bad = -1`` (going on), no step skipped.

    One vector, not three scalars: each array of the state is one more buffer
    that every step call passes in and out (three scalars cost a 784-16-16-10
    step 8 us of CPU time, one vector 1 us).
    """
    return {"counters": jnp.array(_START, jnp.int32)}


def counters_from(values: Mapping[str, Any]) -> jax.Array:
    """The ``counters`` vector from ``{name: int}`` (checkpoint metadata: missing
    names take their initial values)."""
    start = dict(zip(COUNTERS, _START, strict=True))
    return jnp.asarray([int(values.get(n, start[n])) for n in COUNTERS], jnp.int32)


def counter_values(state: Mapping[str, Any]) -> dict[str, int]:
    """``{"bad": .., "skipped": .., "consecutive": ..}`` of a (host or device) state."""
    return dict(zip(COUNTERS, np.asarray(state["counters"]).tolist(), strict=True))


def flags_of(state: Mapping[str, Any]) -> jax.Array:
    """The ``(bad, skipped, consecutive)`` vector a step returns to the host, from a
    state (a copy: the state's own vector is donated to the next step)."""
    return jnp.copy(state["counters"])
