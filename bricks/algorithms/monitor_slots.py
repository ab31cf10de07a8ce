"""The monitoring slots of :class:`~bricks.algorithms.GradientDescent`: their
accumulation inside the compiled step, fresh zero accumulators made in bulk, and
the host side (:class:`MonitorSlots`): read-backs of a slot's sums and, for a
per-step slot, of each step's own values many steps at once."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bricks.algorithms.checks import flat_monitored
from bricks.algorithms.non_finite import flags_of
from bricks.core.tracing import Variable
from bricks.errors import AlgorithmError

__all__ = [
    "MonitorSlots",
    "accumulate",
    "means",
    "on_host",
    "ring_rows",
    "sizes_of",
    "step_means",
    "zeros",
]


def accumulate(
    accs: Sequence[jax.Array], values: dict[str, Any], monitors: Sequence[Sequence[Variable]]
) -> tuple[jax.Array, ...]:
    """Inside the compiled step: each slot's accumulator plus this step's values (and 1,
    the step count, last).

    A per-step slot (a 2-d accumulator, :func:`ring_rows`) keeps the sums in its
    row 0 and this step's own values in its last row, the older rows moving up
    one: the host reads the values of up to ``rows - 1`` steps at once.
    """
    out = []
    for a, slot in zip(accs, monitors, strict=True):
        row = jnp.concatenate(
            [flat_monitored(values[v.tag], v) for v in slot] + [jnp.ones(1, jnp.float32)]
        )
        if a.ndim == 1:
            out.append(a + row)
        else:
            out.append(jnp.concatenate([(a[0] + row)[None], a[2:], row[None]]))
    return tuple(out)


#: the most steps a per-step slot holds between two reads, and its largest size
#: (floats): larger slots (a whole gradient) keep sums only
RING_STEPS = 64
RING_FLOATS = 1 << 12


def ring_rows(size: int) -> int:
    """The rows of a per-step slot of ``size`` floats (the count included): the sums
    and :data:`RING_STEPS` steps, or 0 (sums only) when that would exceed
    :data:`RING_FLOATS`."""
    return RING_STEPS + 1 if size * (RING_STEPS + 1) <= RING_FLOATS else 0


@functools.lru_cache(maxsize=256)
def sizes_of(shapes: tuple[tuple[int, ...], ...]) -> list[int]:
    return [math.prod(shape) for shape in shapes]


_ZEROS_AT_ONCE = 64
_zero_pools: dict[tuple[int, ...], list[jax.Array]] = {}


@functools.lru_cache(maxsize=64)
def zeros_maker(shape: tuple[int, ...]) -> Callable[[], tuple[jax.Array, ...]]:
    return jax.jit(lambda: tuple(jnp.zeros(shape, jnp.float32) for _ in range(_ZEROS_AT_ONCE)))


def zeros(shape: int | tuple[int, ...]) -> jax.Array:
    """A fresh float32 zero array: made 64 at a time by one compiled call, since every
    per-batch report needs one and a dispatch costs about half a small training step."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    pool = _zero_pools.setdefault(shape, [])
    if not pool:
        pool.extend(zeros_maker(shape)())
    return pool.pop()


@functools.lru_cache(maxsize=1)
def on_host() -> bool:
    """Whether arrays live in host memory (CPU): reading one back needs no copy to start
    early (on CPU ``copy_to_host_async`` cost 12 us of a 150 us step and saved nothing)."""
    return jax.default_backend() == "cpu"


def means(acc: np.ndarray, variables: Sequence[Variable], sizes: Sequence[int]) -> dict:
    """``{name: mean}`` of a slot's host sums (the last element counts the steps);
    ``{}`` when no step ran since the last read: there is no mean to report (a 0 would
    be a value no step had)."""
    count = acc[-1]
    if count <= 0:
        return {}
    means = acc[:-1] / count  # one division for all (a slice at a time cost 8 us a read)
    out: dict[str, Any] = {}
    offset = 0
    for var, size in zip(variables, sizes, strict=True):
        if var.shape:
            out[var.name] = means[offset : offset + size].reshape(var.shape)
        else:
            out[var.name] = float(means[offset])
        offset += size
    return out


def step_means(
    acc: np.ndarray, count: int, variables: Sequence[Variable], sizes: Sequence[int]
) -> list[dict]:
    """``[{name: value}, ...]`` of the last ``count`` steps of a per-step slot's host copy
    (rows after the sums row, oldest first)."""
    rows = acc[acc.shape[0] - count :] if count else acc[:0]
    values = rows[:, :-1] / np.maximum(rows[:, -1:], 1)
    columns: list[tuple[str, Any]] = []
    offset = 0
    for var, size in zip(variables, sizes, strict=True):
        if var.shape:
            block = values[:, offset : offset + size].reshape((count, *var.shape))
            columns.append((var.name, list(block)))
        else:
            columns.append((var.name, values[:, offset].tolist()))
        offset += size
    return [{name: column[i] for name, column in columns} for i in range(count)]


class MonitorSlots:
    """Mixin of GradientDescent: the host side of its monitoring slots (sizes,
    fresh accumulators, read-backs of sums and of per-step values)."""

    _monitors: list[list[Variable]]
    _per_step: list[bool]
    _flags: Any
    _discovered: bool
    graph: Any
    _require_state: Callable[[], dict[str, Any]]

    def _sizes(self, slot: int) -> list[int]:
        return sizes_of(tuple(tuple(v.shape or ()) for v in self._monitors[slot]))

    def _acc_shape(self, slot: int) -> tuple[int, ...]:
        size = sum(self._sizes(slot)) + 1
        rows = ring_rows(size) if self._per_step[slot] else 0
        return (rows, size) if rows else (size,)

    def _zero_acc(self, slot: int) -> jax.Array:
        # compiled zeros: an eager jnp.zeros or a device_put of host zeros
        # costs ~10x a jitted call, and this runs at every report
        return zeros(self._acc_shape(slot))

    def steps_kept(self, slot: int) -> int:
        """How many steps' own values the slot keeps between two reads (0: sums only,
        or not known yet: a cost function's outputs are learned at the first step)."""
        if not (self._discovered or getattr(self.graph, "outputs_known", True)):
            return 0
        shape = self._acc_shape(slot)
        return shape[0] - 1 if len(shape) == 2 else 0

    def read_monitor(self, slot: int, log: Any = None) -> dict[str, Any]:
        """Means of the slot's variables since its last read (per element); resets it.
        ``{}`` when no step ran since the last read.

        This is the only device-to-host transfer of monitoring. It also reads
        the non-finite guard's counters: logs ``skipped_steps`` when it
        changed and raises :class:`NonFiniteCostError` (or
        :class:`TooManySkippedStepsError`) if training stopped.
        """
        return self.start_read(slot)(log)

    def start_read(self, slot: int) -> Callable[[Any], dict[str, Any]]:
        """Start reading the slot back without waiting; resets it.

        Returns ``finish(log)``, which waits for the copy and returns what
        :meth:`read_monitor` would have returned now (the sums up to the
        steps dispatched so far, whatever runs in between). Calling it one
        step later lets the host queue the next step before it waits, so
        per-batch monitoring does not idle the device.
        """
        acc, read_flags, variables, sizes = self._swap(slot)

        def finish(log: Any = None) -> dict[str, Any]:
            host = read_flags(np.asarray(acc), log)
            return means(host if host.ndim == 1 else host[0], variables, sizes)

        finish.ready = read_flags.ready  # type: ignore[attr-defined]
        return finish

    def start_read_steps(self, slot: int, count: int) -> Callable[[Any], list[dict[str, Any]]]:
        """Start reading back the last ``count`` steps' own values of a per-step slot
        (``add_monitor(per_step=True)``) without waiting; resets it.

        Returns ``finish(log)``: ``[{name: value}, ...]`` of the last ``count``
        steps, oldest first. ``count`` is at most :meth:`steps_kept`, and at
        most the steps run since the slot's last read, else
        :class:`AlgorithmError` (a value would be one of an older read's).
        """
        kept = self.steps_kept(slot)
        if not 0 < count <= kept:
            raise AlgorithmError(
                f"start_read_steps: {count} steps asked of monitoring slot {slot}, which "
                f"keeps {kept} steps' own values (add_monitor(per_step=True)) between reads"
            )
        acc, read_flags, variables, sizes = self._swap(slot)

        def finish(log: Any = None) -> list[dict[str, Any]]:
            host = read_flags(np.asarray(acc), log)
            if int(host[0, -1]) < count:
                raise AlgorithmError(
                    f"monitoring slot {slot} ran {int(host[0, -1])} steps since its last "
                    f"read, fewer than the {count} read back"
                )
            return step_means(host, count, variables, sizes)

        finish.ready = read_flags.ready  # type: ignore[attr-defined]
        return finish

    def _swap(self, slot: int) -> tuple[jax.Array, Callable, list[Variable], list[int]]:
        """Take the slot's accumulator out of the state (fresh zeros in its place), and
        ``read_flags(host_acc, log) -> host_acc``, which also reads the non-finite
        guard's flags of the same step (logs ``skipped_steps``, raises if training
        stopped); ``read_flags.ready()`` says whether both copies arrived."""
        state = self._require_state()
        acc = state["acc"][slot]
        flags = self._flags.last if self._flags.last is not None else flags_of(state)
        if not on_host():  # start both copies at once: one round trip on a GPU
            acc.copy_to_host_async()
            flags.copy_to_host_async()
        state["acc"] = state["acc"][:slot] + (self._zero_acc(slot),) + state["acc"][slot + 1 :]
        reader = self._flags
        call = reader.calls if flags is reader.last else -1

        def read_flags(host_acc: np.ndarray, log: Any) -> np.ndarray:
            # np.asarray skips device_get's pytree machinery (5x cheaper on CPU)
            host_flags = np.asarray(flags)
            bad, skipped, _ = host_flags.tolist()
            if bad >= 0 or skipped > reader.logged_skipped:  # else read() does nothing
                reader.read(host_flags, log)  # older flags never undo a newer count
            reader.seen(call)
            return host_acc

        read_flags.ready = lambda: acc.is_ready() and flags.is_ready()  # type: ignore[attr-defined]
        return acc, read_flags, list(self._monitors[slot]), self._sizes(slot)
